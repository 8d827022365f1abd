"""`synthbench pack SOURCE --out TEAM__METHOD --task T ...`: package one's own generator's images."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import SynthbenchError
from ..registry import PACK_LINKS, PACK_QUESTIONS


def _ask_missing(args: argparse.Namespace) -> dict[str, str | None]:
    """The answers given by flag; on a terminal, ask for each one missing."""
    answers = {key: getattr(args, key) for key in (*PACK_QUESTIONS, *PACK_LINKS)}
    if sys.stdin.isatty() and not args.no_input:
        for key, question in PACK_QUESTIONS.items():
            while not (answers[key] or "").strip():
                answers[key] = input(f"{question}: ").strip()
        for key in PACK_LINKS:
            if answers[key] is None:
                answers[key] = input(f"{key} link (https://..., empty for none): ").strip() or None
    return answers


def _pack(args: argparse.Namespace) -> int:
    from ..submissions.format import id_from_folder
    from .common import load_inputs
    from .pack import images_from_class_folders, images_from_listing, pack_submission

    id_from_folder(args.out)  # before any work: the folder's name is the submission's id
    if Path(args.out).exists() and not args.overwrite:
        raise SynthbenchError(f"{args.out}: already exists (pass --overwrite to replace it)")
    if args.listing and args.source:
        raise SynthbenchError("give either SOURCE (class sub-folders) or --listing, not both")
    if not (args.listing or args.source):
        raise SynthbenchError("give SOURCE (a folder of class sub-folders) or --listing FILE.csv|FILE.jsonl")
    answers = _ask_missing(args)
    images = images_from_listing(args.listing) if args.listing else images_from_class_folders(args.source)
    if args.inputs:
        inputs, task_record = load_inputs(None, args.inputs)
        classes = sorted({item.class_name for item in inputs})
        input_ids = {item.image_id for item in inputs}
    else:
        from ..tasks import load_task

        if not args.task:
            raise SynthbenchError("give --task (task folder or Hub id) or --inputs (an exported inputs folder)")
        task = load_task(args.task, revision=args.revision)
        task_record, classes = {"name": task.name, "revision": task.revision}, list(task.classes)
        input_ids = set(task.image_ids("generation_inputs"))
    out = pack_submission(images, args.out, task_record=task_record, classes=classes, answers=answers,
                          input_ids=input_ids, track=args.track, overwrite=args.overwrite)
    print(f"wrote {out}: {len(images)} image(s)\nnext: synthbench validate {out} --task {args.task or task_record['name']}")
    return 0


def register_pack(subparsers) -> None:
    parser = subparsers.add_parser(
        "pack", help="package a folder of generated images (class sub-folders or a CSV/JSONL listing) as a submission",
        description="Turn images made by any generator into a submission folder: class sub-folders "
        "(SOURCE/<class>/<image>; an image named after its generation input, <image_id>.png or "
        "<image_id>-2.png, records it as its source_id) or a listing (--listing, CSV or JSONL with the columns "
        "file, label, source_id, prompt; files relative to the listing). Asks for what is missing on a terminal; "
        "refuses placeholder answers (unknown, TBD, ...).",
    )
    parser.add_argument("source", nargs="?", help="folder of class sub-folders of images")
    parser.add_argument("--listing", help="CSV or JSONL listing of the images (instead of SOURCE)")
    parser.add_argument("--out", required=True, help="the submission folder to write, named TEAM__METHOD (its id)")
    parser.add_argument("--task", help="task folder or Hugging Face dataset repo id")
    parser.add_argument("--revision", help="Hub revision (commit) of the task, for a repo id")
    parser.add_argument("--inputs", help="a folder written by `synthbench inputs export` (instead of --task)")
    parser.add_argument("--track", default="generated", choices=("generated", "open"),
                        help="generated (edits of the generation inputs) or open (default generated)")
    for key, question in PACK_QUESTIONS.items():
        parser.add_argument(f"--{key.replace('_', '-')}", dest=key, help=question)
    for key in PACK_LINKS:
        parser.add_argument(f"--{key}", dest=key, help=f"https link to the method's {key} (optional)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing submission folder")
    parser.add_argument("--no-input", action="store_true", help="never ask on a terminal: refuse what is missing")
    parser.set_defaults(func=_pack)
