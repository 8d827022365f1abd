"""The torch linear probe solves scikit-learn's LogisticRegression problem, with soft labels and CV."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.utils.class_weight import compute_class_weight

from benchmark.errors import HarnessError
from benchmark.metrics import bootstrap_ci
from benchmark.protocol import PROTOCOLS
from benchmark.protocols.linear_probe import (
    FeatureBasis,
    LinearProbe,
    _BatchedObjective,
    _Design,
    _lbfgs,
    as_targets,
    class_balanced_weights,
    fit_linear_probe,
    l2_normalise,
    select_C_and_fit,
    select_C_and_fit_many,
    torch_threads,
)

K = 6


def _clusters(counts, dim: int = 48, seed: int = 0, spread: float = 3.0):
    """Overlapping Gaussian classes (anisotropic noise), L2-normalised: accuracy well below 100%."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(K, dim))
    scales = np.exp(rng.normal(0, 0.5, dim))
    labels = np.repeat(np.arange(K), counts)
    features = means[labels] + spread * rng.normal(size=(labels.size, dim)) * scales
    return l2_normalise(features.astype(np.float32)), labels


def _train_test(seed: int = 0, train_counts=(30, 45, 60, 40, 80, 50), test_per_class: int = 100):
    rng_seed = np.random.default_rng(seed).integers(1 << 30)
    x, y = _clusters(np.array(train_counts) + test_per_class, seed=int(rng_seed))
    train, test = [], []
    for c in range(K):
        idx = np.flatnonzero(y == c)
        train += list(idx[: train_counts[c]])
        test += list(idx[train_counts[c]:])
    return x[train], y[train], x[test], y[test]


def _objective(coef, intercept, x, targets, weights, C):
    """The documented objective, in numpy float64: (1/S) sum s_i CE_i + ||W||^2 / (2 C S)."""
    logits = x.astype(np.float64) @ coef.T.astype(np.float64) + intercept
    logits -= logits.max(axis=1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    total = weights.sum()
    data_term = (weights * -(targets * log_probs).sum(axis=1)).sum() / total
    return float(data_term + (coef.astype(np.float64) ** 2).sum() / (2 * C * total))


@pytest.fixture(autouse=True)
def _one_thread():
    with torch_threads(1):  # see linear_probe.CPU_THREADS: the fast setting on a shared machine
        yield


@pytest.mark.parametrize("C", [0.1, 1.0, 10.0])
def test_agrees_with_sklearn_logistic_regression(C):
    x, y, x_test, y_test = _train_test(seed=1)
    weights = class_balanced_weights(as_targets(y, K))
    ours = fit_linear_probe(x, y, C=C, sample_weight=weights, n_classes=K)
    # float64 input: scikit-learn optimises in the input's precision
    reference = LogisticRegression(C=C, class_weight="balanced", tol=1e-10, max_iter=10_000).fit(x.astype(np.float64), y)
    assert ours.converged
    ours_pred, ref_pred = ours.predict(x_test), reference.predict(x_test)
    assert (ours_pred == ref_pred).mean() >= 0.95
    _, lo, hi = bootstrap_ci(y_test, ref_pred, K, metric="accuracy")
    assert lo <= (ours_pred == y_test).mean() <= hi
    assert 0.5 < (ref_pred == y_test).mean() < 0.99  # a non-trivial problem
    # the same objective, minimised to tol: ours is within 1e-5 of scikit-learn's optimum
    targets = as_targets(y, K).astype(np.float64)
    f_ours = _objective(ours.coef, ours.intercept, x, targets, weights, C)
    f_ref = _objective(reference.coef_, reference.intercept_, x, targets, weights, C)
    assert f_ref - 1e-9 <= f_ours <= f_ref + 1e-5


def test_soft_labels_equal_weighted_copies_of_hard_rows():
    x, y, _, _ = _train_test(seed=2, test_per_class=1)
    rng = np.random.default_rng(3)
    other = (y + rng.integers(1, K, y.size)) % K
    mix = rng.uniform(0.55, 1.0, y.size)  # Mixup-style targets: mix on y, 1 - mix on another class
    soft = np.zeros((y.size, K), dtype=np.float32)
    soft[np.arange(y.size), y] = mix
    soft[np.arange(y.size), other] += 1 - mix
    tight = {"C": 1.0, "tol": 1e-8, "max_iter": 2000, "dtype": torch.float64}
    soft_fit = fit_linear_probe(x, soft, **tight)
    # cross-entropy is linear in the target: row i with target t == two hard rows weighted t_y, t_other
    copies = fit_linear_probe(
        np.concatenate([x, x]), np.concatenate([y, other]), n_classes=K, sample_weight=np.concatenate([mix, 1 - mix]),
        **tight,
    )
    assert soft_fit.converged and copies.converged
    np.testing.assert_allclose(soft_fit.coef, copies.coef, atol=1e-5)
    hard_fit = fit_linear_probe(x, y, n_classes=K, **tight)
    assert np.abs(soft_fit.coef - hard_fit.coef).max() > 100 * np.abs(soft_fit.coef - copies.coef).max()


def test_class_balanced_weights_are_sklearns_balanced_weights():
    _, y, _, _ = _train_test(seed=4, test_per_class=1)
    weights = class_balanced_weights(as_targets(y, K))
    expected = compute_class_weight("balanced", classes=np.arange(K), y=y)[y]
    np.testing.assert_allclose(weights, expected)
    assert weights.sum() == pytest.approx(y.size)
    # soft rows count for their arg-max class
    soft = as_targets(y, K) * 0.6 + 0.4 / K
    np.testing.assert_allclose(class_balanced_weights(soft), expected)


def test_batched_problems_are_solved_as_if_alone():
    x, y, _, _ = _train_test(seed=5, test_per_class=1)
    targets = as_targets(y, K)
    weights = class_balanced_weights(targets)
    Cs = [0.05, 1.0, 30.0]
    total = weights.sum()
    objective = _BatchedObjective(
        _Design(x, targets, torch.device("cpu"), torch.float64),
        torch.as_tensor(np.tile(weights / total, (len(Cs), 1))),
        torch.as_tensor([1.0 / (C * total) for C in Cs], dtype=torch.float64),
    )
    x0 = torch.zeros(len(Cs), K, x.shape[1] + 1, dtype=torch.float64)
    batch = _lbfgs(objective, x0, max_iter=500, tol=1e-7)
    assert batch.converged.all()
    assert len(set(batch.n_iter.tolist())) > 1  # the problems finished at different steps
    for b, C in enumerate(Cs):
        alone = fit_linear_probe(
            x, y, n_classes=K, C=C, sample_weight=weights, max_iter=500, tol=1e-7, dtype=torch.float64
        )
        # its own history, steps and stopping test: the same path up to matmul rounding
        np.testing.assert_allclose(batch.x[b, :, :-1].numpy(), alone.coef, atol=1e-4)
        assert abs(int(batch.n_iter[b]) - alone.n_iter) <= 2


def test_warm_start_from_the_solution_stops_at_once():
    x, y, _, _ = _train_test(seed=6, test_per_class=1)
    first = fit_linear_probe(x, y, n_classes=K, C=1.0)
    again = fit_linear_probe(x, y, n_classes=K, C=1.0, warm_start=first)
    assert again.n_iter <= 1
    np.testing.assert_allclose(again.coef, first.coef, atol=1e-5)


def test_cv_selects_the_C_with_the_lowest_heldout_loss_as_sklearn_computes_it():
    x, y, _, _ = _train_test(seed=7, train_counts=(40, 40, 40, 40, 40, 40), test_per_class=1)
    seed = 3
    selection = select_C_and_fit(x, y, n_classes=K, seed=seed)
    exact = select_C_and_fit(x, y, n_classes=K, seed=seed, tol=1e-8, max_iter=5000, dtype=torch.float64)
    grid = PROTOCOLS["linear-probe"]["C_grid"]
    assert selection.C_grid == sorted(grid) and selection.cv_folds == PROTOCOLS["linear-probe"]["cv_folds"]
    expected = []
    for C in sorted(grid):
        losses = []
        folds = StratifiedKFold(selection.cv_folds, shuffle=True, random_state=seed).split(x, y)
        for train_idx, held_idx in folds:
            model = LogisticRegression(C=C, class_weight="balanced", tol=1e-8, max_iter=10_000)
            model.fit(x[train_idx].astype(np.float64), y[train_idx])
            log_probs = model.predict_log_proba(x[held_idx].astype(np.float64))[np.arange(held_idx.size), y[held_idx]]
            held_weights = compute_class_weight("balanced", classes=np.arange(K), y=y[held_idx])[y[held_idx]]
            losses.append(-(held_weights * log_probs).sum() / held_weights.sum())
        expected.append(np.mean(losses))
    np.testing.assert_allclose(exact.cv_loss, expected, rtol=1e-5)  # same folds, weights and score
    np.testing.assert_allclose(selection.cv_loss, expected, rtol=2e-2)  # at the protocol's tol=1e-4
    assert selection.C == exact.C == sorted(grid)[int(np.argmin(expected))]
    assert selection.model.C == selection.C and selection.model.converged
    # deterministic for a seed, and the seed matters (other folds)
    again = select_C_and_fit(x, y, n_classes=K, seed=seed)
    np.testing.assert_array_equal(again.model.coef, selection.model.coef)
    assert again.cv_loss == selection.cv_loss
    assert select_C_and_fit(x, y, n_classes=K, seed=seed + 1).cv_loss != selection.cv_loss


def test_path_and_batched_strategies_reach_the_same_choice():
    x, y, x_test, _ = _train_test(seed=8)
    path = select_C_and_fit(x, y, n_classes=K, seed=0, strategy="path")
    batched = select_C_and_fit(x, y, n_classes=K, seed=0, strategy="batched")
    assert path.C == batched.C
    # both stop at tol=1e-4 from different starting points: CV losses agree to about 1%
    np.testing.assert_allclose(path.cv_loss, batched.cv_loss, rtol=2e-2)
    assert (path.model.predict(x_test) == batched.model.predict(x_test)).mean() >= 0.99
    assert path.cv_iterations < batched.cv_iterations  # warm starts save work on the C path


def test_runner_normalises_features_and_reports_its_choice():
    x, y, x_test, y_test = _train_test(seed=9)
    rng = np.random.default_rng(0)
    row_scale = np.exp(rng.uniform(-2, 2, (x.shape[0], 1))).astype(np.float32)
    probe = LinearProbe()
    predictions, params = probe.fit_predict_features(x, as_targets(y, K), x_test, seed=0)
    scaled, _ = probe.fit_predict_features(x * row_scale, as_targets(y, K), x_test * 0.5, seed=0)
    # the same problem up to float rounding of the normalisation
    assert (predictions == scaled).mean() >= 0.99
    raw = LinearProbe(dict(PROTOCOLS["linear-probe"], normalise_features=False))
    unnormalised, _ = raw.fit_predict_features(x * row_scale, as_targets(y, K), x_test * 0.5, seed=0)
    assert (unnormalised != predictions).mean() > 0.02
    assert params["C"] in PROTOCOLS["linear-probe"]["C_grid"]
    assert len(params["cv_loss"]) == len(PROTOCOLS["linear-probe"]["C_grid"])
    assert (predictions == y_test).mean() > 0.5
    assert probe.solver_params()["strategy"] == "batched"


def _correlated(seed: int = 11):
    """Backbone-like features: L2-normalised, all-positive mean, correlated, decaying spectrum."""
    x, y, x_test, y_test = _train_test(seed=seed)
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(x.shape[1], 96)) * np.exp(-np.arange(96) / 12.0)
    offset = np.abs(rng.normal(size=96)) * 2.0
    to_backbone = lambda v: l2_normalise((v @ mixing + offset).astype(np.float32))  # noqa: E731
    return to_backbone(x), y, to_backbone(x_test), y_test


def test_preconditioning_is_an_exact_change_of_variables():
    x, y, _, _ = _correlated()
    weights = class_balanced_weights(as_targets(y, K))
    tight = {"C": 10.0, "sample_weight": weights, "n_classes": K, "tol": 1e-9, "max_iter": 5000, "dtype": torch.float64}
    plain = fit_linear_probe(x, y, **tight)
    scaled = fit_linear_probe(x, y, precondition=True, **tight)
    targets = as_targets(y, K).astype(np.float64)
    f_plain = _objective(plain.coef, plain.intercept, x, targets, weights, 10.0)
    f_scaled = _objective(scaled.coef, scaled.intercept, x, targets, weights, 10.0)
    assert abs(f_plain - f_scaled) < 1e-9
    np.testing.assert_allclose(scaled.coef, plain.coef, atol=1e-4 * np.abs(plain.coef).max())
    # a warm start given in the caller's variables is the optimum in the scaled ones too
    again = fit_linear_probe(x, y, precondition=True, warm_start=scaled, **tight)
    assert again.n_iter <= 1


def test_preconditioner_of_constant_features_is_the_identity():
    # every row the same: no variance to damp against; the scale must stay finite (ones), not 1 / 0
    x = np.tile(l2_normalise(np.ones((1, 8), np.float32)), (24, 1))
    y = np.repeat(np.arange(3), 8)
    selection = select_C_and_fit(x, y, n_classes=3, seed=0, precondition=True)
    assert np.isfinite(selection.model.coef).all() and np.isfinite(selection.cv_loss).all()
    # nothing tells the classes apart: the balanced probe predicts one class's prior for everything
    assert np.unique(selection.model.predict(x)).size == 1


def test_feature_basis_is_the_same_model_and_speeds_up_the_solver():
    x, y, x_test, _ = _correlated()
    weights = class_balanced_weights(as_targets(y, K))
    tight = {"C": 10.0, "sample_weight": weights, "n_classes": K, "tol": 1e-9, "max_iter": 5000, "dtype": torch.float64}
    basis = FeatureBasis.fit(x)
    rotated = fit_linear_probe(basis.apply(x), y, precondition=True, **tight)
    # back to the original coordinates: w = z R^T, b = b' - w . mean
    coef = rotated.coef @ basis.rotation.T.astype(np.float64)
    intercept = rotated.intercept - coef @ basis.mean.astype(np.float64)
    direct = fit_linear_probe(x, y, **tight)
    targets = as_targets(y, K).astype(np.float64)
    f_rotated = _objective(coef, intercept, x, targets, weights, 10.0)
    f_direct = _objective(direct.coef, direct.intercept, x, targets, weights, 10.0)
    assert abs(f_rotated - f_direct) < 1e-6
    assert (rotated.predict(basis.apply(x_test)) == direct.predict(x_test)).mean() >= 0.99
    # the point of it: the protocol's CV needs several times fewer iterations in the basis
    raw = select_C_and_fit(x, y, n_classes=K, seed=0)
    fast = select_C_and_fit(basis.apply(x), y, n_classes=K, seed=0, precondition=True)
    assert fast.C == raw.C
    assert fast.cv_iterations * 2 < raw.cv_iterations


def test_grid_preparation_uses_the_reference_rows_basis():
    x, y, x_test, y_test = _correlated(seed=12)
    probe = LinearProbe()
    matrix = np.concatenate([x, x_test])
    prepared = probe.prepare(matrix, np.arange(len(x)))
    basis = FeatureBasis.fit(l2_normalise(x))
    np.testing.assert_allclose(prepared, basis.apply(l2_normalise(matrix)), atol=1e-5)
    predictions, params = probe.fit_predict_features(prepared[: len(x)], as_targets(y, K), prepared[len(x):], seed=0, prepared=True)
    reference = LogisticRegression(C=params["C"], class_weight="balanced", tol=1e-8, max_iter=10_000).fit(
        l2_normalise(x).astype(np.float64), y
    )
    assert (predictions == reference.predict(l2_normalise(x_test))).mean() >= 0.97
    with pytest.raises(HarnessError, match="reference rows"):
        FeatureBasis.fit(x[:1])


def test_training_sets_of_one_matrix_solved_together_match_separate_fits():
    x, y, x_test, _ = _correlated(seed=13)
    x, x_test = FeatureBasis.fit(x).apply(x), FeatureBasis.fit(x).apply(x_test)
    rng = np.random.default_rng(0)
    # three overlapping training sets, as the seeds of a grid setting draw them
    members = [np.sort(rng.choice(len(y), size=200, replace=False)) for _ in range(3)]
    together = select_C_and_fit_many(x, y, members, [0, 1, 2], n_classes=K)
    for member, seed, joint in zip(members, [0, 1, 2], together):
        alone = select_C_and_fit(x[member], y[member], n_classes=K, seed=seed, precondition=True)
        assert joint.C == alone.C and joint.cv_folds == alone.cv_folds
        np.testing.assert_allclose(joint.cv_loss, alone.cv_loss, rtol=1e-2)
        assert (joint.model.predict(x_test) == alone.model.predict(x_test)).mean() >= 0.98
    with pytest.raises(HarnessError, match="one seed per training set"):
        select_C_and_fit_many(x, y, members, [0], n_classes=K)
    with pytest.raises(HarnessError, match="distinct"):
        select_C_and_fit_many(x, y, [np.array([0, 0, 1])], [0], n_classes=K)


def test_fewer_folds_for_small_classes_and_clear_errors():
    x, y, _, _ = _train_test(seed=10, train_counts=(3, 8, 8, 8, 8, 8), test_per_class=1)
    assert select_C_and_fit(x, y, n_classes=K, seed=0).cv_folds == 3
    lonely = y.copy()
    lonely[0] = 0
    lonely[lonely == 0] = 1
    lonely[0] = 0  # class 0 has a single image
    with pytest.raises(HarnessError, match="1 training image"):
        select_C_and_fit(x, lonely, n_classes=K, seed=0)
    with pytest.raises(HarnessError, match="NaN"):
        fit_linear_probe(np.full_like(x, np.nan), y, n_classes=K, C=1.0)
    with pytest.raises(HarnessError, match="positive"):
        fit_linear_probe(x, y, n_classes=K, C=0.0)
    with pytest.raises(HarnessError, match="sum to 1"):
        fit_linear_probe(x, np.full((y.size, K), 0.5), C=1.0)
    with pytest.raises(HarnessError, match="feature rows"):
        fit_linear_probe(x[:-1], y, n_classes=K, C=1.0)
    with pytest.raises(HarnessError, match="strategy"):
        select_C_and_fit(x, y, n_classes=K, seed=0, strategy="grid")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_fit_matches_cpu():
    x, y, x_test, _ = _train_test(seed=11)
    cpu = select_C_and_fit(x, y, n_classes=K, seed=0, device="cpu")
    gpu = select_C_and_fit(x, y, n_classes=K, seed=0, device="cuda")
    assert cpu.C == gpu.C
    assert (cpu.model.predict(x_test) == gpu.model.predict(x_test)).mean() >= 0.99


# ----------------------------------------------------------------------------------------------
# CV groups: rows made from the same scene stay in one fold
# ----------------------------------------------------------------------------------------------


def test_cv_folds_keep_each_group_whole_and_unique_groups_change_nothing():
    from benchmark.protocols.linear_probe import _cv_fold_weights

    x, y, _, _ = _train_test(seed=21, train_counts=(20, 20, 20, 20, 20, 20), test_per_class=1)
    targets = as_targets(y, K)
    base = np.arange(len(y))
    # each image plus two near-copies of it: 3 rows per scene
    rows3 = np.concatenate([base, base, base])
    targets3 = targets[rows3]
    scenes = np.array([f"scene-{i}" for i in rows3])
    train, held = _cv_fold_weights(targets3, np.arange(rows3.size), 0, 5, True, scenes)
    assert train.shape == held.shape == (5, rows3.size)
    for f in range(5):
        in_train, in_held = set(scenes[train[f] > 0]), set(scenes[held[f] > 0])
        assert in_held and not in_train & in_held  # no scene on both sides of a fold
        assert (train[f] > 0).sum() + (held[f] > 0).sum() == rows3.size
    # without groups the same rows are split apart (what the groups prevent)
    leaky, leaky_held = _cv_fold_weights(targets3, np.arange(rows3.size), 0, 5, True, None)
    assert any(set(scenes[leaky[f] > 0]) & set(scenes[leaky_held[f] > 0]) for f in range(5))
    # one row per group: exactly StratifiedKFold's folds (real-only runs keep their folds)
    unique = np.array([f"id-{i}" for i in base])
    assert all(np.array_equal(a, b) for a, b in zip(
        _cv_fold_weights(targets, base, 4, 5, True, unique), _cv_fold_weights(targets, base, 4, 5, True, None)
    ))


def test_grouped_cv_does_not_reward_memorising_copies():
    """k copies of every image: ungrouped CV sees each held-out image in training and scores a weak
    penalty as nearly perfect; grouped CV scores it like the single images."""
    x, y, _, _ = _train_test(seed=22, train_counts=(25, 25, 25, 25, 25, 25), test_per_class=1)
    rows = np.tile(np.arange(len(y)), 4)
    scenes = rows.astype(str)
    once = select_C_and_fit(x, y, n_classes=K, seed=0, precondition=True)
    leaky = select_C_and_fit(x[rows], y[rows], n_classes=K, seed=0, precondition=True)
    grouped = select_C_and_fit(x[rows], y[rows], n_classes=K, seed=0, precondition=True, groups=scenes)
    assert leaky.cv_loss[-1] < 0.5 * once.cv_loss[-1]  # the leak: held-out copies memorised
    assert grouped.cv_loss[-1] > 0.7 * once.cv_loss[-1]
    assert grouped.C <= leaky.C
    together = select_C_and_fit_many(x[rows], y[rows], [np.arange(rows.size)], [0], n_classes=K, groups=[scenes])[0]
    assert together.C == grouped.C
    np.testing.assert_allclose(together.cv_loss, grouped.cv_loss, rtol=1e-2)


def test_groups_bound_the_number_of_folds_and_are_checked():
    x, y, _, _ = _train_test(seed=23, train_counts=(12, 12, 12, 12, 12, 12), test_per_class=1)
    scenes = np.array([f"{label}-{i % 3}" for i, label in enumerate(y)])  # 3 scenes per class
    assert select_C_and_fit(x, y, n_classes=K, seed=0, groups=scenes).cv_folds == 3
    one_scene = np.array([str(label) for label in y])
    with pytest.raises(HarnessError, match="group"):
        select_C_and_fit(x, y, n_classes=K, seed=0, groups=one_scene)
    with pytest.raises(HarnessError, match="one entry per training row"):
        select_C_and_fit(x, y, n_classes=K, seed=0, groups=scenes[:-1])
