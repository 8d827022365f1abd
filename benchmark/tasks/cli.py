"""`synthbench task build xbd|imagefolder|demo`, `task verify`, `task info`, `task publish`."""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

from ..cliargs import non_negative_int, positive_int
from ..io import check_replaceable
from ..errors import TaskError


def load_task(*args, **kwargs):
    """benchmark.tasks.record.load_task, imported on first call: building the `task` parsers stays
    free of datasets and pyarrow."""
    from .record import load_task as load

    return load(*args, **kwargs)


def _common_build_kwargs(args) -> dict:
    """The builder keywords from the flags of `_add_common_build_args` (`--out` goes by position)."""
    if args.overwrite:
        check_replaceable(args.out, "task.json", "a task folder")
    kwargs = {
        "seed": args.seed,
        "train_per_class": args.train_per_class,
        "test_per_class": args.test_per_class,
        "overwrite": args.overwrite,
        "progress": not args.no_progress,
    }
    if hasattr(args, "resize"):
        kwargs["resize"] = args.resize
    if hasattr(args, "extra_per_class"):
        kwargs["extra_per_class"] = args.extra_per_class
    return kwargs


def _embedder(args, image_size: int | None = None):
    """The deduplication's embedder from `--cache-dir` / `--device` (default backbone)."""
    from ..device import resolve_device
    from .dedup import resolve_embedder

    return resolve_embedder(None, cache_dir=args.cache_dir, device=str(resolve_device(args.device)), image_size=image_size)


def _build_xbd(args) -> int:
    from .xbd import build_xbd_task

    if args.from_manifest is not None:
        return _rebuild_xbd(args)
    kwargs = _common_build_kwargs(args)
    path = build_xbd_task(args.xbd_root, args.out, label_source=args.label_source, embedder=_embedder(args), **kwargs)
    return _report_built(path)


def _build_imagefolder(args) -> int:
    from .imagefolder import DEFAULT_LICENCE, DEFAULT_PROMPT_TEMPLATE, build_imagefolder_task

    kwargs = _common_build_kwargs(args)
    path = build_imagefolder_task(
        args.root,
        args.out,
        name=args.name,
        prompt_template=args.prompt_template or DEFAULT_PROMPT_TEMPLATE,
        licence=args.licence or DEFAULT_LICENCE,
        embedder=_embedder(args),
        **kwargs,
    )
    return _report_built(path)


def _build_demo(args) -> int:
    from .demo import build_demo_task

    kwargs = _common_build_kwargs(args)
    path = build_demo_task(args.out, image_size=args.image_size, embedder=_embedder(args, args.image_size), **kwargs)
    return _report_built(path)


def _rebuild_xbd(args) -> int:
    """`task build xbd --from-manifest`: the published task, rebuilt from the user's own download."""
    from .release import rebuild_from_release

    if args.overwrite:
        check_replaceable(args.out, "task.json", "a task folder")
    path = rebuild_from_release(
        args.from_manifest, args.xbd_root, args.out, revision=args.revision, builder="xbd", overwrite=args.overwrite
    )
    print(f"rebuilt from the manifest {args.from_manifest}: every image matches its SHA-256 and every file the release's manifest")
    return _report_built(path)


def _timed(handler, label: str):
    """`handler`, ending with its wall time (builds and verification take minutes on real data)."""

    @functools.wraps(handler)
    def run(args) -> int:
        started = time.perf_counter()
        status = handler(args)
        print(f"{label}: wall time {time.perf_counter() - started:.0f} s")
        return status

    return run


def _report_built(path: Path) -> int:
    task = load_task(path)
    print(f"built task {task.name} at {path}")
    _print_sizes(task)
    print(f"test_manifest_hash: {task.test_manifest_hash}")
    removed = (task.near_duplicates or {}).get("removed", [])
    print(f"near-duplicates of test images removed from training: {len(removed)}")
    for pair in removed:
        print(f"  {_describe_pair(pair)}")
    for note in task.info.get("notes", []):
        if note.startswith("short training class after deduplication"):
            print(f"warning: {note}")
        if note.startswith("train_real_extra"):
            print(note)
    return 0


def _describe_pair(pair: dict) -> str:
    return (
        f"{pair['split']} {pair['image_id']} ({pair['source_file']}) ~ test {pair['test_image_id']} "
        f"({pair['test_source_file']}): pHash distance {pair['phash_distance']}, match score "
        f"{pair['match_score']:.3f}, cosine {pair['cosine']:.3f}"
    )


def _print_sizes(task) -> None:
    for split in task.splits:
        counts = task.info["split_sizes"][split]
        print(f"  {split}: {sum(counts.values())} ({', '.join(f'{c} {n}' for c, n in counts.items())})")


def _verify(args) -> int:
    from .dedup import check_near_duplicates

    task = load_task(args.path, revision=args.revision, verify=True)
    print(f"ok: {task.name} ({task.path}, revision {task.revision}): every file and image matches manifest.json")
    if args.no_near_duplicates:
        return 0
    record = task.near_duplicates
    if record is None:
        print(f"note: {task.name} was built without deduplication (task schema_version {task.manifest['schema_version']})")
    embedder = _embedder(args, record.get("image_size") if record else None)
    pairs = check_near_duplicates(task, embedder, progress=not args.no_progress)
    if pairs:
        raise TaskError(
            f"{task.path}: {len(pairs)} training image(s) are near-copies of test images:\n  - "
            + "\n  - ".join(pair.describe() for pair in pairs)
        )
    checked = ", ".join(s for s in task.splits if s != "test")
    print(f"ok: no image of {checked} is a near-copy of a test image (near-duplicate detector re-run)")
    return 0


def _info(args) -> int:
    task = load_task(args.path, revision=args.revision, verify=not args.no_verify)
    if args.json:
        print(json.dumps({**task.info, "revision": task.revision, "test_manifest_hash": task.test_manifest_hash}, indent=2))
        return 0
    print(f"{task.name}{'  [PIPELINE DEMO, not a scientific result]' if task.is_demo else ''}")
    print(f"  path: {task.path}")
    print(f"  revision: {task.revision}")
    print(f"  builder: {task.info['builder']} v{task.info.get('builder_version')}, seed {task.info.get('seed')}")
    print(f"  classes: {', '.join(task.classes)}")
    _print_sizes(task)
    print(f"  test_manifest_hash: {task.test_manifest_hash}")
    record = task.near_duplicates
    if record is None:
        print("  deduplication: none recorded (built without it)")
    else:
        print(f"  deduplication: {len(record['removed'])} training image(s) removed as near-copies of test images")
    for note in task.info.get("notes", []):
        print(f"  note: {note}")
    return 0


#: Printed before images are uploaded (`task publish --include-images`).
INCLUDE_IMAGES_WARNING = (
    "warning: --include-images uploads the task's images: that re-hosts the source data. Do it only in a "
    "private or gated repository and only where the source's terms allow it (xBD: CC BY-NC-SA 4.0, "
    "distributed by its authors after registration); the default release lists the images without them."
)


def _publish(args) -> int:
    import sys
    import tempfile

    from .release import write_release

    task = load_task(args.path, verify=True)  # never publish a folder that fails its own manifest
    if args.include_images:
        print(INCLUDE_IMAGES_WARNING, file=sys.stderr)
    if args.dry_run:
        if args.include_images:
            print(f"dry run: would upload {task.path} as it is (images included) to {args.repo_id or 'the repo'}")
            return 0
        if args.out is None:
            raise TaskError("--dry-run writes the manifest-only release to a local folder: pass --out DIR")
        out = write_release(task, args.out, repo_id=args.repo_id, overwrite=args.overwrite)
        print(f"dry run: wrote the manifest-only release of {task.name} to {out} (nothing uploaded)")
        return 0
    if args.repo_id is None:
        raise TaskError("publishing needs --repo-id ORG/NAME (or --dry-run --out DIR to write the release locally)")
    if args.include_images:
        return _upload(args, task, task.path, "task")
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_release(task, Path(tmp) / "release", repo_id=args.repo_id)
        return _upload(args, task, folder, "manifest-only release")


def _upload(args, task, folder: Path, what: str) -> int:
    from huggingface_hub import HfApi

    api = HfApi(token=args.token)
    try:
        api.create_repo(args.repo_id, repo_type="dataset", private=args.private, exist_ok=True)
        commit = api.upload_folder(
            repo_id=args.repo_id,
            repo_type="dataset",
            folder_path=str(folder),
            commit_message=args.message or f"synthbench {what} {task.name} (test {task.test_manifest_hash[:12]})",
        )
    except Exception as exc:  # network, auth and permission errors from the Hub
        raise TaskError(f"could not publish {task.path} to dataset repo {args.repo_id}: {type(exc).__name__}: {exc}") from None
    print(f"published the {what} {task.name} to https://huggingface.co/datasets/{args.repo_id}")
    print(f"revision to pin: {commit.oid}")
    if what == "task":
        print(f"load it with: load_task({args.repo_id!r}, revision={commit.oid!r})")
    else:
        print(f"rebuild it with: synthbench task build {task.info['builder']} --from-manifest {args.repo_id} "
              f"--revision {commit.oid} ... --out TASK")
    return 0


def _add_common_build_args(
    parser: argparse.ArgumentParser,
    *,
    test_per_class: int | None,
    test_help: str | None = None,
    resize_help: str | None = None,
) -> None:
    """The flags every `task build` builder takes; `--resize` and `--extra-per-class` only where
    `resize_help` is given (the builders of real images)."""
    parser.add_argument("--out", required=True, type=Path, help="task folder to create")
    parser.add_argument("--seed", type=int, default=0, help="selection seed (default 0)")
    parser.add_argument("--train-per-class", type=positive_int, default=100, help="train_real images per class (default 100)")
    parser.add_argument(
        "--test-per-class", type=positive_int, default=test_per_class, help=test_help or f"test images per class (default {test_per_class})"
    )
    if resize_help:
        parser.add_argument("--resize", type=positive_int, default=None, help=resize_help)
        parser.add_argument(
            "--extra-per-class", type=non_negative_int, default=None,
            help="train_real_extra images per class at most, for the grid's more-real@k control "
                 "(default: 4 x --train-per-class; 0: none)",
        )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing task folder at --out")
    _add_detector_args(parser)


def _add_detector_args(parser: argparse.ArgumentParser) -> None:
    """The near-duplicate detector's flags (build and verify) and --no-progress."""
    parser.add_argument(
        "--cache-dir", type=Path, default=None,
        help="feature cache of the near-duplicate detector's embeddings (default: $SYNTHBENCH_CACHE or ~/.cache/synthbench/features)",
    )
    parser.add_argument("--device", default="auto", help="device of the detector's backbone: auto, cpu, cuda (default auto)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def register(subparsers) -> None:
    """Add `task` and its subcommands to the synthbench parser."""
    task = subparsers.add_parser("task", help="build, verify, inspect and publish task datasets")
    task_sub = task.add_subparsers(dest="task_command", metavar="TASK_COMMAND")
    task_sub.required = True

    build = task_sub.add_parser("build", help="build a task folder")
    build_sub = build.add_subparsers(dest="builder", metavar="BUILDER")
    build_sub.required = True

    xbd = build_sub.add_parser("xbd", help="the flagship xbd-disaster6 task from the official xBD download")
    xbd.add_argument("--xbd-root", required=True, type=Path, help="folder with train/ tier3/ test/ hold/")
    _add_common_build_args(xbd, test_per_class=100, resize_help="resize tiles to N x N pixels (default: keep 1024 x 1024)")
    xbd.add_argument(
        "--from-manifest", default=None, metavar="ORG/REPO|PATH",
        help="rebuild exactly the task of a manifest-only release (`task publish`) from --xbd-root, checking every "
             "file's SHA-256 (the selection flags are then ignored)",
    )
    xbd.add_argument("--revision", default=None, help="Hub revision of --from-manifest (repo ids only)")
    xbd.add_argument(
        "--label-source",
        choices=("table", "metadata"),
        default="table",
        help="class of each tile: the event table (default) or the label JSON's disaster_type",
    )
    xbd.set_defaults(func=_timed(_build_xbd, "task build"))

    folder = build_sub.add_parser("imagefolder", help="a task from class sub-folders of images")
    folder.add_argument("root", type=Path, help="folder with one sub-folder of images per class")
    _add_common_build_args(
        folder,
        test_per_class=None,
        test_help="default: as many as every class can give (balanced)",
        resize_help="resize images to N x N pixels (default: keep their size)",
    )
    folder.add_argument("--name", default=None, help="task name (default: the folder name)")
    folder.add_argument("--prompt-template", default=None, help="generation prompt with {name} (class)")
    folder.add_argument("--licence", default=None, help="Hub licence id of the images (default: other)")
    folder.set_defaults(func=_timed(_build_imagefolder, "task build"))

    demo = build_sub.add_parser("demo", help="the procedural demo-disaster6 task (pipeline demo, seconds, offline)")
    _add_common_build_args(demo, test_per_class=50)
    demo.add_argument("--image-size", type=int, default=96, help="image side in pixels, 32 to 1024 (default 96)")
    demo.set_defaults(func=_timed(_build_demo, "task build"))

    verify = task_sub.add_parser(
        "verify", help="check every file and image of a task against its manifest, and that no training image is a near-copy of a test image"
    )
    verify.add_argument("path", help="task folder or Hub dataset repo id")
    verify.add_argument("--revision", default=None, help="Hub revision (repo ids only)")
    verify.add_argument(
        "--no-near-duplicates", action="store_true",
        help="only check files and images against the manifest (skip re-running the near-duplicate detector)",
    )
    _add_detector_args(verify)
    verify.set_defaults(func=_timed(_verify, "task verify"))

    info = task_sub.add_parser("info", help="print a task's classes, split sizes and identity")
    info.add_argument("path", help="task folder or Hub dataset repo id")
    info.add_argument("--revision", default=None)
    info.add_argument("--json", action="store_true", help="print task.json (+ revision and test hash) as JSON")
    info.add_argument("--no-verify", action="store_true", help="skip the manifest check")
    info.set_defaults(func=_info)

    publish = task_sub.add_parser(
        "publish", help="publish a task as a Hub dataset repo: by default manifest-only (file names, hashes, labels; no images)"
    )
    publish.add_argument("path", type=Path)
    publish.add_argument("--repo-id", default=None, help="ORG/NAME of the dataset repo (required unless --dry-run)")
    publish.add_argument(
        "--include-images", action="store_true",
        help="upload the task folder with its images (only for a private or gated repo; prints a warning)",
    )
    publish.add_argument("--dry-run", action="store_true", help="write the manifest-only release to --out, upload nothing")
    publish.add_argument("--out", type=Path, default=None, help="folder for --dry-run's release")
    publish.add_argument("--overwrite", action="store_true", help="replace an existing release folder at --out")
    publish.add_argument("--private", action="store_true")
    publish.add_argument("--token", default=None, help="Hub token (default: the logged-in one / HF_TOKEN)")
    publish.add_argument("--message", default=None, help="commit message")
    publish.set_defaults(func=_publish)
