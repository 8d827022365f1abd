"""`synthbench task build` argument parsing: the flags the three builders share and their defaults."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from benchmark.tasks import cli


@pytest.fixture(scope="module")
def parser():
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    return parser


BUILDERS = {
    # builder: (its required arguments, default --test-per-class, whether it takes --resize)
    "xbd": (["--xbd-root", "r"], 100, True),
    "imagefolder": (["r"], None, True),
    "demo": ([], 50, False),
}


@pytest.mark.parametrize("builder", sorted(BUILDERS))
def test_every_builder_takes_the_common_flags(parser, builder):
    required, test_default, has_resize = BUILDERS[builder]
    base = ["task", "build", builder, *required, "--out", "o"]
    args = parser.parse_args(base)
    assert (args.out, args.seed, args.train_per_class, args.test_per_class, args.overwrite) == (
        Path("o"), 0, 100, test_default, False,
    )
    assert hasattr(args, "resize") == has_resize

    assert (args.no_progress, args.cache_dir, args.device) == (False, None, "auto")
    assert cli._common_build_kwargs(args)["progress"] is True

    args = parser.parse_args(base + ["--seed", "3", "--train-per-class", "7", "--test-per-class", "2", "--overwrite",
                                     "--no-progress", "--cache-dir", "c", "--device", "cpu"])
    assert (args.seed, args.train_per_class, args.test_per_class, args.overwrite) == (3, 7, 2, True)
    assert (args.no_progress, args.cache_dir, args.device) == (True, Path("c"), "cpu")
    assert cli._common_build_kwargs(args)["progress"] is False
    assert args.func.__name__ == f"_build_{builder}"


def test_verify_takes_the_detector_flags(parser):
    args = parser.parse_args(["task", "verify", "t"])
    assert (args.no_near_duplicates, args.no_progress, args.cache_dir, args.device) == (False, False, None, "auto")
    args = parser.parse_args(["task", "verify", "t", "--no-near-duplicates", "--no-progress", "--cache-dir", "c"])
    assert (args.no_near_duplicates, args.no_progress, args.cache_dir) == (True, True, Path("c"))


@pytest.mark.parametrize("builder", sorted(BUILDERS))
def test_builders_reject_bad_common_flags(parser, builder, capsys):
    required = BUILDERS[builder][0]
    with pytest.raises(SystemExit):
        parser.parse_args(["task", "build", builder, *required])  # --out is required
    assert "--out" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["task", "build", builder, *required, "--out", "o", "--train-per-class", "0"])
    assert "must be at least 1, got 0" in capsys.readouterr().err


@pytest.mark.parametrize("builder", sorted(BUILDERS))
def test_common_flags_reach_the_builder_as_its_keywords(parser, builder):
    import inspect

    from benchmark.tasks import demo, imagefolder, xbd

    function = {"xbd": xbd.build_xbd_task, "imagefolder": imagefolder.build_imagefolder_task, "demo": demo.build_demo_task}[builder]
    required, _, has_resize = BUILDERS[builder]
    extra = ["--resize", "64"] if has_resize else []
    args = parser.parse_args(["task", "build", builder, *required, "--out", "o", "--seed", "5", *extra])
    kwargs = cli._common_build_kwargs(args)
    assert set(kwargs) <= set(inspect.signature(function).parameters)
    assert kwargs["seed"] == 5 and kwargs.get("resize") == (64 if has_resize else None)
