"""Speed of the leaderboard: validating a results tree, aggregating it (bootstrap CIs), building the site.

A board of the size the official run produces per protocol: 6 submissions (2 generators + 4
baselines' worth), 3 backbones, 5 seeds, every setting, a 600-image test split (100 per class).

Run: .venv/bin/python -m pytest benchmarks/test_leaderboard_speed.py --benchmark-only -p no:cacheprovider
"""

from __future__ import annotations

import itertools

import pytest

from leaderboard.aggregate import build_leaderboard
from leaderboard.site import build_site
from tests.boards import EXAMPLE_PLANS, Plan, make_example_tree
from leaderboard.tree import validate_tree

PLANS = EXAMPLE_PLANS + (
    Plan("baseline__mixup", "synthbench", mixed_change=0.02, synthetic_accuracy=0.5, baseline="mixup"),
    Plan("baseline__cutmix", "synthbench", mixed_change=-0.01, synthetic_accuracy=0.5, baseline="cutmix"),
)


@pytest.fixture(scope="module")
def tree_dir(tmp_path_factory):
    return make_example_tree(
        tmp_path_factory.mktemp("bench") / "submissions",
        PLANS,
        backbones=("bb-a", "bb-b", "bb-c"),
        seeds=(0, 1, 2, 3, 4),
        per_class=100,
    )


def test_validate_tree(benchmark, tree_dir):
    """Read + schema + recompute every run's metrics from its predictions (270 runs per backbone)."""
    tree = benchmark.pedantic(validate_tree, args=(tree_dir,), rounds=3, iterations=1)
    assert tree.problems == []


def test_aggregate_all_views(benchmark, tree_dir):
    """Every view's pooled CIs: 2 boards x (suite + 3 backbones), per-setting profiles included."""
    tree = validate_tree(tree_dir)
    board = benchmark.pedantic(build_leaderboard, args=(tree,), rounds=3, iterations=1)
    assert board.headline("augment").entries[0].name == "team-a__editor"


def test_build_site(benchmark, tree_dir, tmp_path):
    """The whole build: validation, aggregation, all plots (SVG + PNG), pages, JSON, CSV."""
    counter = itertools.count()
    benchmark.pedantic(lambda: build_site(tree_dir, tmp_path / f"site{next(counter)}"), rounds=2, iterations=1)
