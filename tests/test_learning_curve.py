"""The real-data learning curve (real@n) and the effective real images of a synthetic set."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from sklearn.isotonic import isotonic_regression

from benchmark.errors import ResultsError
from benchmark.grid import real_draw, run_grid, synthetic_draw
from benchmark.metrics import _monotone, effective_real_images, read_off_curve
from benchmark.protocol import LEARNING_CURVE, SETTINGS, default_settings
from benchmark.results import validate_result_record
from tests.test_grid import IMAGE_SIZE, RECIPE, REAL_PER_CLASS, SYNTHETIC_PER_INPUT, make_submission

CURVE_N = [10.0, 25.0, 50.0, 100.0]


def _noisy(labels: np.ndarray, accuracy: float, seed: int) -> np.ndarray:
    """Predictions that are right with probability `accuracy`, otherwise a random class."""
    rng = np.random.default_rng(seed)
    predictions = labels.copy()
    wrong = rng.random(labels.size) > accuracy
    predictions[wrong] = rng.integers(0, 6, wrong.sum())
    return predictions


@pytest.fixture(scope="module")
def curve():
    labels = np.random.default_rng(0).integers(0, 6, 600)
    points = [{s: _noisy(labels, a, 10 * s + i) for s in range(5)} for i, a in enumerate([0.4, 0.55, 0.7, 0.85])]
    return labels, points


def test_curve_settings_come_from_the_registry_and_only_the_linear_probe_runs_them_by_default():
    points = [SETTINGS[f"real@{n}"] for n in LEARNING_CURVE["points"]]
    assert all(s.kind == "real" and s.ratio == 0 and s.is_curve_point for s in points)
    assert not SETTINGS["real"].is_curve_point
    grid = {name for name, s in SETTINGS.items() if s.kind != "more-real"}  # more-real@k: added per task
    assert {s.name for s in default_settings("linear-probe")} == grid
    assert {s.name for s in default_settings("fine-tune")} == grid - {s.name for s in points}


def test_run_all_plans_the_curve_for_the_linear_probe_only():
    from benchmark.executors import GridOptions, Unit, expected_runs

    def planned(protocol):
        return {s for s, _ in expected_runs(Unit("task", "/tmp/sub", "efficientnet-lite0", protocol, GridOptions(seeds=(0,))))}

    curve = {f"real@{n}" for n in LEARNING_CURVE["points"]}
    assert curve <= planned("linear-probe") and not curve & planned("fine-tune")
    assert "real" in planned("fine-tune")


def test_real_draws_are_nested_per_seed_and_leave_the_synthetic_draws_alone():
    by_class = [np.arange(c * 100, (c + 1) * 100) for c in range(3)]
    for seed in (0, 1):
        small, large = real_draw(by_class, seed, 10), real_draw(by_class, seed, 25)
        assert small.size == 30 and large.size == 75 and set(small) < set(large)
        assert all(((small >= c * 100) & (small < (c + 1) * 100)).sum() == 10 for c in range(3))
    assert set(real_draw(by_class, 0, 10)) != set(real_draw(by_class, 1, 10))
    # the synthetic draw of a seed is still numpy's default_rng(seed) alone
    expected = np.random.default_rng(4).permutation(by_class[0])[:7]
    assert synthetic_draw(by_class[:1], 4, [7]).tolist() == expected.tolist()


def test_monotone_curve_matches_scikit_learn_isotonic_regression():
    rows = np.random.default_rng(3).random((200, 4))
    reference = np.stack([isotonic_regression(row, increasing=True) for row in rows])
    np.testing.assert_allclose(_monotone(rows), reference, atol=1e-12)


def test_read_off_interpolates_in_log_n_and_censors_outside_the_curve():
    log_n = np.log(CURVE_N)
    rows = np.tile([0.2, 0.4, 0.6, 0.8], (4, 1))
    got = read_off_curve(log_n, rows, np.array([0.1, 0.5, 0.4, 0.9]))
    assert got[0] == -np.inf and got[3] == np.inf
    assert np.exp(got[1]) == pytest.approx(np.sqrt(25 * 50))  # halfway in log n
    assert np.exp(got[2]) == pytest.approx(25)


def test_a_set_as_good_as_a_curve_point_is_worth_that_many_real_images(curve):
    labels, points = curve
    estimate = effective_real_images(labels, CURVE_N, points, points[1], 6)
    assert estimate["estimate"] == pytest.approx(25) and estimate["censored"] is None
    lo, hi = estimate["ci"]
    assert 10 <= lo < 25 < hi <= 100
    assert estimate["seeds"] == [0, 1, 2, 3, 4]
    assert estimate["text"] == f"25 [{lo:.0f}, {hi:.0f}]"


def test_bounds_outside_the_curve_are_reported_as_bounds(curve):
    labels, points = curve
    worse = effective_real_images(labels, CURVE_N, points, {s: _noisy(labels, 0.2, 99 + s) for s in range(5)}, 6)
    assert (worse["estimate"], worse["censored"], worse["text"]) == (10.0, "below", "< 10 [< 10, < 10]")
    better = effective_real_images(labels, CURVE_N, points, {s: labels.copy() for s in range(5)}, 6)
    assert (better["estimate"], better["censored"], better["text"]) == (100.0, "above", "> 100 [> 100, > 100]")


def test_the_record_check_takes_an_interval_wholly_outside_the_curve(curve):
    """A CI wholly below the curve has its upper end censored 'below' (and above: its lower end
    'above'): the result record's check takes both, and refuses ends censored past the estimate."""
    from benchmark.errors import ResultsError
    from benchmark.results import _check_effective_real, _Checker

    labels, points = curve
    worse = effective_real_images(labels, CURVE_N, points, {s: _noisy(labels, 0.2, 99 + s) for s in range(5)}, 6)
    better = effective_real_images(labels, CURVE_N, points, {s: labels.copy() for s in range(5)}, 6)
    assert worse["ci_censored"] == ["below", "below"] and better["ci_censored"] == ["above", "above"]
    for block in (worse, better):
        _check_effective_real(_Checker("record.json"), block, "summary")  # raises on a problem
    with pytest.raises(ResultsError, match="censored"):
        _check_effective_real(_Checker("record.json"), dict(better, ci_censored=["above", "below"]), "summary")


def test_only_the_seeds_every_side_shares_are_used(curve):
    labels, points = curve
    target = {1: points[2][1], 3: points[2][3], 7: labels}
    assert effective_real_images(labels, CURVE_N, points, target, 6)["seeds"] == [1, 3]
    assert effective_real_images(labels, CURVE_N, points, {9: labels}, 6) is None


@pytest.mark.slow
def test_a_rerun_of_a_stored_record_computes_only_the_curve(tmp_path):
    """A record made before the curve existed (no real@n runs) keeps every run; only real@10 is new."""
    from benchmark.tasks import build_demo_task, load_task

    build_demo_task(tmp_path / "demo", train_per_class=REAL_PER_CLASS, test_per_class=8, image_size=32)
    task = load_task(tmp_path / "demo")
    submission = make_submission(tmp_path / "subs", task, method="edit", per_input=SYNTHETIC_PER_INPUT, seed=0)
    common = dict(seeds=(0, 1), cache_dir=tmp_path / "cache", validated=True, image_size=IMAGE_SIZE,
                  progress=False, protocol_overrides=RECIPE)
    before = [s for s in SETTINGS if not SETTINGS[s].is_curve_point]
    stored = run_grid(task, submission, settings=before, **common)
    assert not any(SETTINGS[r["setting"]].is_curve_point for r in stored["runs"])
    assert "effective_real" not in stored["summary"]["synthetic@1"]
    again = run_grid(task, submission, **common)
    assert again["provenance"]["runs_reused"] == len(stored["runs"])
    assert again["provenance"]["runs_computed"] == 2  # real@10, seeds 0 and 1 (real@25/50: too few real)
    old = {(r["setting"], r["seed"]): r["predictions"] for r in stored["runs"]}
    new = {(r["setting"], r["seed"]): r for r in again["runs"]}
    assert all(new[key]["predictions"] == predictions for key, predictions in old.items())
    assert {s["setting"] for s in again["skipped"]} >= {"real@25", "real@50"}
    assert all(new[("real@10", s)]["n_real_per_class"] == 10 for s in (0, 1))
    worth = again["summary"]["synthetic@1"]["effective_real"]
    assert worth["curve_n"] == [10.0, float(REAL_PER_CLASS)] and worth["seeds"] == [0, 1]
    assert 10 <= worth["estimate"] <= REAL_PER_CLASS
    # the validator refuses a tampered estimate
    bad = copy.deepcopy(again)
    bad["summary"]["synthetic@1"]["effective_real"]["estimate"] = 500.0
    with pytest.raises(ResultsError, match="effective_real"):
        validate_result_record(bad)
