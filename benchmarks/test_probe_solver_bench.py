"""How much work the linear probe's solver does on a real grid's problems, by preconditioner damping.

The solver (benchmark.protocols.linear_probe) scales feature j by 1 / sqrt(var_j + damping), with
the damping a share (`PRECONDITION_DAMPING`) of the features' total variance. The share changes
only the solver's path (the optimum and the stopping rule are the same), so it is chosen by the
work it costs. This suite takes the probe problems a grid really solves, one seed of every setting
(the features, targets and CV groups `LinearProbe` hands `select_C_and_fit`, captured from a
`run_grid` on the case's task and submission, `benchmarks/cases.py`), solves each again at several
shares and reports, per share: the L-BFGS iterations of every CV problem and final fit weighted by
the rows they touch (the matrix products' work; "kilo-row-iterations"), the serial wall time on one
thread, and the largest change of a chosen C against the protocol's share.

    .venv/bin/python -m pytest benchmarks/test_probe_solver_bench.py -s -k demo   # a few minutes
    .venv/bin/python -m pytest benchmarks/test_probe_solver_bench.py -s -k aid6   # encodes 3 600 images first

SYNTHBENCH_BENCH_RUN_SETUP keeps the built tasks, submissions and their features between runs.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from cases import AID6_SIZE, DEMO_SIZE, aid6_case, demo_case

SHARES = (0.02, 0.05, 0.1, 0.2, 0.5)


def grid_problems(task, submission: Path, image_size: int, cache: Path) -> list[tuple]:
    """(features, targets, keyword arguments) of the seed-0 probe fit of every setting of a grid."""
    from benchmark.grid import run_grid
    from benchmark.protocols import linear_probe

    problems, original = [], linear_probe.select_C_and_fit

    def capture(features, targets, **kwargs):
        problems.append((np.array(features), np.array(targets), dict(kwargs)))
        return original(features, targets, **kwargs)

    record = cache / "grid.json"
    record.unlink(missing_ok=True)  # else the grid would reuse its runs and solve nothing
    linear_probe.select_C_and_fit = capture
    try:
        run_grid(task, submission, seeds=[0], cache_dir=cache, device="cpu", image_size=image_size, validated=True,
                 out_path=record, progress=False)
    finally:
        linear_probe.select_C_and_fit = original
    return problems


def solve_all(problems: list[tuple], share: float) -> dict:
    """Row-weighted iterations, serial seconds and chosen Cs of every problem at one damping share."""
    from benchmark.protocols import linear_probe

    kept, linear_probe.PRECONDITION_DAMPING = linear_probe.PRECONDITION_DAMPING, share
    work, chosen = 0, []
    start = time.perf_counter()
    try:
        with linear_probe.torch_threads(1):
            for features, targets, kwargs in problems:
                selection = linear_probe.select_C_and_fit(features, targets, **kwargs)
                rows = features.shape[0]
                # every CV problem's products run over all the rows (its held-out ones weigh zero), as the final fit's
                work += (selection.cv_iterations + selection.model.n_iter) * rows
                chosen.append(selection.C)
    finally:
        linear_probe.PRECONDITION_DAMPING = kept
    return {"kilo_row_iterations": round(work / 1000), "seconds": round(time.perf_counter() - start, 2), "C": chosen}


def measure(task, submission: Path, image_size: int, cache: Path) -> dict:
    from benchmark.protocols import linear_probe

    problems = grid_problems(task, submission, image_size, cache)
    by_share = {share: solve_all(problems, share) for share in SHARES}
    protocol = by_share[linear_probe.PRECONDITION_DAMPING]
    protocol_C = list(protocol["C"])
    for figures in by_share.values():
        figures["C_changed"] = sum(a != b for a, b in zip(figures.pop("C"), protocol_C))
        figures["work_vs_protocol"] = round(figures["kilo_row_iterations"] / protocol["kilo_row_iterations"], 3)
    return {"problems": len(problems), "protocol_share": linear_probe.PRECONDITION_DAMPING,
            "by_share": {str(share): figures for share, figures in by_share.items()}}


def _report(benchmark, case: str, figures: dict) -> None:
    benchmark.extra_info.update(figures)
    lines = [f"\n[{case}] {figures['problems']} probe problems (seed 0 of every setting); protocol share "
             f"{figures['protocol_share']:g}"]
    for share, row in figures["by_share"].items():
        lines.append(f"  share {float(share):<5g} {row['kilo_row_iterations']:>7} k row-iterations "
                     f"({row['work_vs_protocol']:.2f} x)  {row['seconds']:6.2f} s  C changed in {row['C_changed']}")
    print("\n".join(lines))


@pytest.mark.slow
def test_probe_solver_work_demo_96px(benchmark, setup_dir):
    task, submission = demo_case(setup_dir)
    cache = setup_dir / "solver-bench-demo"
    cache.mkdir(exist_ok=True)
    figures = benchmark.pedantic(measure, args=(task, submission, DEMO_SIZE, cache), rounds=1, iterations=1)
    _report(benchmark, "demo-96px", figures)


@pytest.mark.slow
def test_probe_solver_work_aid6_224px(benchmark, setup_dir, aid6_root):
    task, submission = aid6_case(setup_dir, aid6_root)
    cache = setup_dir / "solver-bench-aid6"
    cache.mkdir(exist_ok=True)
    figures = benchmark.pedantic(measure, args=(task, submission, AID6_SIZE, cache), rounds=1, iterations=1)
    _report(benchmark, "aid6-224px", figures)
