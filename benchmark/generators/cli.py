"""`synthbench inputs export` and `synthbench generate <generator>`."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from ..cli import positive_int
from ..io import check_replaceable
from ..errors import SynthbenchError
from .baselines import BASELINES

#: A submission folder's name `<team>__<method>` (the id format of submission.yaml).
_FOLDER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*__[A-Za-z0-9][A-Za-z0-9._-]*$")
DEFAULT_TEAM = "my-team"

#: Every generator `synthbench generate` knows: the baselines, the demo editor and the adapters.
GENERATORS: dict[str, str] = {
    **BASELINES,
    "demo-editor": "the demo task's procedural editor over the generation inputs (generated track)",
    "instructpix2pix": "InstructPix2Pix through diffusers (local pipeline folder or Hub id; GPU when present)",
    "openai": "OpenAI image editing (gpt-image-1) through the HTTP API; key from OPENAI_API_KEY",
    "gemini": "Gemini image editing through the HTTP API; key from GEMINI_API_KEY or GOOGLE_API_KEY",
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


def _report(out: Path, counts: dict) -> None:
    print(
        f"{out}: {counts['written']} image(s) written, {counts['already_done']} already there, "
        f"{counts['refused']} refused or failed (rerun to retry them)"
    )
    print(f"next: synthbench validate {out} --task <task>")


def _team_and_method(args: argparse.Namespace, generator_name: str) -> None:
    """Default --team and --method from an --out folder named `<team>__<method>`, so that the
    submission's id is its folder's name (the leaderboard refuses an entry whose id differs)."""
    folder = Path(args.out).name
    team, _, method = folder.partition("__") if _FOLDER_ID.match(folder) else (None, "", None)
    if args.team is None:
        args.team = team or DEFAULT_TEAM
    if args.method is None:
        args.method = method if team is not None and args.team == team else generator_name.replace("/", "-")


def _generate(args: argparse.Namespace) -> int:
    from ..tasks import load_task
    from .common import check_out_dir, generator_meta_from_args, load_inputs

    out = Path(args.out)
    name = args.generator
    if args.overwrite:
        check_replaceable(out, "submission.yaml", "a submission folder")
    if name in BASELINES or name == "demo-editor":
        if not args.task:
            raise SynthbenchError(f"synthbench generate {name}: --task is required (it reads the task's images)")
        task = load_task(args.task, revision=args.revision)
        if name == "demo-editor":
            from .demo_editor import generate_demo_editor

            generate_demo_editor(task, out, multiplier=args.multiplier, seed=args.seed, overwrite=args.overwrite,
                                 progress=not args.no_progress)
        else:
            from .baselines import generate_baseline

            generate_baseline(name, task, out, multiplier=args.multiplier, seed=args.seed, overwrite=args.overwrite)
        print(f"wrote {out}\nnext: synthbench validate {out} --task {args.task}")
        return 0

    inputs, task_record = load_inputs(args.task, args.inputs, args.revision)
    check_out_dir(out, args.overwrite)
    progress = not args.no_progress
    if name == "instructpix2pix":
        from .instructpix2pix import generate_instructpix2pix, load_instructpix2pix

        pipe = load_instructpix2pix(args.model, revision=args.model_revision, device=args.device)
        generator = {"name": "instructpix2pix", "version": args.model_revision or "main", "link": args.model}
        _team_and_method(args, generator["name"])
        meta = generator_meta_from_args(args, generator, task_record, f"synthbench generate instructpix2pix, seed {args.seed}")
        counts = generate_instructpix2pix(
            inputs, out, meta, pipe=pipe, multiplier=args.multiplier, seed=args.seed, batch_size=args.batch_size,
            num_inference_steps=args.steps, image_guidance_scale=args.image_guidance_scale,
            guidance_scale=args.guidance_scale, resolution=args.resolution, prompt_template=args.prompt_template,
            progress=progress,
        )
    elif name == "openai":
        from .openai_edit import OpenAIImageEditor, generate_openai

        bad = [item for item in args.param if "=" not in item]
        if bad:
            raise SynthbenchError(f"--param needs KEY=VALUE (got {', '.join(bad)})")
        extra = dict(item.split("=", 1) for item in args.param)
        editor = OpenAIImageEditor(base_url=args.base_url, model=args.model, size=args.size, quality=args.quality, extra=extra)
        generator = {"name": args.model, "version": "OpenAI images/edits API", "link": "https://platform.openai.com/docs/api-reference/images"}
        _team_and_method(args, generator["name"])
        meta = generator_meta_from_args(args, generator, task_record, "synthbench generate openai")
        counts = generate_openai(inputs, out, meta, multiplier=args.multiplier, editor=editor,
                                 prompt_template=args.prompt_template, progress=progress)
    else:
        from .gemini_edit import GeminiImageEditor, generate_gemini

        editor = GeminiImageEditor(base_url=args.base_url, model=args.model)
        generator = {"name": args.model, "version": "Gemini generateContent API", "link": "https://ai.google.dev/gemini-api/docs/image-generation"}
        _team_and_method(args, generator["name"])
        meta = generator_meta_from_args(args, generator, task_record, "synthbench generate gemini")
        counts = generate_gemini(inputs, out, meta, multiplier=args.multiplier, editor=editor,
                                 prompt_template=args.prompt_template, progress=progress)
    _report(out, counts)
    return 0


def _common(parser: argparse.ArgumentParser, *, api: bool) -> None:
    parser.add_argument("--task", help="task folder or Hugging Face dataset repo id")
    parser.add_argument("--revision", help="Hub revision (commit) of the task, for a repo id")
    parser.add_argument("--out", required=True, help="the submission folder to write")
    parser.add_argument("--multiplier", type=positive_int, default=4, help="outputs per input / per real image (default 4: ratio 1:4)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    if api:
        parser.add_argument("--inputs", help="a folder written by `synthbench inputs export` (instead of --task)")
        parser.add_argument(
            "--team", help=f"team name for submission.yaml (default: from an --out folder named TEAM__METHOD, else {DEFAULT_TEAM})"
        )
        parser.add_argument(
            "--method", help="method name for submission.yaml (default: from an --out folder named TEAM__METHOD, else the generator's)"
        )
        parser.add_argument("--contact", default="unknown", help="contact e-mail or URL for submission.yaml")
        parser.add_argument("--licence", default="see the generator's terms of use", help="licence of the images")
        parser.add_argument("--prompt-template", default="{prompt}",
                            help="wraps each input's prompt; fields {prompt} and {class_name} (default: the prompt as is)")


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
        api = name in ("instructpix2pix", "openai", "gemini")
        parser = generators.add_parser(name, help=description, description=description)
        _common(parser, api=api)
        if name == "instructpix2pix":
            from .instructpix2pix import INSTRUCTPIX2PIX_MODEL, IP2P_DEFAULTS

            parser.add_argument("--model", default=INSTRUCTPIX2PIX_MODEL, help="local pipeline folder or Hub id")
            parser.add_argument("--model-revision", help="Hub revision (commit) of the pipeline")
            parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
            parser.add_argument("--batch-size", type=int, default=4)
            parser.add_argument("--steps", type=int, default=IP2P_DEFAULTS["num_inference_steps"])
            parser.add_argument("--image-guidance-scale", type=float, default=IP2P_DEFAULTS["image_guidance_scale"])
            parser.add_argument("--guidance-scale", type=float, default=IP2P_DEFAULTS["guidance_scale"])
            parser.add_argument("--resolution", type=int, default=IP2P_DEFAULTS["resolution"])
        elif name == "openai":
            from .openai_edit import OPENAI_MODEL

            parser.add_argument("--model", default=OPENAI_MODEL)
            parser.add_argument("--base-url", help="API base URL (default $OPENAI_BASE_URL or https://api.openai.com/v1)")
            parser.add_argument("--size", default="1024x1024", help="output size (1024x1024, 1536x1024, 1024x1536, auto)")
            parser.add_argument("--quality", default="auto", help="low, medium, high or auto")
            parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                                help="extra form field for the edits request (repeatable)")
        elif name == "gemini":
            from .gemini_edit import GEMINI_MODEL

            parser.add_argument("--model", default=GEMINI_MODEL)
            parser.add_argument("--base-url", help="API base URL (default $GEMINI_BASE_URL or the v1beta endpoint)")
        parser.set_defaults(func=_generate)
