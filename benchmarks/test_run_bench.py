"""What one `synthbench run` of a 2 400-image submission costs, stage by stage, against encoding it.

Two cases, each measured in one process so every figure sees the same machine load:

* `demo-96px`: the demo task as `synthbench task build demo` makes it (100 train_real, 50 test
  and 100 generation inputs per class) and the demo editor's submission at multiplier 4 (2 400
  generated-track images), scored at the demo's 96 px. Quick: a few minutes on 2 cores.
* `aid6-224px`: an image-folder task of six AID scene classes (100 train_real and 100 test images
  per class, deduplicated as the task builders do) and the classic-augmentation baseline at
  multiplier 4 (2 400 open-track images), scored at the backbone's native 224 px. Long (tens of
  minutes on 2 busy cores); skipped when the reference data is absent.

Figures (EfficientNet-Lite0, the default backbone, on the CPU; stored in extra_info, printed):

* **encode**: one cold pass of the feature cache over every image the run reads (test, train_real,
  generation inputs and the submission), each once;
* **gate**: what the leakage gate adds to validation (`validate` with the gate minus `validate`
  without it, on the cache the encode pass filled: the gate's embeddings are the grid's);
* **grid**: the linear-probe grid (every setting, ratio and seed, CV included, and the record's
  diagnostics), encoding included: encode + `run_grid` on the warm cache;
* **run**: the whole `synthbench run` (validation with the gate, then the grid): encode + the same
  command on the warm cache.

Encoding is counted once because a run encodes each image once (tests/test_run_encodes_once.py
asserts it; the warm runs here assert they encoded nothing). Targets, as ratios to encode:
grid <= 1.25, gate <= 0.25, run <= 1.5.

    .venv/bin/python -m pytest benchmarks/test_run_bench.py -s -k demo      # the quick case
    .venv/bin/python -m pytest benchmarks/test_run_bench.py -s -k aid6      # the long one

SYNTHBENCH_BENCH_RUN_SETUP names a folder to keep the built tasks and submissions between runs
(they are set-up, not measured; every measured cache starts empty).
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import pytest

from cases import AID6_SIZE, DEMO_SIZE, aid6_case, demo_case

TARGETS = {"grid": 1.25, "gate": 0.25, "run": 1.5}


def _run_images(task, submission_refs: list) -> list:
    """Every image a run reads, once each: test, train_real, generation inputs, the submission."""
    refs = [ref for split in ("test", "train_real", "generation_inputs") for ref in task.image_refs(split)]
    return list({ref.sha256: ref for ref in refs + list(submission_refs)}.values())


def _timed(function, *args, what: str = "", **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    seconds = time.perf_counter() - start
    if what:  # as it finishes, so that a long case shows where it is
        print(f"\n  {what}: {seconds:.1f} s", flush=True)
    return result, seconds


@contextlib.contextmanager
def _timing(module, name: str):
    """`module.name` wrapped to add its wall time to the one-element list yielded."""
    original, total = getattr(module, name), [0.0]

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            total[0] += time.perf_counter() - start

    setattr(module, name, timed)
    try:
        yield total
    finally:
        setattr(module, name, original)


def measure(task, submission_dir: Path, image_size: int, workspace: Path) -> dict:
    """Encode, gate, grid and run seconds of one submission (module docstring), and their ratios."""
    from benchmark import grid
    from benchmark.backbones import DEFAULT_BACKBONE, load_backbone
    from benchmark.cli import main
    from benchmark.features import FeatureCache
    from benchmark.grid import run_grid
    from benchmark.submissions import load_submission, validate_submission

    cache = workspace / "cache"  # empty: the encode pass below fills it
    submission_refs = load_submission(submission_dir).image_refs()
    refs = _run_images(task, submission_refs)
    backbone = load_backbone(DEFAULT_BACKBONE, device="cpu", image_size=image_size)
    _, encode = _timed(FeatureCache(cache).features, backbone, refs, progress=False, what=f"encode pass ({len(refs)} images)")

    validate = dict(cache=cache, device="cpu", image_size=image_size)
    gated, with_gate = _timed(validate_submission, submission_dir, task, check_leakage=True, what="validate", **validate)
    assert gated.ok, gated.problems
    _, without_gate = _timed(validate_submission, submission_dir, task, check_leakage=False, what="validate without the gate",
                             **validate)

    with _timing(grid, "fit_and_score") as fitting:  # its wall time: runs are fitted side by side
        record, fits = _timed(run_grid, task, submission_dir, cache_dir=cache, device="cpu", image_size=image_size,
                              validated=True, out_path=workspace / "grid.json", progress=False, what="grid on the warm cache")
    assert record["provenance"]["images_encoded"] == 0, "the grid encoded images the encode pass had encoded"
    skipped = [entry["setting"] for entry in record["skipped"]]  # e.g. more-real@k where a class lacks extra images

    command = ["run", "--task", str(task.path), "--submission", str(submission_dir), "--cache-dir", str(cache),
               "--device", "cpu", "--image-size", str(image_size), "--out", str(workspace / "run.json"), "--no-progress"]
    status, warm_run = _timed(main, command, what="synthbench run on the warm cache")
    assert status == 0
    seconds = {
        "encode": encode, "gate": with_gate - without_gate, "validate": with_gate,
        "grid": encode + fits, "grid_fits": fits, "run": encode + warm_run,
        # of the grid on the warm cache: the probe fits themselves (wall time, several at once on a
        # multi-core CPU, each run's own metrics included), and the rest (loading the cached
        # features, the record's diagnostics, its bootstrap CIs, writing it)
        "grid_probe_fits": fitting[0],
    }
    seconds["grid_other"] = fits - seconds["grid_probe_fits"]
    return {
        "images": len(refs), "submission_images": len(submission_refs), "image_size": image_size,
        "runs": len(record["runs"]), "skipped_settings": skipped, "cpu_cores": os.cpu_count(),
        "seconds": {name: round(value, 1) for name, value in seconds.items()},
        "ratios": {name: round(seconds[name] / encode, 3) for name in TARGETS},
        "targets": TARGETS,
    }


def _report(benchmark, case: str, figures: dict) -> None:
    benchmark.extra_info.update(figures)
    s, r = figures["seconds"], figures["ratios"]
    print(
        f"\n[{case}] {figures['submission_images']} submission images, {figures['images']} images read, "
        f"{figures['runs']} runs, {figures['image_size']} px, {figures['cpu_cores']} CPU cores\n"
        f"  encode {s['encode']:.1f} s | gate {s['gate']:.1f} s = {r['gate']:.3f} x (target <= {TARGETS['gate']}) | "
        f"grid {s['grid']:.1f} s = {r['grid']:.3f} x (target <= {TARGETS['grid']}; on the warm cache {s['grid_fits']:.1f} s: "
        f"probe fits {s['grid_probe_fits']:.1f} s, diagnostics, CIs and the rest {s['grid_other']:.1f} s) | "
        f"run {s['run']:.1f} s = {r['run']:.3f} x (target <= {TARGETS['run']}); validate with the gate {s['validate']:.1f} s"
    )


@pytest.mark.slow
def test_run_cost_demo_96px(benchmark, setup_dir, tmp_path):
    task, submission = demo_case(setup_dir)
    figures = benchmark.pedantic(measure, args=(task, submission, DEMO_SIZE, tmp_path), rounds=1, iterations=1)
    _report(benchmark, "demo-96px", figures)


@pytest.mark.slow
def test_run_cost_aid6_224px(benchmark, setup_dir, aid6_root, tmp_path):
    task, submission = aid6_case(setup_dir, aid6_root)
    figures = benchmark.pedantic(measure, args=(task, submission, AID6_SIZE, tmp_path), rounds=1, iterations=1)
    _report(benchmark, "aid6-224px", figures)
