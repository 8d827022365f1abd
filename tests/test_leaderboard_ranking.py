"""Ranking, ties, pooling and pairing of the leaderboard, on constructed records with known answers."""

from __future__ import annotations

import itertools
import shutil

import numpy as np
import pytest

from benchmark.metrics import bootstrap_ci
from leaderboard.aggregate import ALL_BACKBONES, HELPS, HURTS, NO_EFFECT, REFERENCE, build_leaderboard
from leaderboard.ranking import rank_intervals, rank_label, ranking_order
from tests.boards import (
    copy_tree,
    EXAMPLE_PLANS,
    Plan,
    balanced_labels,
    make_example_tree,
    make_record,
    predictions_with_accuracy,
    shift_accuracy,
    write_submission,
)
from leaderboard.tree import validate_tree

# ------------------------------------------------------------------------------------------------
# The rule itself
# ------------------------------------------------------------------------------------------------


def test_separated_entries_have_one_rank_each_and_close_ones_an_interval():
    rng = np.random.default_rng(0)
    far = np.stack([rng.normal(0.8, 0.01, 500), rng.normal(0.5, 0.01, 500), rng.normal(0.2, 0.01, 500)], axis=1)
    assert rank_intervals([0.8, 0.5, 0.2], far) == [(1, 1, 1), (2, 2, 2), (3, 3, 3)]
    close = np.stack([rng.normal(0.51, 0.05, 500), rng.normal(0.50, 0.05, 500), rng.normal(0.2, 0.01, 500)], axis=1)
    assert rank_intervals([0.51, 0.50, 0.2], close) == [(1, 1, 2), (2, 1, 2), (3, 3, 3)]
    assert [rank_label(*r) for r in rank_intervals([0.51, 0.50, 0.2], close)] == ["1 (1\u20132)", "2 (1\u20132)", "3"]


def test_paired_draws_separate_entries_whose_own_intervals_overlap():
    """B is A plus a small, always-positive paired gain: their marginal spreads overlap completely,
    but B ranks ahead of A in every draw, so each holds one rank."""
    rng = np.random.default_rng(1)
    a = rng.normal(0.5, 0.05, 1000)
    b = a + 0.01
    assert rank_intervals([b.mean(), a.mean()], np.stack([b, a], axis=1)) == [(1, 1, 1), (2, 2, 2)]


def test_ranks_do_not_depend_on_listing_order_and_equal_entries_share_them():
    rng = np.random.default_rng(2)
    draws = rng.normal([0.6, 0.55, 0.55, 0.3], 0.03, size=(400, 4))
    draws[:, 2] = draws[:, 1]  # the same predictions: identical draws
    points = [0.6, 0.55, 0.55, 0.3]
    expected = rank_intervals(points, draws)
    assert expected[1] == expected[2]
    for permutation in itertools.permutations(range(4)):
        got = rank_intervals([points[i] for i in permutation], draws[:, list(permutation)])
        assert got == [expected[i] for i in permutation]


def test_the_interval_always_holds_the_point_rank_and_bad_shapes_are_refused():
    draws = np.array([[0.1, 0.9]] * 100)  # the draws disagree with the points entirely
    assert rank_intervals([0.9, 0.1], draws) == [(1, 1, 2), (2, 1, 2)]
    with pytest.raises(ValueError, match="draws must be"):
        rank_intervals([0.5, 0.4], np.zeros((10, 3)))


def test_display_order_is_rank_then_point_then_name():
    assert ranking_order([0.5, 0.7, 0.7, 0.2], [2, 1, 1, 4], ["b", "z", "a", "c"]) == [2, 1, 0, 3]


# ------------------------------------------------------------------------------------------------
# Boards on constructed records
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def example_tree(tmp_path_factory):
    return make_example_tree(tmp_path_factory.mktemp("example") / "submissions")


@pytest.fixture()
def tree_copy(example_tree, tmp_path):
    target = tmp_path / "submissions"
    copy_tree(example_tree, target)
    return target


def by_name_rank(view, name):
    return next(entry.rank for entry in view.entries if entry.name == name)


def _rows(view):
    return [(entry.name, entry.rank_label, entry.verdict) for entry in view.entries]


def test_augment_board_ranks_by_paired_delta_and_real_only_is_the_zero_line(example_tree):
    board = build_leaderboard(validate_tree(example_tree))
    augment = board.headline("augment")
    assert (augment.protocol, augment.backbone) == ("linear-probe", ALL_BACKBONES)
    assert _rows(augment) == [
        ("team-a__editor", "1", HELPS),
        ("baseline__duplicate", "2", HELPS),
        # classic's mixed runs are the real runs themselves: Delta exactly 0, beside the real-only zero line,
        # which is listed where its value lies and is not ranked.
        ("baseline__classic", "3", NO_EFFECT),
        ("real-only", "reference", REFERENCE),
        ("team-b__noisy", "4", HURTS),
    ]
    assert by_name_rank(augment, "real-only") is None
    by_name = {entry.name: entry for entry in augment.entries}
    # Pairing: mixed@k = the real predictions with exactly 15% of the test images fixed / broken.
    assert by_name["team-a__editor"].delta_accuracy.point == pytest.approx(0.15, abs=1e-12)
    assert by_name["team-b__noisy"].delta_accuracy.point == pytest.approx(-0.15, abs=1e-12)
    assert by_name["baseline__classic"].delta_macro_f1 == by_name["real-only"].delta_macro_f1
    assert by_name["real-only"].delta_macro_f1.point == 0.0
    assert by_name["baseline__duplicate"].baseline == "duplicate"
    assert not hasattr(by_name["team-a__editor"], "best_setting")  # nothing is chosen on the test set
    assert all(entry.ranked for entry in augment.entries)
    assert [e.rank_interval for e in augment.entries if not e.is_reference] == [(1, 1), (2, 2), (3, 3), (4, 4)]
    # The paired comparisons listed beside the rank: beating real-only (or losing to it) is
    # exactly the verdict.
    for entry in augment.entries:
        assert ("real-only" in entry.beats) == (entry.verdict == HELPS), entry.name
        assert ("real-only" in entry.beaten_by) == (entry.verdict == HURTS), entry.name


def test_replace_board_ranks_synthetic_only_macro_f1(example_tree):
    replace = build_leaderboard(validate_tree(example_tree)).headline("replace")
    assert [(name, rank) for name, rank, _ in _rows(replace)] == [
        ("real-only", "reference"),  # the real-only level: listed where its macro-F1 lies, not ranked
        ("baseline__duplicate", "1"),
        ("team-a__editor", "2"),
        ("baseline__classic", "3"),
        ("team-b__noisy", "4"),
    ]
    by_name = {entry.name: entry for entry in replace.entries}
    # Their own intervals overlap, but the paired draws separate them: duplicate (60%) ranks ahead of
    # team-a (55%) in every draw, and the paired comparison listed beside the rank says the same;
    # real-only (60%, only two distinct runs, so a wider seed resample) does not beat team-a.
    assert by_name["team-a__editor"].beaten_by == ["baseline__duplicate"]
    assert by_name["real-only"].beaten_by == by_name["baseline__duplicate"].beaten_by == []
    entry = next(e for e in replace.entries if e.name == "team-b__noisy")
    assert list(entry.per_setting) == ["synthetic@1", "synthetic@2", "synthetic@3", "synthetic@4"]
    assert entry.macro_f1.point == pytest.approx(np.mean([s.macro_f1.point for s in entry.per_setting.values()]))
    assert entry.verdict == HURTS  # 30% accuracy against 60% real-only


def test_pooled_estimate_is_bootstrap_ci_over_every_ratio_and_seed(example_tree):
    """The board's number is one two-level bootstrap over all runs of the board (one seed draw for
    every ratio), paired run by run with real: the same numbers as benchmark.metrics, bit for bit."""
    tree = validate_tree(example_tree)
    record = tree.submission("team-a__editor").records[("efficientnet-lite0", "linear-probe")]
    preds = [record.predictions(f"mixed@{k}", seed) for k in (1, 2, 3, 4) for seed in (0, 1)]
    real = [record.predictions("real", seed) for k in (1, 2, 3, 4) for seed in (0, 1)]
    seeds = [seed for k in (1, 2, 3, 4) for seed in (0, 1)]
    expected = bootstrap_ci(tree.test_labels, preds, len(tree.classes), metric="macro_f1", baseline_preds=real,
                            seeds=seeds)
    entry = next(e for e in build_leaderboard(tree).headline("augment").entries if e.name == "team-a__editor")
    assert (entry.delta_macro_f1.point, entry.delta_macro_f1.lo, entry.delta_macro_f1.hi) == expected
    image_only = bootstrap_ci(tree.test_labels, preds, len(tree.classes), metric="macro_f1", baseline_preds=real)
    assert image_only[1:] != expected[1:]


def test_an_entry_missing_a_ratio_is_shown_but_not_ranked(tree_copy):
    plan = Plan("team-c__small", "Team C", mixed_change=0.3, synthetic_accuracy=0.9, ratios=(1, 2))
    make_example_tree(tree_copy, (plan,), seed=0)
    board = build_leaderboard(validate_tree(tree_copy))
    augment = board.headline("augment")
    last = augment.entries[-1]
    assert (last.name, last.rank, last.rank_label) == ("team-c__small", None, "—")
    assert last.missing == ["mixed@3", "mixed@4"]
    assert last.delta_accuracy.point == pytest.approx(0.3, abs=1e-12)  # the best Delta, yet unranked
    assert [e.rank_label for e in augment.entries[:-1]] == ["1", "2", "3", "reference", "4"]


def test_an_entry_whose_ratios_have_unequal_seeds_is_shown_but_not_ranked(tree_copy):
    """Pooling runs would weight mixed@3 (one seed) half as much as the other ratios (two seeds)."""
    import json

    path = tree_copy / "team-a__editor" / "results" / "efficientnet-lite0__linear-probe.json"
    record = json.loads(path.read_text())
    labels = np.asarray(record["test"]["labels"])
    runs = {(run["setting"], run["seed"]): np.asarray(run["predictions"]) for run in record["runs"]}
    del runs[("mixed@3", 1)]  # e.g. an interrupted grid
    path.write_text(json.dumps(make_record(submission_id="team-a__editor", labels=labels, runs=runs,
                                            content_hash=record["submission"]["content_hash"])))
    board = build_leaderboard(validate_tree(tree_copy))
    entry = next(e for e in board.headline("augment").entries if e.name == "team-a__editor")
    assert (entry.rank, entry.rank_label, entry.missing) == (None, "—", ["mixed@3 seed 1"])
    assert [e.rank_label for e in board.headline("augment").entries[:-1]] == ["1", "2", "reference", "3"]
    # Its synthetic runs are complete: still ranked on Replace.
    assert next(e for e in board.headline("replace").entries if e.name == "team-a__editor").ranked


def test_suite_is_set_by_the_baselines_and_a_partial_entry_is_unranked_in_it(tmp_path):
    root = tmp_path / "submissions"
    backbones = ("bb-one", "bb-two")
    plans = tuple(p for p in EXAMPLE_PLANS if p.submission_id != "team-b__noisy")
    make_example_tree(root, plans, backbones=backbones, seeds=(0,))
    # A participant scored on one backbone only: ranked there, incomplete in the suite view.
    partial = Plan("team-d__one", "Team D", mixed_change=0.05, synthetic_accuracy=0.5)
    make_example_tree(root, (partial,), backbones=("bb-one",), seeds=(0,))
    board = build_leaderboard(validate_tree(root))
    assert board.suites == {"linear-probe": ["bb-one", "bb-two"]}
    headline = board.headline("augment")
    assert headline.backbones == ["bb-one", "bb-two"]
    team_d = next(e for e in headline.entries if e.name == "team-d__one")
    assert team_d.missing == ["backbone bb-two"] and team_d.rank is None
    single = next(v for v in board.views if v.board == "augment" and v.backbone == "bb-one")
    assert next(e for e in single.entries if e.name == "team-d__one").ranked
    assert not any(e.name == "team-d__one" for e in next(v for v in board.views if v.backbone == "bb-two").entries)
    # The suite pools both backbones: 4 ratios x 1 seed x 2 backbones runs.
    team_a = next(e for e in headline.entries if e.name == "team-a__editor")
    assert team_a.n_runs == 8


def test_models_board_ranks_checkpoints_against_the_real_only_row(tree_copy):
    tree = validate_tree(tree_copy)
    labels = tree.test_labels
    rng = np.random.default_rng(5)
    for name, accuracy in (("team-m__good", 0.95), ("team-m__poor", 0.2)):
        preds = labels.copy()
        wrong = rng.choice(labels.size, size=int(round((1 - accuracy) * labels.size)), replace=False)
        preds[wrong] = (labels[wrong] + 1) % 6
        record = make_record(submission_id=name, labels=labels, runs={("checkpoint", 0): preds},
                             backbone="convnext-tiny", protocol="checkpoint", kind="checkpoint")
        write_submission(tree_copy, Plan(name, "Team M", 0.0, 0.0), [record])
    board = build_leaderboard(validate_tree(tree_copy))
    models = board.headline("models")
    assert [(e.name, e.rank_label, e.verdict) for e in models.entries] == [
        ("team-m__good", "1", HELPS),
        ("real-only", "reference", REFERENCE),
        ("team-m__poor", "2", HURTS),
    ]
    good = models.entries[0]
    real_only = models.entries[1]
    assert good.delta_accuracy.point == pytest.approx(good.accuracy.point - real_only.accuracy.point)


def test_differing_real_predictions_between_records_are_noted(tree_copy):
    import json

    path = tree_copy / "team-b__noisy" / "results" / "efficientnet-lite0__linear-probe.json"
    record = json.loads(path.read_text())
    labels = np.asarray(record["test"]["labels"])
    runs = {(run["setting"], run["seed"]): np.asarray(run["predictions"]) for run in record["runs"]}
    runs[("real", 0)] = labels.copy()  # a different (perfect) real run for seed 0
    rewritten = make_record(submission_id="team-b__noisy", labels=labels, runs=runs, track="open",
                            content_hash=record["submission"]["content_hash"])
    path.write_text(json.dumps(rewritten))
    board = build_leaderboard(validate_tree(tree_copy))
    assert any("team-b__noisy" in note and "differ" in note for note in board.notes)


# ------------------------------------------------------------------------------------------------
# Paired comparisons against the old interval-overlap rule
# ------------------------------------------------------------------------------------------------


def _replace_tree(root, entries, labels, real, ratios=(1, 2, 3, 4)):
    """A tree whose entries have real runs `real` {seed: preds} and synthetic@k runs {seed: preds}."""
    for name, by_seed in entries.items():
        runs = {("real", seed): preds for seed, preds in real.items()}
        runs.update({(f"synthetic@{k}", seed): preds for k in ratios for seed, preds in by_seed.items()})
        record = make_record(submission_id=name, labels=labels, runs=runs)
        write_submission(root, Plan(name, "Team", 0.0, 0.0, ratios=ratios), [record])
    return build_leaderboard(validate_tree(root)).headline("replace")


def _overlap(a, b):
    return a.lo <= b.hi and b.lo <= a.hi


def test_overlapping_intervals_are_separated_by_the_paired_rank_draws(tmp_path):
    labels = balanced_labels(30)
    rng = np.random.default_rng(3)
    real = {seed: predictions_with_accuracy(labels, 0.5, rng) for seed in (0, 1)}
    low = {seed: predictions_with_accuracy(labels, 0.6, rng) for seed in (0, 1)}
    high = {seed: shift_accuracy(preds, labels, 0.05, rng) for seed, preds in low.items()}  # 9 more right
    view = _replace_tree(tmp_path / "submissions", {"team__low": low, "team__high": high, "team__same": low},
                         labels, real)
    by_name = {e.name: e for e in view.entries}
    high_e, low_e, same_e = by_name["team__high"], by_name["team__low"], by_name["team__same"]
    assert _overlap(high_e.macro_f1, low_e.macro_f1)  # the old overlap rule would have tied all three
    assert (high_e.rank, high_e.rank_interval) == (1, (1, 1))  # ahead in every paired draw
    assert low_e.rank == same_e.rank == 2 and low_e.rank_interval == same_e.rank_interval == (2, 2)  # equal entries
    assert low_e.beaten_by == same_e.beaten_by == ["team__high"]
    assert {"team__low", "team__same"} <= set(high_e.beats) and high_e.beaten_by == []
    assert "team__same" not in low_e.beats and "team__low" not in same_e.beats


def test_a_wide_interval_gives_a_wide_rank_interval_only_when_the_draws_disagree(tmp_path):
    """W's seeds differ a lot (a wide two-level interval reaching the leader's); the leader is W
    with more images right on every seed, so it is ahead in every paired draw."""
    labels = balanced_labels(30)
    rng = np.random.default_rng(4)
    real = {seed: predictions_with_accuracy(labels, 0.5, rng) for seed in (0, 1, 2)}
    wide = {seed: predictions_with_accuracy(labels, accuracy, rng) for seed, accuracy in ((0, 0.45), (1, 0.6), (2, 0.8))}
    leader = {seed: shift_accuracy(preds, labels, 0.82 - accuracy, rng)
              for (seed, preds), accuracy in zip(wide.items(), (0.45, 0.6, 0.8))}
    view = _replace_tree(tmp_path / "submissions", {"team__wide": wide, "team__leader": leader}, labels, real)
    by_name = {e.name: e for e in view.entries}
    w, top = by_name["team__wide"].macro_f1, by_name["team__leader"].macro_f1
    assert w.hi - w.lo > 2 * (top.hi - top.lo) and w.hi >= top.lo
    assert by_name["team__leader"].rank_label == "1" and by_name["team__wide"].rank_label == "2"
    assert by_name["team__wide"].beaten_by == ["team__leader"]  # the paired comparison agrees
