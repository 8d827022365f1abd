"""InstructPix2Pix (Brooks et al., 2023) over the generation inputs, through diffusers.

`StableDiffusionInstructPix2PixPipeline` from a local pipeline folder or a Hub id
(`timbrooks/instruct-pix2pix` by default, pinned with `revision`); on CUDA in float16, else on the
CPU in float32. Each input is resized to `resolution` (a multiple of 8), edited `multiplier` times
with a different seeded `torch.Generator` per variant (so a rerun reproduces every image), in
batches, and written resumably.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..images import encode_png
# the model and its sampling recipe: plain data, so `synthbench generate --help` shows them cheaply
from ..registry import INSTRUCTPIX2PIX_MODEL, IP2P_DEFAULTS
from .common import GeneratorError, derived_seed, generate_into_submission, iter_jobs

log = logging.getLogger(__name__)



def load_instructpix2pix(
    model: str = INSTRUCTPIX2PIX_MODEL,
    *,
    revision: str | None = None,
    device: str = "auto",
    local_files_only: bool = False,
):
    """The pipeline, on `device` (fp16 on CUDA), safety checker off (satellite imagery), no progress bars."""
    import torch
    from diffusers import StableDiffusionInstructPix2PixPipeline

    from ..device import resolve_device

    torch_device = resolve_device(device)
    dtype = torch.float16 if torch_device.type == "cuda" else torch.float32
    local = Path(model).expanduser()
    source = str(local) if local.is_dir() else model
    try:
        pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained(
            source,
            revision=None if local.is_dir() else revision,
            torch_dtype=dtype,
            safety_checker=None,
            requires_safety_checker=False,
            local_files_only=local_files_only,
        )
    except (OSError, ValueError) as exc:
        raise GeneratorError(
            f"could not load InstructPix2Pix from {source!r} ({exc}). Offline, pass a local pipeline folder "
            f"(e.g. one saved with save_pretrained, or a Hugging Face cache snapshot of {INSTRUCTPIX2PIX_MODEL})"
        ) from None
    pipe = pipe.to(torch_device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate_instructpix2pix(
    inputs,
    out_dir: str | Path,
    meta: dict,
    *,
    pipe,
    multiplier: int = 1,
    seed: int = 0,
    batch_size: int = 4,
    num_inference_steps: int = IP2P_DEFAULTS["num_inference_steps"],
    image_guidance_scale: float = IP2P_DEFAULTS["image_guidance_scale"],
    guidance_scale: float = IP2P_DEFAULTS["guidance_scale"],
    resolution: int = IP2P_DEFAULTS["resolution"],
    prompt_template: str = "{prompt}",
    **options,
) -> dict:
    """Edit every input `multiplier` times with `pipe` into a submission at `out_dir`, resumably.

    `options`: store, overwrite, accept_refused, progress (see generate_into_submission).
    """
    import torch
    from PIL import Image

    if resolution % 8:
        raise GeneratorError(f"resolution must be a multiple of 8 (got {resolution})")
    device = pipe.device

    def edit_batch(jobs):
        images = [item.image().resize((resolution, resolution), Image.Resampling.BICUBIC) for item, _ in jobs]
        prompts = [prompt_template.format(prompt=item.prompt, class_name=item.class_name) for item, _ in jobs]
        # One generator per output, seeded by (seed, input, variant): results do not depend on batching.
        generators = [
            torch.Generator(device=device.type).manual_seed(derived_seed(seed, "instructpix2pix", item.image_id, j))
            for item, j in jobs
        ]
        with torch.inference_mode():
            result = pipe(
                prompt=prompts,
                image=images,
                num_inference_steps=num_inference_steps,
                image_guidance_scale=image_guidance_scale,
                guidance_scale=guidance_scale,
                generator=generators,
                output_type="pil",
            )
        return [(encode_png(out.convert("RGB")), ".png") for out in result.images]

    return generate_into_submission(
        out_dir, meta, iter_jobs(inputs, multiplier), edit_batch, batch_size=batch_size, desc="InstructPix2Pix",
        **options,
    )
