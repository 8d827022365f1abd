"""Point metrics match scikit-learn; the vectorised (two-level) bootstrap matches scikit-learn on every resample."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from benchmark.errors import SynthbenchError
from benchmark.metrics import (
    bootstrap_ci,
    bootstrap_cis,
    bootstrap_distributions,
    bootstrap_indices,
    classification_metrics,
    percentile_interval,
    seed_draw_counts,
    seed_weights,
)
from benchmark.protocol import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED

CLASSES = ["earthquake", "wildfire", "volcano", "storm", "flooding", "tsunami"]
C = len(CLASSES)


def _noisy_predictions(n: int, accuracy: float, seed: int, *, never_predict: int | None = None):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, C, n)
    y_pred = np.where(rng.random(n) < accuracy, y_true, rng.integers(0, C, n))
    if never_predict is not None:  # a class the classifier never outputs (F1 = 0 must count)
        y_pred[y_pred == never_predict] = (never_predict + 1) % C
    return y_true, y_pred


def test_point_metrics_match_sklearn_over_every_class():
    y_true, y_pred = _noisy_predictions(300, 0.6, seed=1, never_predict=5)
    out = classification_metrics(y_true, y_pred, CLASSES)
    labels = list(range(C))
    assert out["accuracy"] == accuracy_score(y_true, y_pred)
    assert out["macro_f1"] == f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
    # the never-predicted class is in the average with F1 = 0, unlike sklearn's default label set
    assert out["per_class"]["tsunami"]["f1"] == 0.0
    assert out["macro_f1"] < f1_score(y_true, y_pred, labels=labels[:5], average="macro", zero_division=0)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    for k, name in enumerate(CLASSES):
        assert out["per_class"][name] == {
            "precision": precision[k], "recall": recall[k], "f1": f1[k], "support": int(support[k])
        }
    matrix = np.array(out["confusion_matrix"])
    assert (matrix == confusion_matrix(y_true, y_pred, labels=labels)).all()
    assert (matrix.sum(axis=1) == np.bincount(y_true, minlength=C)).all()  # rows are the true class


def test_point_metrics_refuse_bad_input():
    with pytest.raises(SynthbenchError, match="class indices"):
        classification_metrics([0, 1, 6], [0, 1, 2], CLASSES)
    with pytest.raises(SynthbenchError, match="3 labels but y_pred has 2"):
        classification_metrics([0, 1, 2], [0, 1], CLASSES)
    with pytest.raises(SynthbenchError, match="empty"):
        classification_metrics([], [], CLASSES)


@pytest.mark.parametrize("never_predict", [None, 5])
def test_bootstrap_draws_equal_sklearn_on_each_resample(never_predict):
    y_true, y_pred = _noisy_predictions(240, 0.55, seed=2, never_predict=never_predict)
    resamples = 300
    draws = bootstrap_distributions(y_true, y_pred, C, resamples=resamples)
    indices = bootstrap_indices(y_true.size, resamples, BOOTSTRAP_SEED)
    expected_f1 = [
        f1_score(y_true[i], y_pred[i], labels=list(range(C)), average="macro", zero_division=0) for i in indices
    ]
    expected_accuracy = [accuracy_score(y_true[i], y_pred[i]) for i in indices]
    np.testing.assert_array_equal(draws["macro_f1"][1], expected_f1)
    np.testing.assert_array_equal(draws["accuracy"][1], expected_accuracy)
    assert draws["macro_f1"][0] == f1_score(y_true, y_pred, labels=list(range(C)), average="macro", zero_division=0)


def test_bootstrap_ci_is_the_percentile_interval_and_reproducible():
    y_true, y_pred = _noisy_predictions(400, 0.7, seed=3)
    point, lo, hi = bootstrap_ci(y_true, y_pred, C, metric="accuracy")
    _, draws = bootstrap_distributions(y_true, y_pred, C, metrics=("accuracy",))["accuracy"]
    assert draws.size == BOOTSTRAP_RESAMPLES
    assert (lo, hi) == tuple(np.percentile(draws, [2.5, 97.5]))
    assert lo < point < hi
    assert bootstrap_ci(y_true, y_pred, C, metric="accuracy") == (point, lo, hi)  # bit for bit
    other_seed = bootstrap_ci(y_true, y_pred, C, metric="accuracy", seed=BOOTSTRAP_SEED + 1)
    assert other_seed[0] == point and other_seed[1:] != (lo, hi)
    narrower = bootstrap_ci(y_true, y_pred, C, metric="accuracy", level=0.8)
    assert lo < narrower[1] < narrower[2] < hi
    # the interval width is about what the binomial standard error predicts
    se = np.sqrt(point * (1 - point) / y_true.size)
    assert 0.8 * 3.92 * se < hi - lo < 1.2 * 3.92 * se


def test_averaging_over_prediction_vectors_resamples_images_once_per_draw():
    y_true, first = _noisy_predictions(200, 0.6, seed=4)
    _, second = _noisy_predictions(200, 0.8, seed=5)
    second = np.where(np.random.default_rng(6).random(200) < 0.8, y_true, second)
    resamples = 200
    both = bootstrap_distributions(y_true, [first, second], C, resamples=resamples)["macro_f1"]
    one = bootstrap_distributions(y_true, first, C, resamples=resamples)["macro_f1"]
    two = bootstrap_distributions(y_true, second, C, resamples=resamples)["macro_f1"]
    assert both[0] == pytest.approx((one[0] + two[0]) / 2, abs=1e-15)
    np.testing.assert_allclose(both[1], (one[1] + two[1]) / 2, rtol=0, atol=1e-15)


def test_paired_difference_uses_the_same_resampled_images():
    y_true, baseline = _noisy_predictions(300, 0.6, seed=7)
    better = baseline.copy()
    wrong = np.flatnonzero(baseline != y_true)[:30]
    better[wrong] = y_true[wrong]  # fixes 30 mistakes, breaks nothing
    resamples = 150
    delta = bootstrap_distributions(y_true, better, C, metrics=("accuracy",), baseline_preds=[baseline],
                                    resamples=resamples)["accuracy"]
    indices = bootstrap_indices(y_true.size, resamples, BOOTSTRAP_SEED)
    expected = [accuracy_score(y_true[i], better[i]) - accuracy_score(y_true[i], baseline[i]) for i in indices]
    np.testing.assert_allclose(delta[1], expected, rtol=0, atol=1e-15)
    assert delta[0] == pytest.approx(30 / 300)
    # paired: the fixed images count in both vectors of every draw, so no draw can be negative
    point, lo, hi = bootstrap_ci(y_true, better, C, metric="accuracy", baseline_preds=[baseline])
    assert 0 < lo <= point <= hi
    assert bootstrap_ci(y_true, baseline, C, baseline_preds=[baseline]) == (0.0, 0.0, 0.0)


def test_bootstrap_cis_agree_with_single_metric_calls():
    y_true, y_pred = _noisy_predictions(150, 0.5, seed=8)
    both = bootstrap_cis(y_true, [y_pred, y_true], C)
    assert both["accuracy"] == bootstrap_ci(y_true, [y_pred, y_true], C, metric="accuracy")
    assert both["macro_f1"] == bootstrap_ci(y_true, [y_pred, y_true], C, metric="macro_f1")


def test_percentile_interval_always_contains_the_point():
    draws = np.linspace(0.5, 0.6, 101)
    assert percentile_interval(0.55, draws) == (0.55, pytest.approx(0.5025), pytest.approx(0.5975))
    point, lo, hi = percentile_interval(0.7, draws)  # a skewed case where the interval misses it
    assert lo == pytest.approx(0.5025) and hi == 0.7
    with pytest.raises(SynthbenchError, match="level"):
        percentile_interval(0.5, draws, level=1.5)


def test_bootstrap_refuses_mismatched_input():
    y_true, y_pred = _noisy_predictions(50, 0.5, seed=9)
    with pytest.raises(SynthbenchError, match="49 predictions for 50"):
        bootstrap_ci(y_true, y_pred[:-1], C)
    with pytest.raises(SynthbenchError, match="one baseline per prediction"):
        bootstrap_ci(y_true, [y_pred, y_pred], C, baseline_preds=[y_pred])
    with pytest.raises(SynthbenchError, match="unknown bootstrap metric"):
        bootstrap_ci(y_true, y_pred, C, metric="auc")
    with pytest.raises(SynthbenchError, match="at least one"):
        bootstrap_ci(y_true, [], C)
    with pytest.raises(SynthbenchError, match=r"\[0, 5\]"):
        bootstrap_ci(y_true, np.full(50, 6), C)


def test_bootstrap_draws_equal_sklearn_when_resamples_lose_classes():
    # 12 test images: most resamples miss a true class; F1 of a class absent from both truth and
    # predictions is 0 (zero_division=0 over every task class), as in scikit-learn.
    y_true = np.repeat(np.arange(C), 2)
    y_pred = np.array([0, 1, 1, 1, 2, 0, 3, 3, 4, 2, 5, 5])
    resamples = 500
    indices = bootstrap_indices(y_true.size, resamples, BOOTSTRAP_SEED)
    assert np.mean([np.unique(y_true[i]).size < C for i in indices]) > 0.5
    draws = bootstrap_distributions(y_true, y_pred, C, metrics=("macro_f1",), resamples=resamples)["macro_f1"][1]
    expected = [f1_score(y_true[i], y_pred[i], labels=list(range(C)), average="macro", zero_division=0) for i in indices]
    np.testing.assert_array_equal(draws, expected)


def test_ci_coverage_on_simulated_test_sets_with_a_known_accuracy():
    """Fresh balanced test sets (50 images per class) from a classifier of known accuracy 0.8, and a
    second one that replaces a random 30% of its predictions by those of a 0.9-accurate classifier
    (true paired difference 0.3 x 0.1 = +0.03): the 95% intervals must hold the true values in about
    95% of 300 replications (binomial s.e. ~1.3 pp; a 90% interval or unpaired draws fail)."""
    rng = np.random.default_rng(11)
    y_true = np.repeat(np.arange(C), 50)

    def classifier(accuracy):
        return np.where(rng.random(y_true.size) < accuracy, y_true, (y_true + rng.integers(1, C, y_true.size)) % C)

    reps, hits, paired_hits = 300, 0, 0
    for _ in range(reps):
        first = classifier(0.8)
        second = np.where(rng.random(y_true.size) < 0.3, classifier(0.9), first)
        _, lo, hi = bootstrap_ci(y_true, first, C, metric="accuracy")
        hits += lo <= 0.8 <= hi
        _, lo, hi = bootstrap_ci(y_true, second, C, metric="accuracy", baseline_preds=[first])
        paired_hits += lo <= 0.03 <= hi
    assert 0.915 <= hits / reps <= 0.985
    assert 0.915 <= paired_hits / reps <= 0.985


# ------------------------------------------------------------------------------------------------
# Two-level bootstrap: seeds and test images
# ------------------------------------------------------------------------------------------------


def test_one_seed_is_bit_identical_to_the_image_bootstrap():
    y_true, first = _noisy_predictions(120, 0.6, seed=21)
    _, second = _noisy_predictions(120, 0.5, seed=22)
    _, base = _noisy_predictions(120, 0.55, seed=23)
    image_only = bootstrap_distributions(y_true, [first, second], C, baseline_preds=[base, base])
    one_seed = bootstrap_distributions(y_true, [first, second], C, baseline_preds=[base, base], seeds=[7, 7])
    for metric in ("accuracy", "macro_f1"):
        assert one_seed[metric][0] == image_only[metric][0]
        np.testing.assert_array_equal(one_seed[metric][1], image_only[metric][1])
    # ... and the image-only draws are still the ones checked against scikit-learn above.
    indices = bootstrap_indices(y_true.size, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED)
    assert image_only["accuracy"][1][3] == pytest.approx(
        (accuracy_score(y_true[indices[3]], first[indices[3]]) + accuracy_score(y_true[indices[3]], second[indices[3]])) / 2
        - accuracy_score(y_true[indices[3]], base[indices[3]]), abs=1e-12)
    assert seed_weights([3, 3, 3]) is None and seed_weights(None) is None


def test_two_level_draws_average_the_drawn_seeds_on_the_drawn_images():
    """Draw r: the seeds are drawn with replacement (their own stream), the images too; the value is
    the mean over the drawn seeds (with repeats) of scikit-learn's metric on the drawn images."""
    y_true, a = _noisy_predictions(60, 0.7, seed=31)
    _, b = _noisy_predictions(60, 0.4, seed=32)
    _, c = _noisy_predictions(60, 0.5, seed=33)
    resamples = 40
    draws = bootstrap_distributions(y_true, [a, b, c], C, metrics=("macro_f1",), seeds=[10, 20, 30],
                                    resamples=resamples)["macro_f1"][1]
    images = bootstrap_indices(y_true.size, resamples, BOOTSTRAP_SEED)
    counts = seed_draw_counts(3, resamples)
    assert (counts.sum(axis=1) == 3).all() and (counts.max(axis=1) > 1).any()
    by_seed = [a, b, c]
    for r in range(resamples):
        f1 = [f1_score(y_true[images[r]], p[images[r]], labels=list(range(C)), average="macro", zero_division=0)
              for p in by_seed]
        assert draws[r] == pytest.approx(np.dot(counts[r], f1) / 3, abs=1e-12)


def test_seed_draws_are_shared_by_pooled_runs_and_paired_with_the_baseline():
    """Two ratios x two seeds: one seed draw for both ratios (matched by seed), and a run and its
    baseline weigh the same; a run identical to its baseline gives exactly 0 in every draw."""
    y_true, r0 = _noisy_predictions(90, 0.6, seed=41)
    _, r1 = _noisy_predictions(90, 0.3, seed=42)
    weights = seed_weights([0, 1, 0, 1], resamples=50)
    assert (weights[:, 0] == weights[:, 2]).all() and (weights[:, 1] == weights[:, 3]).all()
    zero = bootstrap_distributions(y_true, [r0, r1], C, baseline_preds=[r0, r1], seeds=[0, 1])
    assert zero["macro_f1"][0] == 0.0 and not zero["macro_f1"][1].any()


def test_seeds_that_disagree_widen_the_interval():
    """Five seeds whose accuracies range from 0.3 to 0.9: the image-only CI of their mean is narrow;
    the two-level CI includes the seed-to-seed spread and is much wider. Seeds that agree (the same
    predictions) leave it unchanged."""
    rng = np.random.default_rng(5)
    y_true = np.repeat(np.arange(C), 40)
    preds = [np.where(rng.random(y_true.size) < acc, y_true, (y_true + 1) % C) for acc in (0.3, 0.45, 0.6, 0.75, 0.9)]
    seeds = [0, 1, 2, 3, 4]
    _, lo, hi = bootstrap_ci(y_true, preds, C, metric="accuracy")
    _, lo2, hi2 = bootstrap_ci(y_true, preds, C, metric="accuracy", seeds=seeds)
    assert hi2 - lo2 > 3 * (hi - lo)
    same = [preds[2]] * 5
    assert bootstrap_ci(y_true, same, C, seeds=seeds) == bootstrap_ci(y_true, same, C)


def test_seed_labels_must_match_the_predictions():
    y_true, y_pred = _noisy_predictions(50, 0.5, seed=9)
    with pytest.raises(SynthbenchError, match="2 seed labels for 1 prediction vectors"):
        bootstrap_ci(y_true, y_pred, C, seeds=[0, 1])


def test_two_level_coverage_when_seeds_vary():
    """Each seed's classifier has its own accuracy (0.75 + N(0, 0.06)) and fresh test sets are
    drawn; the target is the mean accuracy over seeds and test images (0.75). With 5 seeds the
    image-only interval misses the seed spread (coverage far below 95%); the two-level one covers
    it near the nominal level (a seed bootstrap of 5 is slightly liberal). 150 replications,
    200 resamples each."""
    rng = np.random.default_rng(12)
    y_true = np.repeat(np.arange(C), 50)
    reps, resamples, image_hits, two_hits = 150, 200, 0, 0
    for _ in range(reps):
        accuracies = np.clip(0.75 + rng.normal(0, 0.06, size=5), 0, 1)
        preds = [np.where(rng.random(y_true.size) < acc, y_true, (y_true + 1) % C) for acc in accuracies]
        _, lo, hi = bootstrap_ci(y_true, preds, C, metric="accuracy", resamples=resamples)
        image_hits += lo <= 0.75 <= hi
        _, lo, hi = bootstrap_ci(y_true, preds, C, metric="accuracy", resamples=resamples, seeds=range(5))
        two_hits += lo <= 0.75 <= hi
    assert image_hits / reps < 0.75
    assert two_hits / reps >= 0.82
