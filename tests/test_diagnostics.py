"""Synthetic-set diagnostics: agreement with the reference packages on the same features, and
constructed sets with known answers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from benchmark.diagnostics import (
    PRDCParts,
    diagnose_features,
    frechet_distance,
    kid,
    normalise,
    vendi_from_gram,
)
from benchmark.protocol import DIAGNOSTICS

K = DIAGNOSTICS["params"]["nearest_k"]
CLASSES = ["a", "b", "c"]


def _features(seed: int, n: int, dim: int = 32, shift: float = 0.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim)) + shift


def test_kid_matches_torchmetrics():
    from torchmetrics.image.kid import poly_mmd

    real, synthetic = normalise(_features(0, 80)), normalise(_features(1, 80, shift=0.3))
    reference = poly_mmd(torch.from_numpy(real), torch.from_numpy(synthetic)).item()
    assert kid(real, synthetic) == pytest.approx(reference, abs=1e-4)
    assert abs(kid(real, synthetic) - reference) < 1e-10  # the same formula, float64


def test_kid_of_unequal_sets_is_the_unbiased_estimator():
    real, synthetic = _features(2, 30, 4), _features(3, 50, 4, shift=0.5)

    def k(x, y):
        return (x @ y / 4 + 1.0) ** 3

    within_real = np.mean([k(a, b) for i, a in enumerate(real) for j, b in enumerate(real) if i != j])
    within_synthetic = np.mean([k(a, b) for i, a in enumerate(synthetic) for j, b in enumerate(synthetic) if i != j])
    cross = np.mean([k(a, b) for a in real for b in synthetic])
    assert kid(real, synthetic) == pytest.approx(within_real + within_synthetic - 2 * cross, abs=1e-10)


def test_frechet_distance_matches_torchmetrics_and_needs_enough_images():
    from torchmetrics.image.fid import _compute_fid

    real, synthetic = _features(4, 200, 8), _features(5, 150, 8, shift=0.4)
    expected = _compute_fid(
        torch.from_numpy(real.mean(0)), torch.from_numpy(np.cov(real, rowvar=False)),
        torch.from_numpy(synthetic.mean(0)), torch.from_numpy(np.cov(synthetic, rowvar=False)),
    ).item()
    assert frechet_distance(real, synthetic) == pytest.approx(expected, abs=1e-4)
    assert frechet_distance(_features(6, 20, 32), _features(7, 200, 32)) is None  # 20 images, 32 dimensions


def test_prdc_matches_the_prdc_package(capsys):
    from prdc import compute_prdc

    real, synthetic = normalise(_features(8, 100)), normalise(_features(9, 300, shift=0.5))
    expected = compute_prdc(real, synthetic, nearest_k=K)
    parts = PRDCParts.compute(real, synthetic, K)
    got = {
        "precision": parts.in_real_ball.mean(), "recall": parts.in_synthetic_ball.mean(),
        "density": parts.real_balls_hit.mean(), "coverage": parts.ball_covered.mean(),
    }
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-4), name
    assert 0 < got["precision"] < 1 and 0 < got["coverage"] < 1  # a case that can tell them apart


def test_vendi_matches_vendi_score():
    from vendi_score import vendi

    features = normalise(_features(10, 120))
    assert vendi_from_gram(features @ features.T) == pytest.approx(vendi.score_X(features), abs=1e-4)
    assert vendi_from_gram(features @ features.T) == pytest.approx(vendi.score_K(features @ features.T), abs=1e-4)


def _diagnose(real, real_labels, synthetic, synthetic_labels, sources=None):
    reference = real
    sources = np.full(len(synthetic), -1) if sources is None else sources
    return diagnose_features(CLASSES, real, real_labels, synthetic, synthetic_labels, reference, sources)


@pytest.fixture(scope="module")
def real():
    labels = np.repeat(np.arange(3), 40)
    features = np.concatenate([_features(20 + c, 40, shift=2.0 * c) for c in range(3)])
    return features, labels


def test_exact_copies_are_memorised_with_full_precision_and_recall(real):
    features, labels = real
    copies = np.tile(features, (2, 1))
    result = _diagnose(features, labels, copies, np.tile(labels, 2), np.tile(np.arange(len(features)), 2))
    overall = result["overall"]
    assert overall["memorisation_rate"]["value"] == 1.0 and overall["memorisation_rate"]["ci"] == [1.0, 1.0]
    assert overall["precision"]["value"] >= 0.99 and overall["recall"]["value"] >= 0.99
    assert overall["coverage"]["value"] == 1.0
    assert overall["edit_strength"]["value"] == pytest.approx(0.0, abs=1e-9)
    assert overall["kid"]["value"] < 0.01
    for name in CLASSES:
        assert result["per_class"][name]["memorisation_rate"]["value"] == 1.0


def test_fresh_samples_are_not_memorised_and_edits_have_strength(real):
    features, labels = real
    fresh = np.concatenate([_features(40 + c, 60, shift=2.0 * c) for c in range(3)])
    sources = np.repeat(np.arange(0, 120, 2), 3)  # each source image edited three times
    result = _diagnose(features, labels, fresh, np.repeat(np.arange(3), 60), sources)
    overall = result["overall"]
    assert overall["memorisation_rate"]["value"] < 0.2
    assert overall["edit_strength"]["value"] > 0.3 and overall["edit_strength_n"] == 180
    for name in ("kid", "precision", "recall", "density", "coverage", "vendi_ratio", "memorisation_rate"):
        entry = overall[name]
        assert entry["ci"][0] <= entry["value"] <= entry["ci"][1], name
    assert result["per_class"]["b"]["n_synthetic"] == 60 and result["per_class"]["b"]["n_real"] == 40
    # FD needs more images than dimensions: 120 and 180 in 32 dimensions overall
    assert overall["fd"]["value"] > 0 and overall["fd"]["ci"][0] <= overall["fd"]["value"]
    few = _diagnose(features, labels, fresh[:30], np.zeros(30, dtype=int))
    assert few["overall"]["fd"] is None and few["overall"]["kid"] is not None  # 30 synthetic images
    json.dumps(result)  # JSON-ready


def test_one_image_repeated_has_the_lowest_vendi_diversity(real):
    features, labels = real
    repeated = np.repeat(features[:1] + 0.01, 120, axis=0)
    varied = np.concatenate([_features(60 + c, 40, shift=2.0 * c) for c in range(3)])
    one = _diagnose(features, labels, repeated, np.zeros(120, dtype=int))["overall"]
    many = _diagnose(features, labels, varied, labels)["overall"]
    assert one["vendi_synthetic"] == pytest.approx(1.0, abs=1e-6)  # the minimum of any Vendi score
    assert one["vendi_ratio"]["value"] < many["vendi_ratio"]["value"]
    assert one["recall"]["value"] < many["recall"]["value"]


def test_a_class_without_synthetic_images_has_no_diagnostics(real):
    features, labels = real
    result = _diagnose(features, labels, features[:40] + 0.5, np.zeros(40, dtype=int))
    empty = result["per_class"]["c"]
    assert empty["n_synthetic"] == 0 and empty["kid"] is None and empty["memorisation_rate"] is None


def test_synthbench_diagnose_prints_every_diagnostic_of_a_submission(tmp_path, capsys):
    from benchmark.cli import main
    from benchmark.tasks import build_demo_task, load_task
    from tests.test_grid import IMAGE_SIZE, make_submission

    build_demo_task(tmp_path / "demo", train_per_class=8, test_per_class=4, image_size=32)
    task = load_task(tmp_path / "demo")
    submission = make_submission(tmp_path / "subs", task, method="edit", per_input=2, seed=0)
    out = tmp_path / "diagnostics.json"
    code = main(["diagnose", str(submission), "--task", str(tmp_path / "demo"), "--image-size", str(IMAGE_SIZE),
                 "--device", "cpu", "--cache-dir", str(tmp_path / "cache"), "--no-progress", "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "memorisation_rate" in printed and "vendi_ratio" in printed and "overall" in printed
    assert all(name in printed for name in task.classes)
    result = json.loads(out.read_text())
    assert result["overall"]["n_synthetic"] == 6 * 16 and result["overall"]["n_real"] == 6 * 8
    assert result["features"]["backbone"] == "efficientnet-lite0"
    assert result["overall"]["edit_strength_n"] == 6 * 16


def test_the_diagnostics_page_states_the_constants_the_code_uses():
    from pathlib import Path

    from benchmark.protocol import LEARNING_CURVE, TRAIN_PER_CLASS

    page = (Path(__file__).resolve().parents[1] / "docs" / "DIAGNOSTICS.md").read_text(encoding="utf-8")
    params = DIAGNOSTICS["params"]
    assert f"k = {params['nearest_k']}" in page and f"{params['resamples']} bootstrap draws" in page
    assert f"{params['memorisation_percentile']:g}th percentile" in page
    assert f"Vendi and FD {params['vendi_resamples']} draws" in page
    assert f"`fd_min_samples_per_dim` = {params['fd_min_samples_per_dim']:g}" in page
    assert "n = " + ", ".join(map(str, LEARNING_CURVE["points"])) in page
    assert f"`< {LEARNING_CURVE['points'][0]}`" in page and f"`> {TRAIN_PER_CLASS}`" in page
    assert all(f"`{name}`" in page for name in DIAGNOSTICS["descriptions"])


def test_kid_bootstrap_draws_centre_on_the_estimate():
    """A resample that pairs a duplicated image with itself inflates KID (its K_ii is large), which
    put the estimate at the bottom of its own interval; draws over distinct images centre on it."""
    from benchmark.diagnostics import _counts, _kid_draws

    real, synthetic = _features(1, 100), _features(2, 100)
    rng = np.random.default_rng(0)
    point, draws = _kid_draws(real, synthetic, _counts(rng, 100, 400), _counts(rng, 100, 400))
    below = float((draws < point).mean())
    assert 0.25 < below < 0.75, below
    # and a draw with every image once is the estimate itself
    ones = np.ones((1, 100))
    assert _kid_draws(real, synthetic, ones, ones)[1][0] == pytest.approx(point, abs=1e-12)
