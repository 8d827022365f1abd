"""Classification metrics and bootstrap confidence intervals over seeds and test images.

Point metrics come from scikit-learn (accuracy, macro-F1 with `zero_division=0`, per-class
precision/recall/F1/support, confusion matrix with rows = true class), always over every task
class (`labels=range(C)`), so a class the classifier never predicts counts as F1 = 0 instead of
silently dropping out of the macro average.

Bootstrap CIs (95% percentile intervals, `BOOTSTRAP_RESAMPLES` draws, fixed `BOOTSTRAP_SEED`, all
from `benchmark.protocol`) resample *test images* with replacement. The same draws are used for
every call with the same test size, so every CI of a record (any setting, seed or backbone) is
computed on identical resamples: a difference between two settings is a paired difference.

Two-level bootstrap (`seeds=`): when the prediction vectors come from several training seeds, each
draw also resamples the seeds with replacement (as many as there are) and averages the metric over
the drawn seeds (a vector counts as often as its seed is drawn), so the CI includes retraining
variation, not only the test set's. The seed draws come from their own fixed stream
(`SEED_DRAW_SEED`), independent of the image draws; with one seed there is nothing to draw and the
result is bit-identical to the image-only bootstrap. A paired difference uses the same seed draw
and the same image draw on both sides (vector i and its baseline i share seed i).

Speed: the grid computes a few hundred CIs per record and the leaderboard more, so the resampling
is vectorised. The draws are stored as a count matrix `counts[r, i]` (how often test image i is in
draw r); the confusion matrices of all draws are then one matrix product
`counts @ one_hot(true * C + pred)`, and accuracy / macro-F1 follow per draw with the same
arithmetic as scikit-learn (tests check equality with `f1_score` on each resample).
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from .errors import SynthbenchError
from .protocol import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, CI_LEVEL

#: Metrics `bootstrap_ci` knows, computed from a (draws, C, C) stack of confusion matrices.
BOOTSTRAP_METRICS = ("accuracy", "macro_f1")

#: Seed of the seed draws' own stream (numpy SeedSequence entropy): kept apart from the image draws
#: so that adding seed resampling leaves the image draws, and every one-seed CI, unchanged.
SEED_DRAW_SEED = (BOOTSTRAP_SEED, 1)

#: What the CIs of records and boards are (the record's summary names it, docs/RECORDS.md).
CI_METHOD = "bootstrap over seeds and test images"

#: The version of the scoring (metrics, CIs, effective real images, diagnostics) a record was scored
#: with (its `scoring_version`; bump it when a number for the same predictions changes). 1: CIs over
#: test images only (result schema 1); 2: two-level CIs (CI_METHOD). Boards never mix versions.
SCORING_VERSION = 2

#: Largest number of float32 cells of the (draws x test images) count matrix built at once.
_CHUNK_CELLS = 1 << 24


def _as_labels(values, n_classes: int, what: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise SynthbenchError(f"{what}: expected a 1-D array of class indices, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.equal(np.mod(array, 1), 0)):
            raise SynthbenchError(f"{what}: class indices must be integers")
    array = array.astype(np.int64, copy=False)
    if array.size and (array.min() < 0 or array.max() >= n_classes):
        raise SynthbenchError(
            f"{what}: class indices must lie in [0, {n_classes - 1}], found {array.min()}..{array.max()}"
        )
    return array


def classification_metrics(y_true, y_pred, class_names: Sequence[str]) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix.

    All over every class in `class_names` (index = class id). The confusion matrix has rows = true
    class and columns = predicted class. Values are plain Python numbers (JSON-ready).
    """
    n_classes = len(class_names)
    y_true = _as_labels(y_true, n_classes, "y_true")
    y_pred = _as_labels(y_pred, n_classes, "y_pred")
    if y_true.shape != y_pred.shape:
        raise SynthbenchError(f"y_true has {y_true.size} labels but y_pred has {y_pred.size}")
    if y_true.size == 0:
        raise SynthbenchError("cannot score an empty test set")
    labels = list(range(n_classes))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "per_class": {
            name: {
                "precision": float(precision[k]),
                "recall": float(recall[k]),
                "f1": float(f1[k]),
                "support": int(support[k]),
            }
            for k, name in enumerate(class_names)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


@functools.lru_cache(maxsize=8)
def bootstrap_indices(n: int, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """The (resamples, n) test-image indices of every bootstrap draw (read-only, cached).

    Fixed by (n, resamples, seed) alone, so every CI over a test set of size n uses the same draws.
    """
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, n, size=(resamples, n))
    indices.setflags(write=False)
    return indices


@functools.lru_cache(maxsize=8)
def _bootstrap_counts(n: int, resamples: int, seed: int) -> np.ndarray:
    """counts[r, i] = how many times test image i appears in draw r (float32; exact integers)."""
    indices = bootstrap_indices(n, resamples, seed)
    offsets = (np.arange(resamples, dtype=np.int64) * n)[:, None]
    counts = np.bincount((indices + offsets).ravel(), minlength=resamples * n)
    counts = counts.reshape(resamples, n).astype(np.float32)
    counts.setflags(write=False)
    return counts


@functools.lru_cache(maxsize=32)
def seed_draw_counts(n_seeds: int, resamples: int = BOOTSTRAP_RESAMPLES, stream: int = 0) -> np.ndarray:
    """counts[r, j] = how often the j-th seed is drawn in draw r (n_seeds draws with replacement).

    Fixed by (n_seeds, resamples, stream); `stream` 0 is the one every CI uses, another value gives
    an independent draw (for two sides that share no seeds). float64, read-only, cached.
    """
    if n_seeds < 1:
        raise SynthbenchError("a seed bootstrap needs at least one seed")
    rng = np.random.default_rng(SEED_DRAW_SEED + ((stream,) if stream else ()))
    picks = rng.integers(0, n_seeds, size=(resamples, n_seeds))
    offsets = (np.arange(resamples, dtype=np.int64) * n_seeds)[:, None]
    counts = np.bincount((picks + offsets).ravel(), minlength=resamples * n_seeds).reshape(resamples, n_seeds)
    counts = counts.astype(np.float64)
    counts.setflags(write=False)
    return counts


def seed_weights(seeds: Sequence | None, resamples: int = BOOTSTRAP_RESAMPLES, stream: int = 0) -> np.ndarray | None:
    """(resamples, V) weight of each of V vectors in each draw: how often its seed is drawn.

    `seeds[v]` is vector v's training seed (any sortable labels; the j-th smallest distinct label
    takes column j of `seed_draw_counts`). None when there is at most one distinct seed (or no
    seeds given): nothing to resample, the plain mean applies.
    """
    if seeds is None:
        return None
    labels = list(seeds)
    distinct = sorted(set(labels))
    if len(distinct) <= 1:
        return None
    column = {label: j for j, label in enumerate(distinct)}
    counts = seed_draw_counts(len(distinct), resamples, stream)
    return counts[:, [column[label] for label in labels]]


def weighted_mean(point_values: np.ndarray, draw_values: np.ndarray, weights: np.ndarray | None):
    """(point, draws) of the mean over V vectors: point_values (V,), draw_values (R, V).

    The point is the plain mean; draw r weighs vector v by weights[r, v] (its seed's multiplicity
    in seed draw r), or equally when `weights` is None (the image-only bootstrap, bit for bit).
    """
    point = float(point_values.mean())
    if weights is None:
        return point, draw_values.mean(axis=1)
    return point, (draw_values * weights).sum(axis=1) / weights.sum(axis=1)


def _resampled_confusions(y_true: np.ndarray, preds: list[np.ndarray], n_classes: int, counts: np.ndarray):
    """Confusion matrices (rows true) of every prediction vector, observed and in every draw.

    Returns (observed (V, C, C), resampled (draws, V, C, C)), float64 holding exact integers. All V
    vectors share one matrix product, which is what makes many CIs cheap.
    """
    cells = n_classes * n_classes
    n = y_true.size
    one_hot = np.zeros((n, len(preds) * cells), dtype=np.float32)
    rows = np.arange(n)
    for v, pred in enumerate(preds):
        one_hot[rows, v * cells + y_true * n_classes + pred] = 1.0
    observed = one_hot.sum(axis=0, dtype=np.float64).reshape(len(preds), n_classes, n_classes)
    # float32 sums of small integers are exact (below 2**24), whatever the summation order.
    resampled = np.empty((counts.shape[0], len(preds) * cells), dtype=np.float64)
    step = max(1, _CHUNK_CELLS // max(1, n))
    for start in range(0, counts.shape[0], step):
        resampled[start : start + step] = counts[start : start + step] @ one_hot
    return observed, resampled.reshape(-1, len(preds), n_classes, n_classes)


def _metric_from_confusions(confusions: np.ndarray, metric: str) -> np.ndarray:
    """Metric of each (..., C, C) confusion matrix (rows true), with scikit-learn's arithmetic."""
    true_positives = np.diagonal(confusions, axis1=-2, axis2=-1)
    if metric == "accuracy":
        return true_positives.sum(axis=-1) / confusions.sum(axis=(-2, -1))
    if metric == "macro_f1":
        # sklearn: F1 = 2 tp / (support + predicted), 0 where the denominator is 0, then the mean.
        denominator = confusions.sum(axis=-1) + confusions.sum(axis=-2)
        numerator = 2.0 * true_positives
        f1 = np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)
        return f1.mean(axis=-1)
    raise SynthbenchError(f"unknown bootstrap metric {metric!r}; use one of: {', '.join(BOOTSTRAP_METRICS)}")


def _check_preds(preds, n: int, n_classes: int, what: str) -> list[np.ndarray]:
    if isinstance(preds, np.ndarray) and preds.ndim == 1:
        preds = [preds]
    preds = [_as_labels(p, n_classes, f"{what}[{i}]") for i, p in enumerate(preds)]
    if not preds:
        raise SynthbenchError(f"{what}: at least one prediction vector is needed")
    for i, p in enumerate(preds):
        if p.size != n:
            raise SynthbenchError(f"{what}[{i}] has {p.size} predictions for {n} test labels")
    return preds


def _check_inputs(y_true, preds, baseline_preds, n_classes: int, metrics: Sequence[str]):
    y_true = _as_labels(y_true, n_classes, "y_true")
    n = y_true.size
    if n == 0:
        raise SynthbenchError("cannot bootstrap an empty test set")
    preds = _check_preds(preds, n, n_classes, "preds")
    if baseline_preds is not None:
        baseline_preds = _check_preds(baseline_preds, n, n_classes, "baseline_preds")
        if len(baseline_preds) != len(preds):
            raise SynthbenchError(
                f"paired bootstrap needs one baseline per prediction vector: "
                f"{len(preds)} predictions, {len(baseline_preds)} baselines"
            )
    for metric in metrics:
        if metric not in BOOTSTRAP_METRICS:
            raise SynthbenchError(
                f"unknown bootstrap metric {metric!r}; use one of: {', '.join(BOOTSTRAP_METRICS)}"
            )
    return y_true, preds, baseline_preds


def bootstrap_values(
    y_true,
    preds,
    n_classes: int,
    *,
    metrics: Sequence[str] = BOOTSTRAP_METRICS,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{metric: (observed (V,), per-draw (resamples, V))}: each vector's own metric, image draws only.

    The building block of every CI: the values are exact functions of each vector's resampled
    confusion matrix, so they do not depend on which other vectors share the call.
    """
    y_true, preds, _ = _check_inputs(y_true, preds, None, n_classes, metrics)
    observed, resampled = _resampled_confusions(
        y_true, preds, n_classes, _bootstrap_counts(y_true.size, resamples, seed)
    )
    return {
        metric: (_metric_from_confusions(observed, metric), _metric_from_confusions(resampled, metric))
        for metric in metrics
    }


def _check_seeds(seeds, n_preds: int):
    if seeds is None:
        return None
    seeds = list(seeds)
    if len(seeds) != n_preds:
        raise SynthbenchError(f"seeds: {len(seeds)} seed labels for {n_preds} prediction vectors")
    return seeds


def bootstrap_distributions(
    y_true,
    preds,
    n_classes: int,
    *,
    metrics: Sequence[str] = BOOTSTRAP_METRICS,
    baseline_preds=None,
    seeds=None,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, tuple[float, np.ndarray]]:
    """{metric: (point estimate, per-draw values)}, each averaged over the prediction vectors.

    Each draw resamples test images once and averages the metric over all of `preds` (one 1-D
    array, or a list of them: seeds, or seeds x backbones). With `baseline_preds` (same length and
    order as `preds`: baseline i is paired with prediction i) the value is the mean paired
    difference metric(pred_i) - metric(baseline_i), computed on the same resampled images.
    With `seeds` (one label per prediction vector, the seed it was trained with; baseline i shares
    seed i) each draw also resamples the seeds (two-level bootstrap, see the module docstring).
    """
    y_true, preds, baseline_preds = _check_inputs(y_true, preds, baseline_preds, n_classes, metrics)
    seeds = _check_seeds(seeds, len(preds))
    vectors = preds + (baseline_preds or [])
    values = bootstrap_values(y_true, vectors, n_classes, metrics=metrics, resamples=resamples, seed=seed)
    weights = seed_weights(seeds, resamples)
    n_preds = len(preds)
    out = {}
    for metric in metrics:
        point_values, draw_values = values[metric]  # (V,), (draws, V)
        point, draws = weighted_mean(point_values[:n_preds], draw_values[:, :n_preds], weights)
        if baseline_preds is not None:
            base_point, base_draws = weighted_mean(point_values[n_preds:], draw_values[:, n_preds:], weights)
            point, draws = point - base_point, draws - base_draws
        out[metric] = (point, draws)
    return out


def percentile_interval(point: float, draws: np.ndarray, level: float = CI_LEVEL) -> tuple[float, float, float]:
    """(point, lo, hi): the central `level` of `draws` (numpy's linear percentile).

    A percentile interval can, in rare skewed cases, miss the point estimate; it is then widened to
    include it (conservative), so that lo <= point <= hi always holds in records.
    """
    if not 0.0 < level < 1.0:
        raise SynthbenchError(f"CI level must lie in (0, 1), got {level}")
    tail = 100.0 * (1.0 - level) / 2.0
    lo, hi = np.percentile(draws, [tail, 100.0 - tail])
    return float(point), float(min(lo, point)), float(max(hi, point))


def bootstrap_cis(
    y_true,
    preds,
    n_classes: int,
    *,
    metrics: Sequence[str] = BOOTSTRAP_METRICS,
    baseline_preds=None,
    seeds=None,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = CI_LEVEL,
) -> dict[str, tuple[float, float, float]]:
    """{metric: (point, lo, hi)} for several metrics from one set of resampled confusion matrices."""
    distributions = bootstrap_distributions(
        y_true, preds, n_classes, metrics=metrics, baseline_preds=baseline_preds, seeds=seeds,
        resamples=resamples, seed=seed,
    )
    return {metric: percentile_interval(point, draws, level) for metric, (point, draws) in distributions.items()}


def bootstrap_ci(
    y_true,
    preds,
    n_classes: int,
    *,
    metric: str = "macro_f1",
    baseline_preds=None,
    seeds=None,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = CI_LEVEL,
) -> tuple[float, float, float]:
    """(point, lo, hi): `metric` (or its paired difference to `baseline_preds`) with its 95% CI.

    See `bootstrap_distributions` for what is averaged and paired, and `percentile_interval` for
    the interval.
    """
    return bootstrap_cis(
        y_true,
        preds,
        n_classes,
        metrics=(metric,),
        baseline_preds=baseline_preds,
        seeds=seeds,
        resamples=resamples,
        seed=seed,
        level=level,
    )[metric]


# ----------------------------------------------------------------------------------------------
# Effective real images: a synthetic set's macro-F1 read off the real-data learning curve
# ----------------------------------------------------------------------------------------------


def _monotone(curve: np.ndarray) -> np.ndarray:
    """Each row of (R, P) made non-decreasing by (equal-weight) isotonic regression, vectorised with
    the max-min formula iso[i] = max over j <= i of min over k >= i of mean(curve[j..k]); the tests
    check it against scikit-learn's `isotonic_regression`. A curve has a handful of points."""
    n_points = curve.shape[1]
    sums = np.concatenate([np.zeros((curve.shape[0], 1)), np.cumsum(curve, axis=1)], axis=1)
    out = np.empty_like(curve, dtype=np.float64)
    for i in range(n_points):
        best = np.full(curve.shape[0], -np.inf)
        for j in range(i + 1):
            means = [(sums[:, k + 1] - sums[:, j]) / (k + 1 - j) for k in range(i, n_points)]
            best = np.maximum(best, np.min(means, axis=0))
        out[:, i] = best
    return out


def read_off_curve(log_n: np.ndarray, curve: np.ndarray, target: np.ndarray) -> np.ndarray:
    """log n at which each monotone curve row first reaches its target (linear in log n between
    points); -inf below the first point, +inf above the last. curve (R, P), target (R,)."""
    out = np.empty(target.shape, dtype=np.float64)
    for r, (row, y) in enumerate(zip(curve, target)):
        reached = np.flatnonzero(row >= y)
        if reached.size == 0:
            out[r] = np.inf
        elif reached[0] == 0:
            out[r] = log_n[0] if y >= row[0] else -np.inf
        else:
            i = reached[0]  # row[i-1] < y <= row[i]: a strictly rising segment
            t = (y - row[i - 1]) / (row[i] - row[i - 1])
            out[r] = log_n[i - 1] + t * (log_n[i] - log_n[i - 1])
    return out


def _censor(log_value: float, curve_n: Sequence[float]) -> tuple[float, str | None]:
    if log_value == -np.inf:
        return float(curve_n[0]), "below"
    if log_value == np.inf:
        return float(curve_n[-1]), "above"
    return float(np.exp(log_value)), None


def _reading(value: float, censored: str | None, curve_n: Sequence[float]) -> str:
    if censored == "below":
        return f"< {curve_n[0]:g}"
    if censored == "above":
        return f"> {curve_n[-1]:g}"
    return f"{value:.0f}"


def effective_real_images(
    y_true,
    curve_n: Sequence[float],
    curve_preds: Sequence[dict],
    target_preds: dict,
    n_classes: int,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = CI_LEVEL,
) -> dict | None:
    """The real images per class worth the macro-F1 of `target_preds` (protocol.EFFECTIVE_REAL).

    curve_n: increasing real images per class of the curve points; curve_preds[p] and target_preds:
    {seed: prediction vector}. Only the seeds every side has are used (seed-paired); None when none
    is shared. The point estimate reads the seed-mean target off the seed-mean curve; each two-level
    bootstrap draw (the same seed and image draws as every CI here) does the same on its resample.
    Outside the curve the estimate is censored: the end point's n with "below" or "above".
    """
    seeds = sorted(set(target_preds).intersection(*[set(p) for p in curve_preds]))
    if not seeds or len(curve_n) < 2 or np.any(np.diff(curve_n) <= 0):
        return None
    vectors = [side[s] for side in (*curve_preds, target_preds) for s in seeds]
    point_values, draw_values = bootstrap_values(
        y_true, vectors, n_classes, metrics=("macro_f1",), resamples=resamples, seed=seed
    )["macro_f1"]
    weights = seed_weights(seeds, resamples)
    per_side = [
        weighted_mean(point_values[j : j + len(seeds)], draw_values[:, j : j + len(seeds)], weights)
        for j in range(0, len(vectors), len(seeds))
    ]
    curve_point = _monotone(np.array([[p for p, _ in per_side[:-1]]]))
    curve_draws = _monotone(np.stack([d for _, d in per_side[:-1]], axis=1))
    log_n = np.log(np.asarray(curve_n, dtype=np.float64))
    point_log = read_off_curve(log_n, curve_point, np.array([per_side[-1][0]]))[0]
    draws_log = read_off_curve(log_n, curve_draws, per_side[-1][1])
    tail = (1.0 - level) / 2.0
    # no interpolation between draws: a bound (+-inf) stays a bound
    lo_log = min(float(np.quantile(draws_log, tail, method="lower")), point_log)
    hi_log = max(float(np.quantile(draws_log, 1.0 - tail, method="higher")), point_log)
    estimate, censored = _censor(point_log, curve_n)
    (lo, lo_censored), (hi, hi_censored) = _censor(lo_log, curve_n), _censor(hi_log, curve_n)
    text = (f"{_reading(estimate, censored, curve_n)} [{_reading(lo, lo_censored, curve_n)}, "
            f"{_reading(hi, hi_censored, curve_n)}]")
    return {
        "estimate": estimate,
        "censored": censored,
        "ci": [lo, hi],
        "ci_censored": [lo_censored, hi_censored],
        "text": text,
        "curve_n": [float(n) for n in curve_n],
        "curve_macro_f1": [float(v) for v in curve_point[0]],
        "target_macro_f1": float(per_side[-1][0]),
        "seeds": [int(s) for s in seeds],
        "ci_method": CI_METHOD,
    }


# ----------------------------------------------------------------------------------------------
# The more-real control: an entry's gain beside the gain of as many more real images
# ----------------------------------------------------------------------------------------------


def share_of_real_gain(
    entry_delta: tuple[float, np.ndarray], real_delta: tuple[float, np.ndarray], *, level: float = CI_LEVEL
) -> dict:
    """The share entry Δ / more-real Δ of the gain of more real images (protocol.MORE_REAL).

    Each argument is (point, per-draw values) of a paired difference to `real`, on the same draws.
    Defined only when the more-real gain is clearly positive (its CI's lower end > 0); otherwise
    `share` is None and `share_note` says why. A draw whose more-real gain is not positive has no
    finite ratio: it counts as +-inf (the sign of the entry's gain), so an end of the CI that such
    draws reach is None (unbounded).
    """
    entry_point, entry_draws = entry_delta
    real_point, real_draws = real_delta
    real_lo = percentile_interval(real_point, real_draws, level)[1]
    if not real_lo > 0:
        return {"share": None, "share_ci": None,
                "share_note": "more real images give no clear gain here (their delta's CI reaches 0): no share"}
    positive = real_draws > 0
    ratios = np.where(positive, entry_draws / np.where(positive, real_draws, 1.0), np.copysign(np.inf, entry_draws))
    point = float(entry_point / real_point)
    tail = (1.0 - level) / 2.0
    lo = min(float(np.quantile(ratios, tail, method="lower")), point)
    hi = max(float(np.quantile(ratios, 1.0 - tail, method="higher")), point)
    return {"share": point, "share_ci": [lo if np.isfinite(lo) else None, hi if np.isfinite(hi) else None],
            "share_note": None}


def more_real_comparison(
    y_true,
    real_preds: dict,
    entry_preds: dict,
    more_real_preds: dict,
    n_classes: int,
    *,
    metric: str = "macro_f1",
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = CI_LEVEL,
) -> dict | None:
    """An entry's paired Δ to `real` beside more-real's, and the share (`share_of_real_gain`).

    Each argument is {seed: prediction vector}; only the seeds all three have are used (None when
    none is shared). Both deltas and the share come from the same two-level bootstrap draws (seeds
    and test images, the draws of every CI here).
    """
    seeds = sorted(set(real_preds) & set(entry_preds) & set(more_real_preds))
    if not seeds:
        return None
    vectors = [side[s] for side in (entry_preds, more_real_preds, real_preds) for s in seeds]
    point_values, draw_values = bootstrap_values(
        y_true, vectors, n_classes, metrics=(metric,), resamples=resamples, seed=seed
    )[metric]
    weights = seed_weights(seeds, resamples)
    n = len(seeds)
    entry, more, real = (weighted_mean(point_values[j : j + n], draw_values[:, j : j + n], weights) for j in (0, n, 2 * n))
    entry_delta = (entry[0] - real[0], entry[1] - real[1])
    real_delta = (more[0] - real[0], more[1] - real[1])
    entry_ci = percentile_interval(*entry_delta, level)
    real_ci = percentile_interval(*real_delta, level)
    return {
        f"delta_{metric}": entry_ci[0],
        f"delta_{metric}_ci": [entry_ci[1], entry_ci[2]],
        f"more_real_delta_{metric}": real_ci[0],
        f"more_real_delta_{metric}_ci": [real_ci[1], real_ci[2]],
        **share_of_real_gain(entry_delta, real_delta, level=level),
        "seeds": [int(s) for s in seeds],
        "ci_method": CI_METHOD,
    }
