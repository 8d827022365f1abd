"""The more-real control (benchmark.more_real, protocol.MORE_REAL): more-real@k on a task with a
train_real_extra split, each mixed@k's Δ beside it and their ratio; tasks without the split
unchanged."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from benchmark.grid import run_grid, summary_table, synthetic_draw
from benchmark.metrics import bootstrap_cis, more_real_comparison, share_of_real_gain
from benchmark.more_real import extra_draw
from benchmark.nearcopy import default_embedder
from benchmark.protocol import SETTINGS
from benchmark.results import load_result
from benchmark.tasks import load_task
from benchmark.tasks.imagefolder import build_imagefolder_task
from benchmark.tasks.record import EXTRA_SPLIT

CLASSES = ("Beach", "Forest", "Port")
TRAIN, TEST, IMAGES_PER_CLASS = 5, 10, 30  # 15 extra per class: more-real@1..3 fill, @4 (20) does not
SEEDS = (0, 1)
GRID = dict(seeds=SEEDS, validated=True, image_size=32, progress=False,
            protocol_overrides={"C_grid": [0.1, 10.0], "cv_folds": 3})


def _noisy(labels: np.ndarray, accuracy: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.where(rng.random(labels.size) < accuracy, labels, rng.integers(0, 6, labels.size))


def test_share_is_the_entrys_part_of_the_real_gain_on_the_same_draws():
    labels = np.random.default_rng(0).integers(0, 6, 600)
    real = {s: _noisy(labels, 0.5, s) for s in range(5)}
    more = {s: _noisy(labels, 0.8, 10 + s) for s in range(5)}
    entry = {s: _noisy(labels, 0.65, 20 + s) for s in range(5)}
    result = more_real_comparison(labels, real, entry, more, 6)
    seeds = list(range(5))
    paired = bootstrap_cis(labels, [entry[s] for s in seeds], 6, baseline_preds=[real[s] for s in seeds], seeds=seeds)
    assert result["delta_macro_f1"] == pytest.approx(paired["macro_f1"][0])
    assert result["delta_macro_f1_ci"] == pytest.approx(list(paired["macro_f1"][1:]))
    assert result["share"] == pytest.approx(result["delta_macro_f1"] / result["more_real_delta_macro_f1"])
    assert 0.3 < result["share"] < 0.7  # about half the gain
    lo, hi = result["share_ci"]
    assert lo < result["share"] < hi and result["share_note"] is None
    # only the seeds all three share
    assert more_real_comparison(labels, real, {1: entry[1], 9: labels}, more, 6)["seeds"] == [1]
    assert more_real_comparison(labels, real, {9: labels}, more, 6) is None


def test_no_share_when_more_real_images_give_no_clear_gain():
    draws = np.random.default_rng(0).normal(0.0, 0.02, 1000)
    result = share_of_real_gain((0.05, draws + 0.05), (0.001, draws))
    assert result["share"] is None and "no clear gain" in result["share_note"]
    # a gain clearly above zero whose draws all stay positive: a bounded CI
    clear = share_of_real_gain((0.05, draws + 0.05), (0.1, draws / 4 + 0.1))
    assert clear["share"] == pytest.approx(0.5) and None not in clear["share_ci"]


def test_extra_draws_are_nested_over_k_and_their_own_stream():
    by_class = [np.arange(0, 40), np.arange(40, 70)]
    one, three = extra_draw(by_class, 3, [10, 10]), extra_draw(by_class, 3, [30, 30])
    assert set(one) < set(three) and one.size == 20 and three.size == 60
    assert np.array_equal(one, extra_draw(by_class, 3, [10, 10]))
    assert not np.array_equal(one, extra_draw(by_class, 4, [10, 10]))
    # not the synthetic draws' stream: a synthetic draw of the same shape differs
    assert not np.array_equal(np.sort(synthetic_draw(by_class, 3, [10, 10])), one)


@pytest.fixture(scope="module")
def tasks(aid6_root, tmp_path_factory):
    """An aid6 task with train_real_extra (15 per class) and the same task without it."""
    folder = tmp_path_factory.mktemp("scenes") / "scenes"
    for class_name in CLASSES:
        (folder / class_name).mkdir(parents=True)
        for path in sorted((aid6_root / class_name).glob("*.jpg"))[:IMAGES_PER_CLASS]:
            shutil.copy(path, folder / class_name / path.name)
    embedder = default_embedder(tmp_path_factory.mktemp("dedup-cache"), image_size=96)
    out = tmp_path_factory.mktemp("tasks")
    common = dict(train_per_class=TRAIN, test_per_class=TEST, embedder=embedder, progress=False)
    return (load_task(build_imagefolder_task(folder, out / "with-extra", **common)),
            load_task(build_imagefolder_task(folder, out / "without", extra_per_class=0, **common)))


@pytest.fixture(scope="module")
def submission(tasks, tmp_path_factory):
    from benchmark.generators.baselines import generate_baseline

    return generate_baseline("classic", tasks[0], tmp_path_factory.mktemp("subs") / "baseline__classic", multiplier=4)


@pytest.mark.slow
def test_the_grid_adds_more_real_where_the_extra_split_fills_it(tasks, submission, tmp_path):
    task = tasks[0]
    assert task.class_counts(EXTRA_SPLIT) == {c: IMAGES_PER_CLASS - TRAIN - TEST for c in CLASSES}
    record = run_grid(task, submission, cache_dir=tmp_path / "cache", out_path=tmp_path / "r.json", **GRID)
    assert load_result(tmp_path / "r.json") == record  # a valid record
    ran = {(r["setting"], r["seed"]): r for r in record["runs"]}
    for k in (1, 2, 3):
        for seed in SEEDS:
            run = ran[(f"more-real@{k}", seed)]
            assert run["train_counts"] == {c: {"real": TRAIN * (1 + k), "synthetic": 0} for c in CLASSES}
            assert run["delta_vs_real"] is not None
        block = record["summary"][f"mixed@{k}"]["more_real"]
        assert block["setting"] == f"more-real@{k}" and block["seeds"] == list(SEEDS)
        assert block["delta_macro_f1"] == pytest.approx(record["summary"][f"mixed@{k}"]["delta_macro_f1_mean"])
        assert block["more_real_delta_macro_f1"] == pytest.approx(record["summary"][f"more-real@{k}"]["delta_macro_f1_mean"])
        if block["share"] is not None:
            assert block["share"] == pytest.approx(block["delta_macro_f1"] / block["more_real_delta_macro_f1"])
        else:
            assert block["more_real_delta_macro_f1_ci"][0] <= 0
    table = summary_table(record).set_index("setting")["share of more-real gain [95% CI]"]
    assert table["mixed@1"] != "—" and table["real"] == "—"
    assert ("more-real@4", 0) not in ran
    (skip,) = [s for s in record["skipped"] if s["setting"] == "more-real@4"]
    assert skip["reason"].startswith(f"needs 20 {EXTRA_SPLIT} images per class, has 15 for 'Beach'")


@pytest.mark.slow
def test_a_task_without_the_extra_split_grids_as_before(tasks, submission, tmp_path):
    task = tasks[1]
    record = run_grid(task, submission, cache_dir=tmp_path / "cache", out_path=tmp_path / "r.json", **GRID)
    names = {r["setting"] for r in record["runs"]} | {s["setting"] for s in record["skipped"]}
    assert not any(SETTINGS[n].kind == "more-real" for n in names)
    assert not any("more_real" in entry for entry in record["summary"].values())
    assert not any("more-real" in column for column in summary_table(record).columns)
    again = run_grid(task, submission, cache_dir=tmp_path / "cache", out_path=tmp_path / "r.json", **GRID)
    assert again["provenance"]["runs_reused"] == len(record["runs"]) and again["provenance"]["runs_computed"] == 0
    # asked for by name, the grid says why it cannot run
    named = run_grid(task, submission, settings=["more-real@1"], cache_dir=tmp_path / "cache",
                     out_path=tmp_path / "named.json", **GRID)
    assert named["skipped"] == [{"setting": "more-real@1", "reason": f"the task has no {EXTRA_SPLIT} split (more real images to compare with)"}]
