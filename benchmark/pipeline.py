"""The main job: the whole flow on the procedural demo task, end to end, offline.

    build demo task -> demo-editor submission + baselines -> validate -> linear-probe grid
    (EfficientNet-Lite0, every setting and ratio, 5 seeds) -> leaderboard site

It is a pipeline demo, not a scientific result: the task and its "generator" are procedural. Every
stage is the same code a real run uses, so a green demo means the flow works on this machine.
Reruns reuse what is already there (task, submissions, feature cache, complete result records).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from .errors import SynthbenchError

log = logging.getLogger(__name__)

DEMO_BASELINES = ("classic", "mixup", "cutmix", "duplicate")
#: The demo's generator submission (the procedural editor standing in for a generative model).
DEMO_GENERATOR_ID = "demo__procedural-editor"


class _Stage:
    """Prints one line per stage with its wall time, so the user sees where the minutes go."""

    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        self.start = time.perf_counter()
        print(f"[demo] {self.name} ...", flush=True)
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            print(f"[demo] {self.name}: done in {time.perf_counter() - self.start:.1f} s", flush=True)


def run_demo(
    out: Path,
    *,
    seeds: int = 5,
    image_size: int = 128,
    multiplier: int = 4,
    baselines: tuple[str, ...] = DEMO_BASELINES,
    cache_dir: Path | None = None,
    device: str = "auto",
    leakage: str = "none",
    progress: bool = True,
) -> dict[str, Path]:
    """Run the main job into `out`; return the paths of what it made."""
    from .backbones import DEFAULT_BACKBONE
    from .generators.baselines import generate_baseline
    from .generators.demo_editor import generate_demo_editor
    from .grid import run_grid
    from .protocol import DEFAULT_PROTOCOL
    from .submissions import load_submission, validate_submission
    from .tasks import load_task
    from .tasks.demo import build_demo_task

    from .device import resolve_device

    device = str(resolve_device(device))
    out = Path(out)
    task_dir = out / "task"
    submissions_dir = out / "submissions"
    site_dir = out / "site"
    cache_dir = Path(cache_dir) if cache_dir else out / "feature-cache"
    started = time.perf_counter()

    with _Stage("build the demo task"):
        if not (task_dir / "manifest.json").exists():
            build_demo_task(task_dir)
        task = load_task(task_dir)

    with _Stage("make the demo generator's submission and the baselines"):
        made = {DEMO_GENERATOR_ID: submissions_dir / DEMO_GENERATOR_ID}
        if not (made[DEMO_GENERATOR_ID] / "submission.yaml").exists():
            generate_demo_editor(task, made[DEMO_GENERATOR_ID], multiplier=multiplier, seed=0)
        for name in baselines:
            folder = submissions_dir / f"baseline__{name}"
            if not (folder / "submission.yaml").exists():
                generate_baseline(name, task, folder, multiplier=multiplier, seed=0)
            made[folder.name] = folder

    with _Stage("validate every submission"):
        for sub_id, folder in made.items():
            # The baselines are made here, by the harness, from train_real alone: they cannot hold a
            # test image, so `--leakage generated` spares them the gate.
            gate = leakage == "all" or (leakage == "generated" and sub_id == DEMO_GENERATOR_ID)
            report = validate_submission(
                folder, task, check_leakage=gate, cache=cache_dir, device=device, image_size=image_size,
                progress=progress,
            )
            if not report.ok:
                raise SynthbenchError(f"{folder}: demo submission failed validation:\n  " + "\n  ".join(report.problems))
            gate_note = (
                "leakage gate passed" if gate
                else "leakage gate skipped: --leakage none" if leakage == "none"
                else "leakage gate skipped: harness-made baseline"
            )
            print(f"  {sub_id}: ok ({sum(report.counts.values())} images, {gate_note})", flush=True)

    with _Stage(f"run the grid ({DEFAULT_BACKBONE}, {DEFAULT_PROTOCOL}, {seeds} seeds)"):
        for sub_id, folder in made.items():
            run_grid(
                task,
                load_submission(folder),
                backbone=DEFAULT_BACKBONE,
                protocol=DEFAULT_PROTOCOL,
                seeds=tuple(range(seeds)),
                cache_dir=cache_dir,
                device=device,
                image_size=image_size,
                progress=progress,
                validated=True,
            )

    with _Stage("build the leaderboard site"):
        from leaderboard.site import build_site

        build_site(submissions_dir, site_dir)

    total = time.perf_counter() - started
    paths = {
        "task": task_dir,
        "submissions": submissions_dir,
        "site": site_dir / "index.html",
        "feature_cache": cache_dir,
    }
    print(f"\n[demo] finished in {total:.0f} s. A pipeline demo on a procedural task, not a scientific result.")
    for name, path in paths.items():
        print(f"  {name:14s} {path.resolve()}")
    print(f"  open {(site_dir / 'index.html').resolve().as_uri()}  (or: synthbench leaderboard serve --site {site_dir})")
    return paths


def _handle(args: argparse.Namespace) -> int:
    run_demo(
        Path(args.out),
        seeds=args.seeds,
        image_size=args.image_size,
        multiplier=args.multiplier,
        baselines=tuple(b for b in args.baselines.split(",") if b),
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
        device=args.device,
        leakage=args.leakage,
        progress=not args.no_progress,
    )
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="the main job: the whole flow on the procedural demo task, offline",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", default="runs/demo", help="where everything goes (default: runs/demo)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per setting (default: 5)")
    parser.add_argument(
        "--image-size", type=int, default=128,
        help="backbone input resolution (default 128: the demo's speed/fidelity trade-off on 2 CPU cores)",
    )
    parser.add_argument("--multiplier", type=int, default=4, choices=(1, 2, 3, 4), help="synthetic images per real image")
    parser.add_argument("--baselines", default=",".join(DEMO_BASELINES), help="comma-separated baseline generators")
    parser.add_argument("--cache-dir", help="feature cache (default: OUT/feature-cache)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument(
        "--leakage", default="none", choices=("all", "generated", "none"),
        help="which submissions get the leakage gate: all, the generated-track one only (the baselines "
        "are made here from train_real), or none (default: the gate costs minutes on 2 CPU cores and "
        "its own tests cover it; every other check of validation still runs)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=_handle)
