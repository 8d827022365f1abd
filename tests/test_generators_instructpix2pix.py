"""The InstructPix2Pix adapter with a tiny, randomly initialised pipeline of the real architecture
(UNet2DConditionModel with 8 input channels, AutoencoderKL, CLIPTextModel and a CLIPTokenizer built
from a locally written vocabulary): the same diffusers code path as timbrooks/instruct-pix2pix."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.cli import main
from benchmark.generators.common import submission_meta, task_generation_inputs
from benchmark.submissions import load_submission
from benchmark.tasks import load_task
from benchmark.tasks.demo import build_demo_task

diffusers = pytest.importorskip("diffusers")


def build_tiny_pipeline(folder: Path) -> Path:
    import torch
    from diffusers import AutoencoderKL, EulerAncestralDiscreteScheduler, StableDiffusionInstructPix2PixPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    tokenizer_dir = folder / "tokenizer-source"
    tokenizer_dir.mkdir(parents=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for char in "abcdefghijklmnopqrstuvwxyz":
            vocab[char + suffix] = len(vocab)
    (tokenizer_dir / "vocab.json").write_text(json.dumps(vocab))
    (tokenizer_dir / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(tokenizer_dir / "vocab.json"), str(tokenizer_dir / "merges.txt"), model_max_length=77)

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=8, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16, norm_num_groups=4, attention_head_dim=2,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), block_out_channels=(8, 8), latent_channels=4,
        norm_num_groups=4, layers_per_block=1, sample_size=16,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1, projection_dim=16,
    ))
    pipe = StableDiffusionInstructPix2PixPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=EulerAncestralDiscreteScheduler(),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(folder / "pipeline")
    return folder / "pipeline"


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory) -> Path:
    return build_tiny_pipeline(tmp_path_factory.mktemp("ip2p"))


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    return load_task(build_demo_task(tmp_path_factory.mktemp("task") / "demo", train_per_class=2, test_per_class=1, image_size=32))


def _meta(task):
    return submission_meta(team="tester", method="ip2p", track="generated",
                           generator={"name": "instructpix2pix", "version": "tiny", "link": "local"},
                           task={"name": task.name, "revision": task.revision})


def _pixels(folder: Path) -> dict[str, np.ndarray]:
    return {e.file_name: np.asarray(Image.open(e.path).convert("RGB"), dtype=np.int16) for e in load_submission(folder).entries}


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """Progress stores go to this test's folder, never to the user's cache."""
    monkeypatch.setenv("SYNTHBENCH_CACHE", str(tmp_path / "cache"))


def test_pipeline_edits_every_input_deterministically_and_resumes(pipeline_dir, task, tmp_path):
    from benchmark.generators.instructpix2pix import generate_instructpix2pix, load_instructpix2pix

    pipe = load_instructpix2pix(str(pipeline_dir), device="cpu")
    assert pipe.unet.config.in_channels == 8 and pipe.device.type == "cpu"
    inputs = task_generation_inputs(task)
    settings = dict(multiplier=2, seed=3, num_inference_steps=2, resolution=32, progress=False)

    first = tmp_path / "a" / "tester__ip2p"
    counts = generate_instructpix2pix(inputs, first, _meta(task), pipe=pipe, batch_size=5, **settings)
    assert (counts["total"], counts["already_done"], counts["written"], counts["refused"]) == (24, 0, 24, 0)
    assert counts["complete"] and not Path(counts["store"]).exists()  # moved into place
    sub = load_submission(first)
    assert {e.source_id for e in sub.entries} == {i.image_id for i in inputs}
    assert all(Image.open(e.path).size == (32, 32) for e in sub.entries)
    by_id = {i.image_id: i for i in inputs}
    assert all(e.label == {by_id[e.source_id].class_name: 1.0} for e in sub.entries)

    # A finished submission is not generated again over (--overwrite replaces it).
    from benchmark.generators.common import GeneratorError

    with pytest.raises(GeneratorError, match="already exists"):
        generate_instructpix2pix(inputs, first, _meta(task), pipe=pipe, batch_size=5, **settings)

    # Same seed, same batching: identical images; other batching: the same images up to float noise
    # (each output has its own seeded generator); another seed: different images.
    second = tmp_path / "b" / "tester__ip2p"
    generate_instructpix2pix(inputs, second, _meta(task), pipe=pipe, batch_size=5, **settings)
    assert {k: v.tobytes() for k, v in _pixels(first).items()} == {k: v.tobytes() for k, v in _pixels(second).items()}
    third = tmp_path / "c" / "tester__ip2p"
    generate_instructpix2pix(inputs, third, _meta(task), pipe=pipe, batch_size=3, **settings)
    a, c = _pixels(first), _pixels(third)
    assert max(int(np.abs(a[k] - c[k]).max()) for k in a) <= 2
    fourth = tmp_path / "d" / "tester__ip2p"
    generate_instructpix2pix(inputs, fourth, _meta(task), pipe=pipe, batch_size=5, **{**settings, "seed": 4})
    d = _pixels(fourth)
    assert sum(int(np.abs(a[k] - d[k]).max()) > 2 for k in a) > len(a) // 2


def test_cli_runs_a_local_pipeline(pipeline_dir, task, tmp_path, capsys):
    out = tmp_path / "tester__ip2p"
    code = main(["generate", "instructpix2pix", "--task", str(task.path), "--out", str(out), "--model", str(pipeline_dir),
                 "--device", "cpu", "--multiplier", "1", "--steps", "2", "--resolution", "32", "--batch-size", "4",
                 "--contact", "t@example.org", "--licence", "CC0-1.0", "--no-progress"])
    assert code == 0
    assert "12 image(s) written" in capsys.readouterr().out
    sub = load_submission(out)
    assert sub.track == "generated" and sub.meta["generator"]["link"] == str(pipeline_dir)
    assert len(sub.entries) == 12


def test_missing_pipeline_is_a_clear_error(tmp_path, monkeypatch):
    from benchmark.generators.common import GeneratorError
    from benchmark.generators.instructpix2pix import load_instructpix2pix

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(GeneratorError, match="Offline, pass a local pipeline folder"):
        load_instructpix2pix("timbrooks/instruct-pix2pix", device="cpu", local_files_only=True)
