"""`synthbench inputs export`, `synthbench generate <generator>` and `synthbench pack`.

A submission's id is its folder's name: every command here takes team and method from an --out
folder named `<team>__<method>` and refuses any other name before doing any work.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..cliargs import positive_int
from ..errors import SynthbenchError
from ..io import check_replaceable
from ..registry import BASELINES

#: Every generator `synthbench generate` knows: the baselines, the demo editor and the adapters.
GENERATORS: dict[str, str] = {
    **BASELINES,
    "demo-editor": "the demo task's procedural editor over the generation inputs (generated track)",
    "instructpix2pix": "InstructPix2Pix through diffusers (local pipeline folder or Hub id; GPU when present)",
    "openai": "OpenAI image editing (gpt-image-1) through the openai SDK; key from $OPENAI_API_KEY",
    "gemini": "Gemini image editing through the google-genai SDK; key from $GEMINI_API_KEY or $GOOGLE_API_KEY",
}
_API_ENVIRONMENT = {
    "openai": "environment: OPENAI_API_KEY (required), OPENAI_BASE_URL (optional); SYNTHBENCH_CACHE holds the progress",
    "gemini": "environment: GEMINI_API_KEY or GOOGLE_API_KEY (required), GEMINI_BASE_URL (optional); "
    "SYNTHBENCH_CACHE holds the progress",
}


def _export(args: argparse.Namespace) -> int:
    from ..tasks import load_task
    from .inputs import export_inputs

    if args.overwrite:
        check_replaceable(args.out, "inputs.jsonl", "a generation-inputs folder")
    task = load_task(args.task, revision=args.revision)
    out = export_inputs(task, args.out, overwrite=args.overwrite)
    print(f"wrote {task.splits['generation_inputs'].num_rows} generation inputs of {task.name} to {out}")
    return 0


def _task_hint(args: argparse.Namespace, task_record: dict) -> str:
    """The --task to print in next steps: the one given, else the exported inputs' task."""
    return args.task or task_record.get("name") or "TASK"


def _report(out: Path, counts: dict, task_hint: str) -> int:
    print(f"{out}: {counts['written']} image(s) written, {counts['already_done']} already there, "
          f"{counts['refused']} refused or failed")
    if not counts["complete"]:
        print(f"not complete: rerun the same command to retry the refused outputs (progress kept in {counts['store']}), "
              "or add --accept-refused to write the submission without them", file=sys.stderr)
        return 1
    print(f"next: synthbench validate {out} --task {task_hint}")
    return 0


def _generate_from_task(args: argparse.Namespace, out: Path) -> int:
    from ..tasks import load_task

    if not args.task:
        raise SynthbenchError(f"synthbench generate {args.generator}: --task is required (it reads the task's images)")
    task = load_task(args.task, revision=args.revision)
    if args.generator == "demo-editor":
        from .demo_editor import generate_demo_editor

        generate_demo_editor(task, out, multiplier=args.multiplier, seed=args.seed, overwrite=args.overwrite,
                             progress=args.progress)
    else:
        from .baselines import generate_baseline

        generate_baseline(args.generator, task, out, multiplier=args.multiplier, seed=args.seed, overwrite=args.overwrite)
    print(f"wrote {out}\nnext: synthbench validate {out} --task {args.task}")
    return 0


def _api_editor(args: argparse.Namespace):
    """(editor, generator record) of an API adapter run."""
    if args.generator == "openai":
        from .openai_edit import OpenAIImageEditor

        bad = [item for item in args.param if "=" not in item]
        if bad:
            raise SynthbenchError(f"--param needs KEY=VALUE (got {', '.join(bad)})")
        editor = OpenAIImageEditor(base_url=args.base_url, model=args.model, size=args.size, quality=args.quality,
                                   extra=dict(item.split("=", 1) for item in args.param))
        link = "https://platform.openai.com/docs/models"
    else:
        from .gemini_edit import GeminiImageEditor

        editor = GeminiImageEditor(base_url=args.base_url, model=args.model)
        link = "https://ai.google.dev/gemini-api/docs/models"
    return editor, {"name": args.model, "version": args.model_version or args.model, "link": link}


def _generate(args: argparse.Namespace) -> int:
    """Run the generator, then say how long it took (a paid or GPU run is a long stage)."""
    import time

    started = time.perf_counter()
    try:
        return _generate_submission(args)
    finally:
        print(f"generate {args.generator}: wall time {time.perf_counter() - started:.0f} s", file=sys.stderr)


def _generate_submission(args: argparse.Namespace) -> int:
    from ..submissions.format import id_from_folder, placeholder_problem

    out = Path(args.out)
    team, method = id_from_folder(out)  # before any work: the folder's name is the submission's id
    if args.overwrite:
        check_replaceable(out, "submission.yaml", "a submission folder")
    elif out.exists():
        raise SynthbenchError(f"{out}: already exists (pass --overwrite to replace it)")
    if args.generator in BASELINES or args.generator == "demo-editor":
        return _generate_from_task(args, out)

    from .common import load_inputs, submission_meta

    for key in ("contact", "licence"):
        problem = placeholder_problem(key, getattr(args, key))
        if problem:
            raise SynthbenchError(f"--{key}: {problem}")
    inputs, task_record = load_inputs(args.task, args.inputs, args.revision)
    options = {"multiplier": args.multiplier, "prompt_template": args.prompt_template, "progress": args.progress,
               "overwrite": args.overwrite, "accept_refused": args.accept_refused}
    if args.generator == "instructpix2pix":
        from .instructpix2pix import generate_instructpix2pix, load_instructpix2pix

        pipe = load_instructpix2pix(args.model, revision=args.model_revision, device=args.device)
        generator = {"name": "instructpix2pix", "version": args.model_revision or "main", "link": args.model}
        run = lambda meta: generate_instructpix2pix(  # noqa: E731
            inputs, out, meta, pipe=pipe, seed=args.seed, batch_size=args.batch_size, num_inference_steps=args.steps,
            image_guidance_scale=args.image_guidance_scale, guidance_scale=args.guidance_scale,
            resolution=args.resolution, **options)
    else:
        from .common import generate_with_editor

        editor, generator = _api_editor(args)
        run = lambda meta: generate_with_editor(editor, inputs, out, meta, desc=f"{args.generator} {args.model}",  # noqa: E731
                                                **options)
    meta = submission_meta(team=team, method=method, track="generated", generator=generator, task=task_record,
                           contact=args.contact, licence=args.licence, notes=f"synthbench generate {args.generator}")
    return _report(out, run(meta), _task_hint(args, task_record))


def _add_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar (default: only when stderr is a terminal)")


def _common(parser: argparse.ArgumentParser, *, api: bool) -> None:
    parser.add_argument("--task", help="task folder or Hugging Face dataset repo id")
    parser.add_argument("--revision", help="Hub revision (commit) of the task, for a repo id")
    parser.add_argument("--out", required=True,
                        help="the submission folder to write, named TEAM__METHOD (its name is the submission's id)")
    parser.add_argument("--multiplier", type=positive_int, default=4, help="outputs per input / per real image (default 4: ratio 1:4)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    _add_progress(parser)
    if api:
        parser.add_argument("--inputs", help="a folder written by `synthbench inputs export` (instead of --task)")
        parser.add_argument("--contact", required=True, help="contact e-mail or URL for submission.yaml")
        parser.add_argument("--licence", required=True, help="licence of the generated images (e.g. CC-BY-4.0)")
        parser.add_argument("--prompt-template", default="{prompt}",
                            help="wraps each input's prompt; fields {prompt} and {class_name} (default: the prompt as is)")
        parser.add_argument("--accept-refused", action="store_true",
                            help="write the submission even when some outputs were refused (default: keep the "
                            "progress and ask for a rerun)")


def _add_generator_options(name: str, parser: argparse.ArgumentParser) -> None:
    if name == "instructpix2pix":
        from ..registry import INSTRUCTPIX2PIX_MODEL, IP2P_DEFAULTS

        parser.add_argument("--model", default=INSTRUCTPIX2PIX_MODEL, help="local pipeline folder or Hub id")
        parser.add_argument("--model-revision", help="Hub revision (commit) of the pipeline")
        parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
        parser.add_argument("--batch-size", type=int, default=4)
        parser.add_argument("--steps", type=int, default=IP2P_DEFAULTS["num_inference_steps"])
        parser.add_argument("--image-guidance-scale", type=float, default=IP2P_DEFAULTS["image_guidance_scale"])
        parser.add_argument("--guidance-scale", type=float, default=IP2P_DEFAULTS["guidance_scale"])
        parser.add_argument("--resolution", type=int, default=IP2P_DEFAULTS["resolution"])
    elif name in ("openai", "gemini"):
        from ..registry import GEMINI_MODEL, OPENAI_MODEL

        parser.add_argument("--model", default=OPENAI_MODEL if name == "openai" else GEMINI_MODEL)
        parser.add_argument("--model-version", help="the model snapshot used, for submission.yaml (default: --model)")
        parser.add_argument("--base-url", help=f"API base URL (default ${name.upper()}_BASE_URL, else the provider's)")
    if name == "openai":
        parser.add_argument("--size", default="1024x1024", help="output size (1024x1024, 1536x1024, 1024x1536, auto)")
        parser.add_argument("--quality", default="auto", help="low, medium, high or auto")
        parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                            help="extra form field for the edits request (repeatable)")


def register(subparsers) -> None:
    inputs = subparsers.add_parser("inputs", help="the generation kit: export a task's generation inputs")
    inputs_sub = inputs.add_subparsers(dest="inputs_command", metavar="ACTION")
    inputs_sub.required = True
    export = inputs_sub.add_parser(
        "export", help="write the generation inputs (PNG + inputs.jsonl + prompt templates) to a folder",
    )
    export.add_argument("--task", required=True, help="task folder or Hugging Face dataset repo id")
    export.add_argument("--revision", help="Hub revision (commit) of the task, for a repo id")
    export.add_argument("--out", required=True, help="the folder to write")
    export.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    export.set_defaults(func=_export)

    generate = subparsers.add_parser("generate", help="make a submission with a baseline or a generator adapter")
    generators = generate.add_subparsers(dest="generator", metavar="GENERATOR")
    generators.required = True
    for name, description in GENERATORS.items():
        parser = generators.add_parser(name, help=description, description=description,
                                       epilog=_API_ENVIRONMENT.get(name))
        _common(parser, api=name in ("instructpix2pix", "openai", "gemini"))
        _add_generator_options(name, parser)
        parser.set_defaults(func=_generate)
    from .pack_cli import register_pack

    register_pack(subparsers)
