"""`synthbench run` (one submission) and `synthbench run-all` (a folder of them, locally or on
Slurm), and the executor flags they share. Building these parsers imports nothing heavy: the
grid, the submissions and the tasks load inside the commands."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..cliargs import positive_int
from ..errors import HarnessError, SynthbenchError
from ..paths import CACHE_ENV, default_cache_dir
from ..protocol import DEFAULT_PROTOCOL, DEFAULT_SEEDS, PROTOCOLS, SETTINGS, lookup
from ..registry import BACKBONES, DEFAULT_BACKBONE, DEVICE_CHOICES
from .plan import EXECUTORS, Failure, GridOptions, Unit, _signing_key, find_submissions, plan_units
from .run import run_units
from .slurm import DEFAULT_SLURM_CONFIG


# ----------------------------------------------------------------------------------------------
# `synthbench run`: one submission, every backbone x protocol asked for
# ----------------------------------------------------------------------------------------------


def _parse_seed_list(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seed-list must be comma-separated integers, got {text!r}") from None
    if not seeds or any(s < 0 for s in seeds):
        raise argparse.ArgumentTypeError(f"--seed-list needs non-negative integers, got {text!r}")
    return seeds


def _parse_settings(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown setting(s) {', '.join(unknown) or '(none given)'}; use any of: {', '.join(SETTINGS)}"
        )
    return names


def _register_run(subparsers) -> None:
    """Add `synthbench run` to the CLI."""
    parser = subparsers.add_parser(
        "run",
        help="score a submission: train and evaluate every setting x ratio x seed",
        description="Train classifiers on real, synthetic and mixed training sets built from the "
        "submission and score them on the task's real test split (accuracy, macro-F1, bootstrap CIs, "
        "paired differences to real-only). Writes submissions/<id>/results/<backbone>__<protocol>.json; "
        "reruns resume and compute only missing runs.",
    )
    parser.add_argument("--task", required=True, help="task folder or Hub dataset repo id")
    parser.add_argument("--revision", default=None, help="Hub revision of the task (repo ids only)")
    parser.add_argument("--submission", required=True, help="submission folder")
    parser.add_argument(
        "--backbone", nargs="+", default=[DEFAULT_BACKBONE], choices=list(BACKBONES), metavar="NAME",
        help=f"backbone(s) (default {DEFAULT_BACKBONE}); one of: {', '.join(BACKBONES)}",
    )
    parser.add_argument(
        "--protocol", nargs="+", default=None, choices=list(PROTOCOLS), metavar="NAME",
        help=f"protocol(s) (default {DEFAULT_PROTOCOL}; checkpoint submissions: checkpoint); one of: {', '.join(PROTOCOLS)}",
    )
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=positive_int, default=None, help=f"run seeds 0..N-1 (default {len(DEFAULT_SEEDS)})")
    seeds.add_argument("--seed-list", type=_parse_seed_list, default=None, help="explicit seeds, e.g. 0,1")
    parser.add_argument(
        "--settings", type=_parse_settings, default=None,
        help=f"comma-separated settings (default: every one the protocol runs; more-real@k only on a task "
        f"with train_real_extra, real@n with the linear probe): {', '.join(SETTINGS)}",
    )
    parser.add_argument(
        "--cache-dir", default=None,
        help=f"feature cache (default ${CACHE_ENV} or ~/.cache/synthbench/features)",
    )
    parser.add_argument("--device", default="auto", choices=list(DEVICE_CHOICES), help="torch device (default auto)")
    parser.add_argument("--weights", default=None, help="local backbone weights file or folder (offline use)")
    parser.add_argument("--image-size", type=positive_int, default=None, help="backbone input resolution")
    parser.add_argument("--out", default=None, help="write the record here instead of the submission's results/")
    parser.add_argument(
        "--official", action="store_true",
        help="the maintainers' official run: sign the record (needs --signing-key or $SYNTHBENCH_SIGNING_KEY)",
    )
    parser.add_argument(
        "--signing-key", metavar="PATH", default=None,
        help="the maintainers' Ed25519 private key (PEM) for --official (default: $SYNTHBENCH_SIGNING_KEY)",
    )
    parser.add_argument(
        "--no-leakage", action="store_true",
        help="score without the leakage gate, for local exploration: the record says leakage_checked: false "
        "and the leaderboard never ranks it (refused with --official)",
    )
    parser.add_argument(
        "--num-workers", type=int, default=None,
        help="data-loader workers for encoding (default: 0 on the CPU, CPUs - 1 up to 8 on a GPU)",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=None, help="encoding batch size (default: 64 on the CPU, 256 on a GPU)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_executor_arguments(parser)
    parser.set_defaults(func=_run_command)


def _run_command(args: argparse.Namespace) -> int:
    from ..grid import run_grid
    from ..submissions import load_submission, validate_submission
    from ..tasks import load_task

    started = time.perf_counter()
    task = load_task(args.task, revision=args.revision)
    submission = load_submission(args.submission)
    protocols = args.protocol or [None]
    combos = [(b, p) for b in args.backbone for p in protocols]
    if submission.kind == "checkpoint":
        combos = [(None, p) for p in dict.fromkeys(protocols)]
    if args.out and len(combos) > 1:
        raise HarnessError("--out needs a single backbone and protocol")
    seeds = args.seed_list if args.seed_list is not None else (
        list(range(args.seeds)) if args.seeds is not None else list(DEFAULT_SEEDS)
    )
    cache_dir = args.cache_dir or default_cache_dir()
    signing_key = _official_signing_key(args)
    # once, before any compute (its leakage gate fills the feature cache the grid then reuses)
    validating = time.perf_counter()
    validate_submission(
        submission.path, task, cache=cache_dir, device=args.device, check_leakage=not args.no_leakage,
        image_size=args.image_size,  # the grid's input size: the gate's features are the grid's (encoded once)
    ).raise_if_failed()
    print(f"validated {submission.id} in {time.perf_counter() - validating:.0f} s"
          f"{'' if args.no_leakage else ' (leakage gate included)'}")
    if args.executor != "local":
        return _run_on_executor(args, submission, combos, seeds, cache_dir)
    for backbone, protocol in combos:
        record = run_grid(
            task,
            submission,
            backbone=backbone or DEFAULT_BACKBONE,
            protocol=protocol,
            seeds=seeds,
            settings=args.settings,
            cache_dir=cache_dir,
            device=args.device,
            weights=args.weights,
            image_size=args.image_size,
            out_path=args.out,
            progress=not args.no_progress,
            official=args.official,
            validated=True,
            num_workers=args.num_workers,
            batch_size=args.batch_size,
            leakage_checked=not args.no_leakage,
            signing_key=signing_key,
        )
        _print_record(record, Path(args.out) if args.out else None, submission.path)
    print(f"run: wall time {time.perf_counter() - started:.0f} s")
    return 0


def _print_record(record: dict, out: Path | None, submission_folder) -> None:
    """What `synthbench run` prints for one record: its summary table, skips, counts and where it went."""
    import pandas as pd

    from ..grid import summary_table
    from ..results import result_path

    print(f"{record['submission']['id']} | {record['backbone']['name']} | {record['protocol']['name']}")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(summary_table(record).to_string(index=False))
    for entry in record["skipped"]:
        print(f"skipped {entry['setting']}: {entry['reason']}")
    provenance = record["provenance"]
    print(
        f"{provenance['runs_computed']} run(s) computed, {provenance['runs_reused']} reused; "
        f"{provenance['images_encoded']} image(s) encoded in {provenance['seconds_encoding']:.1f}s; "
        f"total {provenance['seconds_total']:.1f}s"
    )
    written = out or result_path(submission_folder, record["backbone"]["name"], record["protocol"]["name"])
    print(f"wrote {written}")


def _official_signing_key(args: argparse.Namespace):
    """The private key an --official run signs with (checked before any compute); None otherwise."""
    if args.signing_key and not args.official:
        raise HarnessError("--signing-key is for --official runs")
    if not args.official:
        return None
    if args.no_leakage:
        raise HarnessError("official records need the leakage gate: drop --no-leakage or --official")
    from ..signing import load_private_key

    return load_private_key(args.signing_key)


def _grid_options(args: argparse.Namespace, seeds, settings, cache_dir) -> GridOptions:
    """The GridOptions of `run --executor` and `run-all`: what the two parsers share, read one way."""
    return GridOptions(
        seeds=seeds,
        settings=settings,
        cache_dir=cache_dir,
        device=args.device,
        image_size=args.image_size,
        weights=str(Path(args.weights).resolve()) if args.weights else None,
        task_revision=args.revision,
        official=args.official,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        leakage_checked=not args.no_leakage,
        signing_key=str(Path(args.signing_key).resolve()) if args.signing_key else None,
    )


def _run_on_executor(args: argparse.Namespace, submission, combos, seeds, cache_dir) -> int:
    """`synthbench run --executor slurm`: the same units, one job each, through benchmark.executors."""
    if args.out:
        raise HarnessError("--out is for local runs; cluster jobs write into the submission's results/")
    options = _grid_options(args, tuple(seeds), tuple(args.settings) if args.settings else None,
                            str(Path(cache_dir).resolve()))
    task_source = str(Path(args.task).resolve()) if Path(args.task).is_dir() else args.task
    units = [
        Unit(task_source, str(Path(submission.path).resolve()), backbone or DEFAULT_BACKBONE, protocol or DEFAULT_PROTOCOL, options)
        for backbone, protocol in combos
    ]
    report = run_units(
        units, executor=args.executor, slurm_config=args.slurm_config, wait=not args.no_wait,
        progress=not args.no_progress, validation="none",  # validated just above
    )
    print(report.summary())
    return 0 if report.ok else 1


# ----------------------------------------------------------------------------------------------
# `synthbench run-all`, and the executor flags both commands take
# ----------------------------------------------------------------------------------------------


def add_executor_arguments(parser: argparse.ArgumentParser) -> None:
    """--executor, --slurm-config and --no-wait (shared by `synthbench run` and `run-all`)."""
    parser.add_argument("--executor", choices=EXECUTORS, default="local",
                        help="local: in this process; slurm: one job per unit through submitit (default: local)")
    parser.add_argument("--slurm-config", metavar="PATH",
                        help=f"Slurm requests and job folder (default: {DEFAULT_SLURM_CONFIG.relative_to(DEFAULT_SLURM_CONFIG.parents[1])})")
    parser.add_argument("--no-wait", action="store_true",
                        help="slurm: submit and return; rerunning the command later collects and resubmits")


def _split(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def _handle_run_all(args: argparse.Namespace) -> int:
    started = time.perf_counter()

    settings = _split(args.settings)
    for name in settings:
        lookup(SETTINGS, name, "setting")
    backbones = _split(args.backbones) or [DEFAULT_BACKBONE]
    for name in backbones:
        lookup(BACKBONES, name, "backbone")
    if args.seed_list:
        try:
            seeds = tuple(int(s) for s in _split(args.seed_list))
        except ValueError:
            raise SynthbenchError(f"--seed-list {args.seed_list!r}: comma-separated integers, e.g. 0,1") from None
    else:
        seeds = tuple(range(args.seeds)) if args.seeds else DEFAULT_SEEDS
    if not seeds or min(seeds) < 0:
        raise SynthbenchError("give at least one non-negative seed")
    options = _grid_options(args, seeds, tuple(settings) or None,
                            str(Path(args.cache_dir).resolve()) if args.cache_dir else None)
    if args.signing_key and not args.official:
        raise SynthbenchError("--signing-key is for --official runs")
    _signing_key(options)  # an official run without a usable key stops here, before any compute
    unloadable: list[tuple[str, str]] = []
    units = plan_units(
        args.task,
        find_submissions(args.submissions),
        backbones=backbones,
        protocols=_split(args.protocols) or [DEFAULT_PROTOCOL],
        options=options,
        unloadable=unloadable,
    )
    report = run_units(
        units, executor=args.executor, slurm_config=args.slurm_config, wait=not args.no_wait,
        progress=sys.stderr.isatty() if args.progress is None else args.progress,
        validation="no-leakage" if args.no_leakage else "full",
    )
    for folder, problem in unloadable:  # reported like a unit that failed validation
        report.failures.append(Failure(f"{Path(folder).name} (every unit)", f"submission cannot be read: {problem}"))
    report.unreadable = len(unloadable)
    print(report.summary())
    print(f"run-all: wall time {time.perf_counter() - started:.0f} s")
    return 0 if report.ok else 1


def register(subparsers) -> None:
    """Add `synthbench run` and `synthbench run-all` to the CLI."""
    _register_run(subparsers)
    _register_run_all(subparsers)


def _register_run_all(subparsers) -> None:
    parser = subparsers.add_parser(
        "run-all",
        help="run the grid for every submission in a folder (locally or on Slurm), resuming",
        description="Run backbones x protocols for every submission folder in --submissions. Units whose "
        "record is complete are skipped; on Slurm, one encode job per backbone fills the shared feature "
        "cache and one job per unit runs the grid (see docs/SCALE.md).",
    )
    parser.add_argument("--task", required=True, help="task folder or Hub dataset repo id")
    parser.add_argument("--revision", help="Hub revision of the task (repo ids only)")
    parser.add_argument("--submissions", required=True, help="folder holding one folder per submission")
    parser.add_argument("--backbones", help="comma-separated backbone names (default: the offline default)")
    parser.add_argument("--protocols", help=f"comma-separated protocols (default: {DEFAULT_PROTOCOL}; "
                        "checkpoint submissions get the checkpoint protocol)")
    parser.add_argument("--settings", help="comma-separated settings (default: every one the protocol runs, as `run`)")
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=int, help=f"run seeds 0..N-1 (default {len(DEFAULT_SEEDS)})")
    seeds.add_argument("--seed-list", help="explicit seeds, e.g. 0,1")
    parser.add_argument("--cache-dir", help="shared feature cache folder")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (in each job)")
    parser.add_argument("--image-size", type=int, help="backbone input resolution (default: the backbone's)")
    parser.add_argument("--weights", help="local weights folder or cache for the backbone (offline runs)")
    parser.add_argument("--official", action="store_true",
                        help="the maintainers' official run: sign the records (needs --signing-key or $SYNTHBENCH_SIGNING_KEY)")
    parser.add_argument("--signing-key", metavar="PATH",
                        help="the maintainers' Ed25519 private key (PEM) for --official (default: $SYNTHBENCH_SIGNING_KEY)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="encoding batch size (default: 64 on CPU, 256 on CUDA)")
    parser.add_argument("--num-workers", type=int, default=None,
                        help="data-loader workers (default: the job's CPUs minus one on Slurm; locally "
                        "none on CPU, CPUs minus one up to 8 on CUDA)")
    parser.add_argument("--no-leakage", action="store_true",
                        help="score without the leakage gate, for local exploration: records say leakage_checked: false "
                        "and the leaderboard never ranks them (refused with --official)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bars (default: only when stderr is a terminal)")
    add_executor_arguments(parser)
    parser.set_defaults(func=_handle_run_all)
