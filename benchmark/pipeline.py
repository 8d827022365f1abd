"""The main job: the whole flow on the procedural demo task, end to end, offline.

    build demo task -> encode its test and train_real images once
    -> for the demo-editor submission and each baseline (two at a time on two cores, each in its
       own process): make it -> validate it -> linear-probe grid (EfficientNet-Lite0, every
       setting and ratio, 5 seeds)
    -> leaderboard site

It is a pipeline demo, not a scientific result: the task and its "generator" are procedural. Every
stage is the same code a real run uses, so a green demo means the flow works on this machine.
Reruns reuse what is already there (task, submissions, feature cache, complete result records).
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

from .errors import SynthbenchError
from .protocol import DEFAULT_PROTOCOL
from .registry import DEFAULT_BACKBONE, DEVICE_CHOICES

log = logging.getLogger(__name__)

DEMO_BASELINES = ("classic", "mixup", "cutmix", "duplicate")
#: Backbone input size: the demo task's own image size (96 px), so nothing is upsampled; encoding
#: is the main job's largest cost on 2 CPU cores.
DEMO_IMAGE_SIZE = 96
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


def _gate_for(sub_id: str, leakage: str) -> bool:
    # The baselines are made here, by the harness, from train_real alone: they cannot hold a test
    # image, so `--leakage generated` spares them the gate.
    return leakage == "all" or (leakage == "generated" and sub_id == DEMO_GENERATOR_ID)


def _submission_job(
    sub_id: str,
    folder: str,
    *,
    task_dir: str,
    multiplier: int,
    seeds: int,
    image_size: int,
    cache_dir: str,
    device: str,
    leakage: str,
    progress: bool,
    threads: int | None,
) -> dict:
    """Make one submission (if missing), validate it, run its grid: one unit of the main job.

    Runs in a worker process when the demo runs several at once (`threads` then pins torch to
    one intra-op thread per worker, so two workers use two cores without oversubscribing).
    """
    from .generators.baselines import generate_baseline
    from .generators.demo_editor import generate_demo_editor
    from .grid import run_grid
    from .submissions import load_submission, validate_submission
    from .tasks import load_task

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    task = load_task(task_dir, verify=False)  # verified by the parent before any job started
    folder_path = Path(folder)
    seconds: dict[str, float] = {}

    start = time.perf_counter()
    if not (folder_path / "submission.yaml").exists():
        if sub_id == DEMO_GENERATOR_ID:
            generate_demo_editor(task, folder_path, multiplier=multiplier, seed=0)
        else:
            generate_baseline(sub_id.split("__", 1)[1], task, folder_path, multiplier=multiplier, seed=0)
    seconds["generate"] = time.perf_counter() - start

    start = time.perf_counter()
    gate = _gate_for(sub_id, leakage)
    report = validate_submission(
        folder_path, task, check_leakage=gate, cache=cache_dir, device=device, image_size=image_size,
        progress=progress,
    )
    if not report.ok:
        raise SynthbenchError(f"{folder_path}: demo submission failed validation:\n  " + "\n  ".join(report.problems))
    seconds["validate"] = time.perf_counter() - start

    start = time.perf_counter()
    record = run_grid(
        task,
        load_submission(folder_path),
        backbone=DEFAULT_BACKBONE,
        protocol=DEFAULT_PROTOCOL,
        seeds=tuple(range(seeds)),
        cache_dir=cache_dir,
        device=device,
        image_size=image_size,
        progress=progress,
        validated=True,
        leakage_checked=gate,  # a baseline scored without the gate says so (the board labels it unchecked)
    )
    seconds["grid"] = time.perf_counter() - start
    gate_note = (
        "leakage gate passed" if gate
        else "leakage gate skipped: --leakage none" if leakage == "none"
        else "leakage gate skipped: harness-made baseline"
    )
    return {
        "id": sub_id,
        "images": sum(report.counts.values()),
        "gate_note": gate_note,
        "runs": record["provenance"]["runs_computed"],
        "encoded": record["provenance"]["images_encoded"],
        "seconds": seconds,
    }


def default_workers() -> int:
    """Submissions processed at once: one per core, at most 2 (the demo has 5 of unequal length)."""
    return max(1, min(2, os.cpu_count() or 1))


def run_demo(
    out: Path,
    *,
    seeds: int = 5,
    image_size: int = DEMO_IMAGE_SIZE,
    multiplier: int = 4,
    baselines: tuple[str, ...] = DEMO_BASELINES,
    cache_dir: Path | None = None,
    device: str = "auto",
    leakage: str = "generated",
    workers: int | None = None,
    train_per_class: int = 100,
    test_per_class: int = 50,
    progress: bool = True,
) -> dict[str, Path]:
    """Run the main job into `out`; return the paths of what it made.

    `train_per_class` / `test_per_class` size the demo task when it is built (smaller: smoke tests).
    """
    from .device import resolve_device

    device = str(resolve_device(device))
    workers = default_workers() if workers is None else workers
    if device.startswith("cuda"):
        workers = 1  # one process owns the GPU; it is fast enough alone
    if workers < 1:
        raise SynthbenchError(f"--workers must be at least 1, got {workers}")
    out = Path(out)
    task_dir, submissions_dir, site_dir = out / "task", out / "submissions", out / "site"
    cache_dir = Path(cache_dir) if cache_dir else out / "feature-cache"
    started = time.perf_counter()
    task = _demo_task(task_dir, cache_dir, device=device, image_size=image_size,
                      train_per_class=train_per_class, test_per_class=test_per_class)
    _encode_task_images(task, cache_dir, device=device, image_size=image_size, progress=progress)
    jobs = {DEMO_GENERATOR_ID: submissions_dir / DEMO_GENERATOR_ID}
    jobs.update({f"baseline__{name}": submissions_dir / f"baseline__{name}" for name in baselines})
    options = dict(
        task_dir=str(task_dir), multiplier=multiplier, seeds=seeds, image_size=image_size,
        cache_dir=str(cache_dir), device=device, leakage=leakage,
        progress=progress and workers == 1, threads=1 if workers > 1 else None,
    )
    _score_submissions(jobs, options, workers=workers, seeds=seeds)
    with _Stage("build the leaderboard site"):
        from leaderboard.site import build_site
        from leaderboard.tree import load_task_truths

        # the board checks every record against this task's own test labels
        build_site(submissions_dir, site_dir, tasks=load_task_truths([task_dir]))

    paths = {
        "task": task_dir,
        "submissions": submissions_dir,
        "site": site_dir / "index.html",
        "feature_cache": cache_dir,
    }
    print(f"\n[demo] finished in {time.perf_counter() - started:.0f} s. A pipeline demo on a procedural task, "
          "not a scientific result.")
    for name, path in paths.items():
        print(f"  {name:14s} {path.resolve()}")
    print(f"  open {(site_dir / 'index.html').resolve().as_uri()}  (or: synthbench leaderboard serve --site {site_dir})")
    return paths


def _demo_task(task_dir: Path, cache_dir: Path, *, device: str, image_size: int, train_per_class: int,
               test_per_class: int):
    """Stage 1: build the demo task (once; a rerun reuses it, and it must be the size asked for)."""
    from .tasks import load_task
    from .tasks.dedup import resolve_embedder
    from .tasks.demo import build_demo_task

    with _Stage("build the demo task"):
        if not (task_dir / "manifest.json").exists():
            # Deduplication embeds through the grid's cache at the grid's size: the encode stage reuses it.
            embedder = resolve_embedder(None, cache_dir=cache_dir, device=device, image_size=image_size)
            build_demo_task(task_dir, train_per_class=train_per_class, test_per_class=test_per_class, embedder=embedder)
        task = load_task(task_dir)
        have = (set(task.class_counts("train_real").values()), set(task.class_counts("test").values()))
        if have != ({train_per_class}, {test_per_class}):
            raise SynthbenchError(
                f"{task_dir} holds a demo task of {'/'.join(map(str, sorted(have[0])))} train and "
                f"{'/'.join(map(str, sorted(have[1])))} test images per class, not the {train_per_class} and "
                f"{test_per_class} asked for: use another --out, or remove {task_dir.parent} to start over"
            )
    return task


def _encode_task_images(task, cache_dir: Path, *, device: str, image_size: int, progress: bool) -> None:
    """Stage 2: the test and train_real features, once, so that parallel jobs do not each encode them."""
    from .backbones import load_backbone
    from .features import FeatureCache

    with _Stage(f"encode the task's images ({DEFAULT_BACKBONE}, {image_size} px)"):
        backbone = load_backbone(DEFAULT_BACKBONE, device=device, image_size=image_size)
        FeatureCache(cache_dir).features(
            backbone, task.image_refs("test") + task.image_refs("train_real"), progress=progress
        )


def _score_submissions(jobs: dict[str, Path], options: dict, *, workers: int, seeds: int) -> None:
    """Stage 3: make, validate and score each submission, `workers` at a time (each in its own process)."""
    title = (
        f"make, validate and score {len(jobs)} submissions: demo generator + baselines "
        f"({DEFAULT_BACKBONE}, {DEFAULT_PROTOCOL}, {seeds} seeds, {workers} at a time)"
    )
    with _Stage(title):
        if workers == 1:
            for sub_id, folder in jobs.items():
                _print_job(_submission_job(sub_id, str(folder), **options))
            return
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # spawn: a fresh interpreter per worker (torch and fork do not mix)
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = [pool.submit(_submission_job, sub_id, str(folder), **options) for sub_id, folder in jobs.items()]
            try:
                for future in as_completed(futures):
                    _print_job(future.result())
            except BaseException:
                for future in futures:
                    future.cancel()
                raise


def _print_job(result: dict) -> None:
    t = result["seconds"]
    print(
        f"  {result['id']}: {result['images']} images, valid ({result['gate_note']}); "
        f"{result['runs']} runs, {result['encoded']} images encoded; "
        f"generate {t['generate']:.0f} s, validate {t['validate']:.0f} s, grid {t['grid']:.0f} s",
        flush=True,
    )


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
        workers=args.workers,
        train_per_class=args.train_per_class,
        test_per_class=args.test_per_class,
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
        "--image-size", type=int, default=DEMO_IMAGE_SIZE,
        help=f"backbone input resolution (default {DEMO_IMAGE_SIZE}: the demo task's own image size)",
    )
    parser.add_argument("--multiplier", type=int, default=4, choices=(1, 2, 3, 4), help="synthetic images per real image")
    parser.add_argument("--baselines", default=",".join(DEMO_BASELINES), help="comma-separated baseline generators")
    parser.add_argument("--cache-dir", help="feature cache (default: OUT/feature-cache)")
    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    parser.add_argument(
        "--leakage", default="generated", choices=("all", "generated", "none"),
        help="which submissions get the leakage gate: all, the generated-track one only (default: the "
        "baselines are made here from train_real and cannot hold a test image), or none",
    )
    parser.add_argument(
        "--workers", type=int, default=None,
        help="submissions made, validated and scored at once, each in its own process on one core "
        "(default: one per core, at most 2; always 1 on a GPU)",
    )
    parser.add_argument(
        "--train-per-class", type=int, default=100,
        help="real train images per class of the demo task, when it is built (default: 100, as xBD's)",
    )
    parser.add_argument(
        "--test-per-class", type=int, default=50, help="test images per class of the demo task (default: 50)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=_handle)
