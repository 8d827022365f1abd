"""What a synthetic set is worth, recomputed from the stored predictions (never read from a record):

- per-class Δ F1 of a setting over real-only with its paired two-level CI;
- effective real images: each synthetic@k read off the record's own real-data learning curve
  (real@n and real), by benchmark.metrics.effective_real_images, the function the harness uses;
- the more-real control: an Augment entry's Δ beside the Δ of `more-real@k` (k x n more *real*
  images per class, same record, same seeds) and their ratio, the share of the real-data gain the
  synthetic set delivers, with a CI from the same paired draws;
- the record's stored diagnostics (they need the features, so they are shown as scored: a board
  holds one scoring version, leaderboard.identity).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from benchmark.metrics import (
    bootstrap_indices,
    effective_real_images,
    percentile_interval,
    seed_weights,
    share_of_real_gain,
    weighted_mean,
)
from benchmark.protocol import DIAGNOSTICS, EFFECTIVE_REAL, SETTINGS

from .aggregate import REAL, Entry, Estimate, RunKey, _Estimator
from .tree import Record

#: The more-real control's settings (k x n extra real images per class), when a task's records have them.
MORE_REAL_PREFIX = "more-real@"
#: The diagnostics a record may store, in the order the pages list them (benchmark.protocol.DIAGNOSTICS).
DIAGNOSTIC_NAMES = tuple(DIAGNOSTICS["descriptions"])


def ratio_of(setting: str) -> int | None:
    """k of a `...@k` setting with a ratio (mixed, synthetic, more-real), else None."""
    return (SETTINGS[setting].ratio or None) if setting in SETTINGS else None


class PerClassF1:
    """Per-class F1 of each run on every bootstrap image draw (the draws every CI of the board uses), memoised."""

    def __init__(self, estimator: _Estimator):
        self.estimator = estimator
        self.labels = estimator.labels
        self.n_classes = estimator.n_classes
        self._values: dict[RunKey, tuple[np.ndarray, np.ndarray]] = {}

    def _run(self, key: RunKey) -> tuple[np.ndarray, np.ndarray]:
        if key not in self._values:
            predictions = self.estimator.predictions(key)
            classes = np.arange(self.n_classes)
            counts, true_draws = self._draws()
            predicted = (predictions[:, None] == classes).astype(np.float32)  # (n, C)
            hit = self._true * predicted
            # one product for both: float32 counts are exact integers (a draw has n images)
            drawn = (counts @ np.concatenate([hit, predicted], axis=1)).astype(np.float64)
            self._values[key] = (_f1(hit.sum(0, dtype=np.float64), predicted.sum(0, dtype=np.float64),
                                     self._true.sum(0, dtype=np.float64)),
                                 _f1(drawn[:, :self.n_classes], drawn[:, self.n_classes:], true_draws))
        return self._values[key]

    def _draws(self) -> tuple[np.ndarray, np.ndarray]:
        """(R, n) how often each test image is in each draw (the board's image draws, bootstrap_indices), and
        (R, C) the true images of each class per draw (the same for every run)."""
        if not hasattr(self, "_draw_counts"):
            n = self.labels.size
            draws = bootstrap_indices(n)
            offsets = (np.arange(draws.shape[0]) * n)[:, None]
            counts = np.bincount((draws + offsets).ravel(), minlength=draws.size).reshape(draws.shape)
            self._true = (self.labels[:, None] == np.arange(self.n_classes)).astype(np.float32)
            self._draw_counts = (counts.astype(np.float32), (counts @ self._true).astype(np.float64))
        return self._draw_counts

    def delta(self, runs: Sequence[RunKey], baseline: Sequence[RunKey], classes: Sequence[str]) -> dict[str, Estimate]:
        """{class: mean F1 over `runs` minus over the paired `baseline`, two-level CI (seeds and images)}."""
        weights = seed_weights([key[4] for key in runs])
        sides = []
        for keys in (runs, baseline):
            points = np.stack([self._run(key)[0] for key in keys], axis=0)  # (V, C)
            draws = np.stack([self._run(key)[1] for key in keys], axis=1)  # (R, V, C)
            sides.append((points, draws))
        out = {}
        for c, name in enumerate(classes):
            point_a, draws_a = weighted_mean(sides[0][0][:, c], sides[0][1][:, :, c], weights)
            point_b, draws_b = weighted_mean(sides[1][0][:, c], sides[1][1][:, :, c], weights)
            out[name] = Estimate(*percentile_interval(point_a - point_b, draws_a - draws_b))
        return out


def _f1(hits: np.ndarray, predicted: np.ndarray, true: np.ndarray) -> np.ndarray:
    denominator = predicted + true
    return np.divide(2 * hits, denominator, out=np.zeros_like(hits), where=denominator > 0)


def effective_real(record: Record, labels: np.ndarray, n_classes: int) -> dict[str, dict[str, Any]]:
    """{synthetic@k: effective real images per class} of one record, recomputed from its predictions.

    The curve is the record's real@n points below its full real split and `real` itself (n: the mean
    of the real run's per-class training counts, else its n_real_per_class), as the harness builds it.
    Empty without `real` and at least one real@n point.
    """
    if not record.seeds(REAL):
        return {}
    first = record.runs[(REAL, record.seeds(REAL)[0])]
    counts = first.get("train_counts") or {}
    full_n = float(np.mean([v["real"] for v in counts.values()])) if counts else float(first["n_real_per_class"])
    points = sorted((SETTINGS[name].real_per_class, name) for name in record.settings
                    if name in SETTINGS and SETTINGS[name].is_curve_point and SETTINGS[name].real_per_class < full_n)
    if not points:
        return {}
    curve_n = [float(n) for n, _ in points] + [full_n]
    curve = [{seed: record.predictions(name, seed) for seed in record.seeds(name)} for _, name in points]
    curve.append({seed: record.predictions(REAL, seed) for seed in record.seeds(REAL)})
    out = {}
    for setting in EFFECTIVE_REAL["settings"]:
        if record.seeds(setting):
            target = {seed: record.predictions(setting, seed) for seed in record.seeds(setting)}
            estimate = effective_real_images(labels, curve_n, curve, target, n_classes)
            if estimate is not None:
                synthetic = [int(record.runs[(setting, s)].get("n_synthetic_per_class") or 0) for s in record.seeds(setting)]
                out[setting] = {**estimate, "synthetic_per_class": max(synthetic)}
    return out


def headline_worth(per_backbone: dict[str, dict[str, dict]], setting: str) -> dict[str, Any] | None:
    """The Replace board's headline of an entry: what its `setting` (the view's largest synthetic@k, the
    same for every row so that rows compare) is worth on each backbone, in words; None without it."""
    rows = [{"backbone": backbone, "setting": setting, **estimates[setting]}
            for backbone, estimates in sorted(per_backbone.items()) if setting in estimates]
    if not rows or len(rows) < len(per_backbone):
        return None
    several = len(rows) > 1
    text = "; ".join((f"{r['backbone']}: " if several else "") + r["text"] for r in rows)
    sentence = "; ".join(
        (f"{r['backbone']}: " if several else "")
        + f"{r['synthetic_per_class']} synthetic per class are worth {r['text']} real" for r in rows)
    return {"text": text, "sentence": sentence, "value": float(np.mean([r["estimate"] for r in rows])), "rows": rows}


def _delta_draws(estimator: _Estimator, runs: Sequence[RunKey], baseline: Sequence[RunKey]) -> tuple[float, np.ndarray]:
    weights = seed_weights([key[4] for key in runs])
    point, draws = weighted_mean(*estimator.values("macro_f1", runs), weights)
    base_point, base_draws = weighted_mean(*estimator.values("macro_f1", baseline), weights)
    return point - base_point, draws - base_draws


def more_real(entry: Entry, estimator: _Estimator) -> list[dict[str, Any]]:
    """Per ratio k the entry's mixed@k Δ macro-F1, the Δ of more-real@k (the same records and seeds)
    and the share entry Δ / more-real Δ, with paired CIs; then "mean over ratios". [] without more-real runs."""
    rows, pooled = [], ([], [], [])
    for setting, stats in entry.per_setting.items():
        k = ratio_of(setting)
        if not stats.baseline or not setting.startswith("mixed@") or k is None:
            continue
        control = [key[:3] + (f"{MORE_REAL_PREFIX}{k}", key[4]) for key in stats.runs]
        if not all(estimator.record(*key[:3]).runs.get(key[3:]) for key in control):
            continue
        rows.append(_share_row(f"1:{k}", estimator, stats.runs, control, stats.baseline))
        for bucket, keys in zip(pooled, (stats.runs, control, stats.baseline)):
            bucket.extend(keys)
    if len(rows) > 1:
        rows.append(_share_row("mean over ratios", estimator, *pooled))
    return rows


def _share_row(label: str, estimator: _Estimator, runs, control, baseline) -> dict[str, Any]:
    """One ratio's (or the pooled) comparison; the share by benchmark.metrics.share_of_real_gain, the
    harness's own rule (defined only when more real images clearly help; an unbounded CI end is None)."""
    entry = _delta_draws(estimator, runs, baseline)
    real = _delta_draws(estimator, control, baseline)
    share = share_of_real_gain(entry, real)
    return {"ratio": label, "delta": Estimate(*percentile_interval(*entry)), "more_real": Estimate(*percentile_interval(*real)),
            "share": {"point": share["share"], "ci": share["share_ci"]} if share["share"] is not None else None,
            "note": share["share_note"]}


def diagnostics_of(record: Record) -> dict[str, Any] | None:
    """A record's stored diagnostics as rows (overall, then per class), or None when it has none."""
    block = record.data.get("diagnostics")
    if not isinstance(block, dict):
        return None
    groups = [("overall", block.get("overall") or {})] + list((block.get("per_class") or {}).items())
    rows = []
    for name in DIAGNOSTIC_NAMES:
        cells = []
        for _, group in groups:
            value = group.get(name) if isinstance(group, dict) else None
            cells.append(Estimate(value["value"], *value["ci"]) if isinstance(value, dict) else None)
        rows.append({"name": name, "description": DIAGNOSTICS["descriptions"][name], "cells": cells})
    return {"groups": [g for g, _ in groups], "rows": rows, "backbone": record.backbone,
            "n": [(group.get("n_real"), group.get("n_synthetic")) for _, group in groups]}


def enrich(board: Any) -> None:
    """Set each training entry's `worth` (Replace: effective real images, recomputed) and `more_real`
    (Augment: the more-real control) on a built leaderboard.Leaderboard."""
    estimator = board.estimator
    if estimator is None:
        return
    memo: dict[str, dict] = {}
    for view in board.views:
        entries = [e for e in view.entries if not e.is_reference and e.submission_id is not None]
        if view.board == "augment":
            for entry in entries:
                entry.more_real = more_real(entry, estimator)
        if view.board != "replace":
            continue
        for entry in entries:
            entry.worth_by_backbone = {}
            for backbone in view.backbones:
                try:
                    record = estimator.record(entry.submission_id, backbone, view.protocol)
                except KeyError:
                    continue
                if str(record.path) not in memo:
                    memo[str(record.path)] = effective_real(record, estimator.labels, estimator.n_classes)
                entry.worth_by_backbone[backbone] = memo[str(record.path)]
        settings = {s for e in entries for estimates in e.worth_by_backbone.values() for s in estimates}
        if settings:
            headline = max(settings, key=lambda s: SETTINGS[s].ratio)
            for entry in entries:
                entry.worth = headline_worth(entry.worth_by_backbone, headline)
