"""The linear probe (the ranking protocol): multinomial logistic regression on frozen features.

Objective
---------
For features x_i (L2-normalised by the runner), soft targets t_i (rows summing to 1), sample
weights s_i (class-balanced by default) and weights W (D x K) with an unpenalised intercept b, one
fit minimises

    f(W, b) = (1 / S) * sum_i s_i * CE_i  +  ||W||^2 / (2 * C * S),      S = sum_i s_i,
    CE_i    = -sum_k t_ik * log softmax(W^T x_i + b)_k

This is exactly scikit-learn's LogisticRegression (multinomial, lbfgs) objective: scikit-learn
minimises 0.5 * ||W||^2 + C * sum_i s_i * CE_i and, since version 1.2, optimises it divided by
C * S, which is f above. The same C therefore means the same solution; with hard labels and
`class_weight="balanced"` (weights n / (K * n_k), which is what `class_balanced_weights` gives)
the two fits are the same problem (tests check predictions and accuracy against it). The stopping
rule matches too: the largest absolute gradient component of f below `tol` (scikit-learn's gtol,
default 1e-4), or `max_iter` iterations.

Regularisation is chosen per run: C from `PROTOCOLS["linear-probe"]["C_grid"]` by stratified
k-fold cross-validation on the run's own training set (stratified by the arg-max label), scored by
the class-balanced cross-entropy of the held-out fold against its targets (a proper score that
handles soft labels, with no ties between Cs); then one fit on the whole training set at that C.
Rows made from the same scene (a real image, its synthetic derivatives, copies) share a *group*
and stay in one fold: otherwise a held-out image's near-twin sits in the training folds, CV
rewards memorising it, and picks too weak a penalty. Without repeated groups the folds are
StratifiedKFold's; with them, StratifiedGroupKFold's.

Why the grid stops at C = 100: with unit-norm features a strong backbone often prefers the weakest
penalty (every aid6 run with EfficientNet-Lite0 picks 100), but above 100 the objective is so flat
that scikit-learn's stopping rule (max |gradient| <= 1e-4) ends far from the optimum, and what CV
then compares is where the solver stopped, not the penalty. Measured on aid6 (EfficientNet-Lite0,
`run_grid(..., protocol_overrides={"C_grid": [0.01, ..., 10000]})`): the held-out loss at C = 1000
/ 10000 moves by 3 % / 15 % with the preconditioner's damping alone (at C = 100 by 1-3 %: when the
damping rule changed, 50 of aid6's 60 runs changed up to 7 of 600 test predictions, and the summary's
macro-F1 means moved by up to 0.3 points, which is why the preconditioner is part of a record's
identity), and a tolerance tight enough to resolve them costs over 50x the time (tol 1e-6: three runs
still unfinished after 6 minutes, against 5 s at 1e-4). Extending the grid buys
no accuracy there (real-only macro-F1 97.9 either way).

Speed
-----
The grid runs ~45 of these (settings x seeds), each with folds x Cs + 1 fits. The solver is an
L-BFGS written for a *batch* of independent problems that share one feature matrix: every fold is a
problem with its own sample weights (zero outside its training rows), so all (C, fold) problems
advance with one (problems * K, D) x (D, n) matrix product (and one for the gradient) per step.
Each problem keeps its own history, step size and stopping test, so its solution does not depend
on what it was batched with (up to float rounding); finished problems leave the batch. The final
fit is warm started from the folds' mean solution at the chosen C. Everything runs in torch, on
the CPU or a GPU, in float32 (dot products of the solver's bookkeeping in float64).

Backbone features are strongly correlated and badly scaled, which costs L-BFGS hundreds of
iterations at large C. `LinearProbe` therefore centres the features and rotates them into the
eigenbasis of the task's train_real features (`FeatureBasis`: a shift absorbed by the intercept and
an orthonormal rotation, so the same model and penalty), and the solver works in variables scaled
per feature by 1 / sqrt(variance + damping) (`_Design`: an exact change of variables whose
stopping test reads the gradient in the unscaled variables; one damping, a share of the total
variance, for every C: `PRECONDITION_DAMPING`). Together: 3-5x fewer iterations. The
stopping rule is then scikit-learn's applied in the rotated coordinates, which is scikit-learn's
LogisticRegression fitted on the rotated features: the same optimum.

On a GPU the grid trains the seeds of a setting together (`select_C_and_fit_many`): their
training sets are row subsets of one matrix, so every (seed, C, fold) problem joins one batch.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from ..errors import HarnessError
from ..protocol import PROTOCOLS

log = logging.getLogger(__name__)

RECIPE: dict[str, Any] = PROTOCOLS["linear-probe"]
#: scikit-learn's default gradient tolerance for lbfgs.
DEFAULT_TOL = 1e-4
#: L-BFGS memory (scikit-learn / scipy use 10 too).
HISTORY = 10
#: Backtracking steps before a problem's line search is declared failed (scipy: maxls 20 to 50).
MAX_LINE_SEARCH = 30
_ARMIJO_C1 = 1e-4
#: Intra-op threads for CPU fits run by `LinearProbe`. The solver's tensors are small (folds x
#: features x classes, ~40k values): extra threads gain little on an idle machine, and on a shared
#: one every small parallel op waits for descheduled threads (measured 3-7x slower with 2 threads
#: than with 1 on a loaded 2-core machine). Results do not depend on the thread count.
CPU_THREADS = 1
#: Damping of the diagonal preconditioner, as a share of the features' total variance: feature j is
#: scaled by 1 / sqrt(var_j + DAMPING * sum(var)). It equalises the curvature of the few directions
#: that carry most of the variance and scales the many weak ones alike, instead of amplifying the
#: ones the training rows barely sample (whose curvature is the penalty's alone). One damping for
#: every C, so every (C, fold) problem and the final fit share one design. Chosen by the work it
#: costs on a grid's real problems (benchmarks/test_probe_solver_bench.py, EfficientNet-Lite0 on
#: unit-norm features): on aid6 at 224 px 0.05 and 0.2 cost 1.08 and 1.01 x the L-BFGS work of 0.1,
#: on the demo at 96 px 0.88 and 1.20 x; the rule it replaced (10 * l2 at the C grid's middle) cost
#: 1.7 x on aid6's problems.
PRECONDITION_DAMPING = 0.1


# ----------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------


def l2_normalise(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (all-zero rows stay zero), as float32."""
    features = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, np.finfo(np.float32).tiny)


def as_targets(targets, n_classes: int | None = None) -> np.ndarray:
    """(N, K) float32 soft targets from soft targets or from integer hard labels."""
    targets = np.asarray(targets)
    if targets.ndim == 1:
        if n_classes is None:
            n_classes = int(targets.max()) + 1
        labels = targets.astype(np.int64)
        if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
            raise HarnessError(f"labels must lie in 0..{n_classes - 1}")
        return np.eye(n_classes, dtype=np.float32)[labels]
    if targets.ndim != 2:
        raise HarnessError(f"targets must be (N,) labels or (N, K) soft labels, got shape {targets.shape}")
    targets = targets.astype(np.float32, copy=False)
    if not np.isfinite(targets).all() or (targets < 0).any():
        raise HarnessError("targets must be finite and non-negative")
    if not np.allclose(targets.sum(axis=1), 1.0, atol=1e-4):
        raise HarnessError("every soft-label row must sum to 1")
    return targets


def class_balanced_weights(targets: np.ndarray) -> np.ndarray:
    """s_i = n / (K_present * n_k) for the arg-max class k of each row: every class weighs the same.

    scikit-learn's `class_weight="balanced"` (over the classes present), so the weights sum to n.
    """
    labels = np.asarray(targets).argmax(axis=1)
    counts = np.bincount(labels, minlength=np.asarray(targets).shape[1])
    present = int((counts > 0).sum())
    return (labels.size / (present * counts[labels])).astype(np.float64)


# ----------------------------------------------------------------------------------------------
# Batched objective and L-BFGS
# ----------------------------------------------------------------------------------------------


class _Design:
    """Features with a column of ones (the intercept), in both layouts, and targets: built once per fit.

    `column_scale` (D,) is the diagonal preconditioner: the solver works on z = w / scale, i.e. on
    features multiplied column-wise by `scale`, with the penalty weighted by scale**2 and the
    stopping test on the gradient with respect to w (= gradient in z divided by scale). That is an
    exact change of variables: the objective, its optimum and the stopping rule are those of the
    unscaled problem; only the path of the iterates (their conditioning) changes.
    """

    def __init__(
        self,
        features: np.ndarray,
        targets: np.ndarray,
        device: torch.device,
        dtype: torch.dtype,
        column_scale: np.ndarray | None = None,
    ):
        ones = np.ones((features.shape[0], 1), dtype=features.dtype)
        scaled = features if column_scale is None else features * column_scale.astype(features.dtype)
        self.features = torch.as_tensor(np.concatenate([scaled, ones], axis=1), dtype=dtype, device=device)
        self.features_t = self.features.T.contiguous()
        self.targets = torch.as_tensor(targets, dtype=dtype, device=device)  # (n, K)
        self.targets_t = self.targets.T.contiguous()  # (K, n)
        scale = np.ones(features.shape[1]) if column_scale is None else np.asarray(column_scale, dtype=np.float64)
        self.column_scale = scale  # (D,) float64, host
        self.penalty_weight = torch.as_tensor(scale**2, dtype=dtype, device=device)  # (D,)
        # d f / d w = (d f / d z) / scale; the intercept (last column) is never scaled
        self.unscale = (
            None if column_scale is None
            else torch.as_tensor(np.append(1.0 / scale, 1.0), dtype=dtype, device=device)
        )

    def to_original(self, x: torch.Tensor) -> torch.Tensor:
        """Parameters (..., K, D + 1) in the solver's variables -> the caller's (w, b)."""
        if self.unscale is None:
            return x
        scale = torch.as_tensor(np.append(self.column_scale, 1.0), dtype=x.dtype, device=x.device)
        return x * scale

    def from_original(self, x: torch.Tensor) -> torch.Tensor:
        """The caller's (w, b) (..., K, D + 1) -> parameters in the solver's variables."""
        if self.unscale is None:
            return x
        return x * self.unscale


class _BatchedObjective:
    """f and its gradient for B problems sharing features X (rows) and targets T.

    Parameters of problem b are x[b] of shape (K, D + 1): scikit-learn's `coef_` with the
    intercept as a last column. Problem b weighs row i by weights[b, i] (normalised to sum to 1,
    zero for rows it does not train on) and has penalty ||W_b||^2 / (2 * C_b * S_b) =
    0.5 * l2[b] * ||W_b||^2. Everything is laid out class-major, (B * K, n): the two products per
    evaluation, W X^T and R X, then run in the fast orientation of the BLAS (measured ~1.7x faster
    than X W and X^T R for these skinny shapes).
    """

    def __init__(self, design: "_Design", weights: torch.Tensor, l2: torch.Tensor):
        self.features = design.features  # (n, D + 1): the intercept as a last feature
        self.features_t = design.features_t  # (D + 1, n)
        self.targets = design.targets_t[None]  # (1, K, n)
        self.weights = weights  # (B, n), float64 rows summing to 1
        self.weights_low = weights.to(self.features.dtype)[:, None, :]  # (B, 1, n)
        self.l2 = l2  # (B,), float64
        self.n_features = self.features.shape[1] - 1
        self.penalty_weight = design.penalty_weight  # (D,): scale**2 of the preconditioner (ones without)
        self.unscale = design.unscale  # (D + 1,) or None: maps the gradient in z to the gradient in w

    def stopping_gradient(self, grad: torch.Tensor) -> torch.Tensor:
        """The gradient with respect to the caller's parameters (what the stopping test reads)."""
        return grad if self.unscale is None else grad * self.unscale

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, K, n) logits of every row for the B problems whose parameters are x (B, K, D + 1)."""
        batch, k, cols = x.shape
        return (x.reshape(batch * k, cols) @ self.features_t).view(batch, k, -1)

    def __call__(self, x: torch.Tensor, problems: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(f (B,) float64, gradient (B, K, D + 1)) at x for the problems `problems` (None: all)."""
        batch, k, cols = x.shape
        if problems is None:
            weights, weights_low, l2 = self.weights, self.weights_low, self.l2
        else:
            weights, weights_low, l2 = self.weights[problems], self.weights_low[problems], self.l2[problems]
        logits = self.logits(x)
        log_probs = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        cross_entropy = -(log_probs * self.targets).sum(dim=1)  # (B, n)
        weight = x[:, :, : self.n_features]
        penalised = weight * self.penalty_weight
        value = (cross_entropy.double() * weights).sum(dim=1) + 0.5 * l2 * (weight * penalised).sum(dim=(1, 2)).double()
        # d CE / d logits = softmax - t (rows of t sum to 1)
        residual = (log_probs.exp_() - self.targets).mul_(weights_low)
        grad = (residual.view(batch * k, -1) @ self.features).view(batch, k, cols)
        grad[:, :, : self.n_features].add_(penalised * l2.to(x.dtype)[:, None, None])
        return value, grad


@dataclass
class _SolveResult:
    x: torch.Tensor
    n_iter: np.ndarray
    converged: np.ndarray


def _flat_dots(stack: torch.Tensor, vectors: torch.Tensor) -> np.ndarray:
    """(b, m) float64 inner products of stack (b, m, P) with vectors (b, ...), on the host."""
    b = stack.shape[0]
    # A row vector times the stack's transposed view: one pass over the history at memory speed
    # (measured 3.6x faster than vecdot, 2x faster than stack @ column on one CPU thread, torch 2.14)
    return torch.bmm(vectors.reshape(b, 1, -1), stack.transpose(1, 2))[:, 0].double().cpu().numpy()


def _two_loop_coefficients(
    sg: np.ndarray, yg: np.ndarray, rho: np.ndarray, gram_sy: np.ndarray, gram_yy: np.ndarray, order: list[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """L-BFGS two-loop recursion in coefficient form (host numpy, per problem).

    With q0 = -g, the direction is gamma * q0 + sum_i a_i s_i + sum_i c_i y_i; this returns
    (gamma (b,), a (b, m), c (b, m)) from the inner products s_i . q0 (sg), y_i . q0 (yg) and the
    Gram matrices, so the large vectors are touched only by the final two products.
    """
    b, m = sg.shape
    alpha = np.zeros((b, m))
    for i in reversed(order):  # newest first: s_i . q = s_i . q0 - sum_j alpha_j s_i . y_j
        alpha[:, i] = rho[:, i] * (sg[:, i] - (alpha * gram_sy[:, i, :]).sum(axis=1))
    gamma = np.zeros(b)
    for i in reversed(order):  # initial scale from the newest pair with curvature: s.y / y.y
        candidate = gram_sy[:, i, i] / np.maximum(gram_yy[:, i, i], 1e-300)
        gamma = np.where((gamma == 0) & (rho[:, i] > 0), candidate, gamma)
    gamma = np.where(gamma > 0, gamma, 1.0)
    y_q = yg - (alpha[:, None, :] * gram_yy).sum(axis=2)  # y_i . q_final
    coef_s = np.zeros((b, m))
    for i in order:  # oldest first: r = gamma q_final + sum_j (alpha_j - beta_j) s_j
        y_r = gamma * y_q[:, i] + (coef_s * gram_sy[:, :, i]).sum(axis=1)
        coef_s[:, i] = alpha[:, i] - rho[:, i] * y_r
    return gamma, coef_s, -(gamma[:, None] * alpha)


def _search_direction(
    grad: torch.Tensor, hist_s: torch.Tensor, hist_y: torch.Tensor, rho: np.ndarray, gram_sy: np.ndarray,
    gram_yy: np.ndarray, order: list[int],
) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """(direction (b, K, D + 1), first trial step (b,), slope g . direction (b,)) of each problem:
    the L-BFGS direction from its history, or steepest descent on the first step and wherever
    round-off broke descent."""
    b, device, dtype = grad.shape[0], grad.device, grad.dtype
    neg_g = -grad
    if order:
        gamma, coef_s, coef_y = _two_loop_coefficients(
            _flat_dots(hist_s, neg_g), _flat_dots(hist_y, neg_g), rho, gram_sy, gram_yy, order
        )
        direction = torch.as_tensor(gamma, dtype=dtype, device=device)[:, None, None] * neg_g
        flat = direction.view(b, -1)
        flat += torch.bmm(torch.as_tensor(coef_s, dtype=dtype, device=device)[:, None, :], hist_s)[:, 0]
        flat += torch.bmm(torch.as_tensor(coef_y, dtype=dtype, device=device)[:, None, :], hist_y)[:, 0]
        step = np.ones(b)
    else:
        # First step: steepest descent scaled by min(1, 1 / ||g||_1) (as torch's LBFGS).
        direction = neg_g
        step = np.minimum(1.0, 1.0 / np.maximum(grad.flatten(1).abs().sum(dim=1).double().cpu().numpy(), 1e-12))
    slope = (grad * direction).flatten(1).sum(dim=1).double().cpu().numpy()
    not_descent = slope >= 0  # round-off can break descent: fall back to steepest descent
    if not_descent.any():
        direction[torch.as_tensor(not_descent, device=device)] = neg_g[torch.as_tensor(not_descent, device=device)]
        slope = np.where(not_descent, -(grad * grad).flatten(1).sum(dim=1).double().cpu().numpy(), slope)
    return direction, step, slope


def _backtrack(
    objective, x: torch.Tensor, direction: torch.Tensor, step: np.ndarray, slope: np.ndarray, f0: np.ndarray,
    ids: np.ndarray, subset: torch.Tensor | None,
) -> tuple[torch.Tensor, np.ndarray, torch.Tensor, np.ndarray]:
    """Backtracking line search (Armijo, quadratic interpolation), all problems at once: (new x,
    new f, new gradient, accepted (b,) bool). `step` is shortened in place where it is refused."""
    device, dtype = x.device, x.dtype
    new_x = x + torch.as_tensor(step, dtype=dtype, device=device)[:, None, None] * direction
    new_value_t, new_grad = objective(new_x, subset)
    new_value = new_value_t.cpu().numpy()
    accepted = new_value <= f0 + _ARMIJO_C1 * step * slope
    for _ in range(MAX_LINE_SEARCH):
        if accepted.all():
            break
        bad = np.flatnonzero(~accepted)
        t = step[bad]
        curvature = new_value[bad] - f0[bad] - slope[bad] * t
        t_quad = -slope[bad] * t * t / (2.0 * np.maximum(curvature, 1e-300))
        step[bad] = np.minimum(np.maximum(t_quad, 0.1 * t), 0.5 * t)
        bad_t = torch.as_tensor(bad, device=device)
        retry = x[bad_t] + torch.as_tensor(step[bad], dtype=dtype, device=device)[:, None, None] * direction[bad_t]
        f_retry, g_retry = objective(retry, torch.as_tensor(ids[bad], device=device))
        new_x[bad_t], new_grad[bad_t] = retry, g_retry
        new_value[bad] = f_retry.cpu().numpy()
        accepted[bad] = new_value[bad] <= f0[bad] + _ARMIJO_C1 * step[bad] * slope[bad]
    return new_x, new_value, new_grad, accepted


def _lbfgs(
    objective: Callable[[torch.Tensor, torch.Tensor | None], tuple[torch.Tensor, torch.Tensor]],
    x0: torch.Tensor,
    *,
    max_iter: int,
    tol: float,
) -> _SolveResult:
    """Minimise B independent smooth strongly convex problems with L-BFGS and Armijo backtracking.

    Each problem has its own curvature history, step and stopping test (the largest absolute
    gradient component <= tol); a problem whose line search cannot decrease f any further (float
    round-off near the optimum) stops there. Strong convexity (the L2 term) keeps s.y > 0, so
    Armijo backtracking suffices. The two-loop recursion runs on small Gram matrices of the history
    (S^T Y, Y^T Y, S^T g, Y^T g) on the host: each step touches the large tensors with a handful
    of batched products only. Finished problems are dropped from the working state.
    """
    total = x0.shape[0]
    device, dtype = x0.device, x0.dtype
    out_x = x0.clone()
    out_iter = np.zeros(total, dtype=np.int64)
    out_converged = np.zeros(total, dtype=bool)

    ids = np.arange(total)  # original index of each working problem
    x = x0.clone()
    value, grad = objective(x, None)
    m = HISTORY
    # (b, m, P) with P = K * (D + 1): the layout batched products read without copies
    hist_s = torch.zeros((total, m, x[0].numel()), dtype=dtype, device=device)
    hist_y = torch.zeros_like(hist_s)
    rho = np.zeros((total, m))  # 0: empty or skipped slot
    gram_sy = np.zeros((total, m, m))  # [i, j] = s_i . y_j
    gram_yy = np.zeros((total, m, m))  # [i, j] = y_i . y_j
    order: list[int] = []  # slots from oldest to newest
    n_iter = np.zeros(total, dtype=np.int64)

    def finish(keep: np.ndarray, converged: np.ndarray) -> None:
        """Write the problems not in `keep` to the output and drop them from the working state."""
        nonlocal ids, x, value, grad, hist_s, hist_y, rho, gram_sy, gram_yy, n_iter
        if keep.all():
            return
        done = ~keep
        out_x[torch.as_tensor(ids[done], device=device)] = x[torch.as_tensor(done, device=device)]
        out_iter[ids[done]] = n_iter[done]
        out_converged[ids[done]] = converged[done]
        keep_t = torch.as_tensor(keep, device=device)
        ids, n_iter, rho, gram_sy, gram_yy = ids[keep], n_iter[keep], rho[keep], gram_sy[keep], gram_yy[keep]
        x, value, grad = x[keep_t], value[keep_t], grad[keep_t]
        hist_s, hist_y = hist_s[keep_t], hist_y[keep_t]

    stopping_gradient = getattr(objective, "stopping_gradient", lambda g: g)

    def max_abs(g: torch.Tensor) -> np.ndarray:
        return stopping_gradient(g).flatten(1).abs().amax(dim=1).double().cpu().numpy()

    small = max_abs(grad) <= tol
    finish(~small, small)
    for _ in range(max_iter):
        b = ids.size
        if b == 0:
            break
        subset = None if b == total else torch.as_tensor(ids, device=device)
        direction, step, slope = _search_direction(grad, hist_s, hist_y, rho, gram_sy, gram_yy, order)
        f0 = value.cpu().numpy()
        new_x, new_value, new_grad, accepted = _backtrack(objective, x, direction, step, slope, f0, ids, subset)
        failed = ~accepted

        # --- history update for the problems that moved ---
        moved = torch.as_tensor(accepted, device=device)[:, None, None]
        zero = torch.zeros((), dtype=dtype, device=device)
        s_new = torch.where(moved, new_x - x, zero)
        y_new = torch.where(moved, new_grad - grad, zero)
        slot = order.pop(0) if len(order) == m else len(order)
        order.append(slot)
        hist_s[:, slot] = s_new.view(b, -1)
        hist_y[:, slot] = y_new.view(b, -1)
        gram_sy[:, slot, :] = _flat_dots(hist_y, s_new)  # s_new . y_j
        gram_sy[:, :, slot] = _flat_dots(hist_s, y_new)  # s_j . y_new
        y_dot_y = _flat_dots(hist_y, y_new)
        gram_yy[:, slot, :] = y_dot_y
        gram_yy[:, :, slot] = y_dot_y
        sy = gram_sy[:, slot, slot]
        s_norm = np.sqrt((s_new * s_new).flatten(1).sum(dim=1).double().cpu().numpy())
        curvature_ok = accepted & (sy > 1e-10 * s_norm * np.sqrt(y_dot_y[:, slot]))
        rho[:, slot] = np.where(curvature_ok, 1.0 / np.maximum(sy, 1e-300), 0.0)
        x = torch.where(moved, new_x, x)
        grad = torch.where(moved, new_grad, grad)
        value = torch.as_tensor(np.where(accepted, new_value, f0), device=device)
        n_iter += accepted

        small = max_abs(grad) <= tol
        # A failed line search means no representable decrease is left: stop that problem there.
        finish(~(small | failed), small)
    finish(np.zeros(ids.size, dtype=bool), np.zeros(ids.size, dtype=bool))
    return _SolveResult(x=out_x, n_iter=out_iter, converged=out_converged)


# ----------------------------------------------------------------------------------------------
# Public fitting API
# ----------------------------------------------------------------------------------------------


@dataclass
class ProbeModel:
    """A fitted probe: logits = features @ coef.T + intercept (scikit-learn's layout)."""

    coef: np.ndarray  # (K, D), float64
    intercept: np.ndarray  # (K,), float64
    C: float
    n_iter: int
    converged: bool

    def decision_function(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(features, dtype=np.float64) @ self.coef.T + self.intercept

    def predict(self, features: np.ndarray) -> np.ndarray:
        return self.decision_function(features).argmax(axis=1).astype(np.int64)


@dataclass
class ProbeSelection:
    """The result of `select_C_and_fit`: the final model and how its C was chosen."""

    model: ProbeModel
    C: float
    C_grid: list[float]
    cv_loss: list[float]  # mean held-out class-balanced cross-entropy per C, in C_grid order
    cv_folds: int
    cv_iterations: int  # L-BFGS iterations summed over all fold fits
    fold_warnings: list[str] = field(default_factory=list)

    def params(self) -> dict[str, Any]:
        """What the record stores about this run's protocol choices (JSON-ready)."""
        return {
            "C": self.C,
            "cv_loss": [round(v, 6) for v in self.cv_loss],
            "cv_folds": self.cv_folds,
            "n_iter": int(self.model.n_iter),
            "cv_iterations": int(self.cv_iterations),
            "converged": bool(self.model.converged),
        }


def _device_dtype(device, dtype) -> tuple[torch.device, torch.dtype]:
    return torch.device(device), dtype or torch.float32


def _to_model(x: torch.Tensor, C: float, n_iter: int, converged: bool) -> ProbeModel:
    params = x.detach().double().cpu().numpy()  # (K, D + 1)
    return ProbeModel(
        coef=params[:, :-1].copy(),
        intercept=params[:, -1].copy(),
        C=float(C),
        n_iter=int(n_iter),
        converged=bool(converged),
    )


def _from_model(model: ProbeModel, device, dtype) -> torch.Tensor:
    stacked = np.concatenate([model.coef, model.intercept[:, None]], axis=1)
    return torch.as_tensor(stacked, dtype=dtype, device=device)


def _column_scale(variances: np.ndarray | None) -> np.ndarray | None:
    """The diagonal preconditioner for features of these variances (None: no preconditioning)."""
    if variances is None:
        return None
    damping = PRECONDITION_DAMPING * float(variances.sum())
    if not damping > 0:  # every row the same: nothing to equalise
        return np.ones_like(variances)
    return 1.0 / np.sqrt(variances + damping)


def _check_features(features: np.ndarray, targets: np.ndarray) -> None:
    if features.ndim != 2:
        raise HarnessError(f"features must be (N, D), got shape {features.shape}")
    if features.shape[0] != targets.shape[0]:
        raise HarnessError(f"{features.shape[0]} feature rows but {targets.shape[0]} targets")
    if features.shape[0] == 0:
        raise HarnessError("cannot fit a probe on an empty training set")
    if not np.isfinite(features).all():
        raise HarnessError("features contain NaN or infinite values")


def fit_linear_probe(
    features,
    targets,
    *,
    C: float,
    sample_weight=None,
    warm_start: ProbeModel | None = None,
    n_classes: int | None = None,
    max_iter: int = RECIPE["max_iter"],
    tol: float = DEFAULT_TOL,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    precondition: bool = False,
) -> ProbeModel:
    """One probe at a fixed C (the objective in the module docstring).

    `targets` are (N, K) soft labels or (N,) integer labels; `sample_weight` defaults to 1 per row
    (pass `class_balanced_weights(targets)` for the protocol's weighting); `warm_start` is a
    previous ProbeModel to start from. `precondition`: see `select_C_and_fit`.
    """
    targets = as_targets(targets, n_classes)
    features = np.asarray(features, dtype=np.float32)
    _check_features(features, targets)
    if not C > 0:
        raise HarnessError(f"C must be positive, got {C}")
    device, dtype = _device_dtype(device, dtype)
    weights = np.ones(features.shape[0]) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    if weights.shape != (features.shape[0],) or (weights < 0).any() or weights.sum() <= 0:
        raise HarnessError("sample_weight must be one non-negative weight per row, not all zero")
    total = float(weights.sum())
    l2 = 1.0 / (C * total)
    variances = features.var(axis=0, dtype=np.float64) if precondition else None
    design = _Design(features, targets, device, dtype, _column_scale(variances))
    objective = _BatchedObjective(
        design,
        torch.as_tensor(weights / total, device=device)[None, :],
        torch.tensor([l2], dtype=torch.float64, device=device),
    )
    d, k = features.shape[1], targets.shape[1]
    x0 = (
        design.from_original(_from_model(warm_start, device, dtype))[None]
        if warm_start is not None
        else torch.zeros(1, k, d + 1, dtype=dtype, device=device)
    )
    result = _lbfgs(objective, x0, max_iter=max_iter, tol=tol)
    return _to_model(design.to_original(result.x[0]), C, result.n_iter[0], result.converged[0])


def _heldout_loss(objective: _BatchedObjective, x: torch.Tensor, heldout: torch.Tensor) -> torch.Tensor:
    """(B,) class-balanced held-out cross-entropy of each problem (heldout: (B, n) weights summing to 1)."""
    log_probs = torch.log_softmax(objective.logits(x), dim=1)  # (B, K, n)
    cross_entropy = -(log_probs * objective.targets).sum(dim=1).double()  # (B, n)
    return (cross_entropy * heldout).sum(dim=1)


def _fold_count(labels: np.ndarray, requested: int, groups: np.ndarray | None = None) -> int:
    if groups is None:
        smallest = int(np.bincount(labels)[np.unique(labels)].min())
        what = "training image(s)"
    else:  # distinct groups holding each class
        smallest = min(np.unique(groups[labels == c]).size for c in np.unique(labels))
        what = "group(s) of training images made from the same scene"
    folds = min(requested, smallest)
    if folds < 2:
        raise HarnessError(
            f"cannot cross-validate C: a class has {smallest} {what}; stratified folds need at least 2"
        )
    return folds


def _group_codes(groups, n: int) -> np.ndarray | None:
    """(n,) integer codes of per-row group names, or None when no two rows share a group."""
    if groups is None:
        return None
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise HarnessError(f"groups must be one entry per training row ({n}), got shape {groups.shape}")
    _, codes = np.unique(groups.astype(str), return_inverse=True)
    return codes if np.unique(codes).size < n else None


def _selection_inputs(features, targets, C_grid, cv_folds, class_balance, n_classes, max_iter, device, dtype):
    """The recipe's defaults for what the caller left out, and checked, typed inputs."""
    C_grid = sorted(float(c) for c in (C_grid if C_grid is not None else RECIPE["C_grid"]))
    if not C_grid or C_grid[0] <= 0:
        raise HarnessError(f"C_grid must hold positive values, got {C_grid}")
    folds = int(cv_folds if cv_folds is not None else RECIPE["cv_folds"])
    class_balance = RECIPE["class_balance"] if class_balance is None else class_balance
    max_iter = int(max_iter if max_iter is not None else RECIPE["max_iter"])
    targets = as_targets(targets, n_classes)
    features = np.asarray(features, dtype=np.float32)
    _check_features(features, targets)
    device, dtype = _device_dtype(device, dtype)
    return C_grid, folds, class_balance, max_iter, features, targets, device, dtype


def _cv_fold_weights(
    targets: np.ndarray, rows: np.ndarray, seed: int, requested_folds: int, class_balance: bool, groups=None
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified CV folds of the training set at `rows` of an (n, K) target matrix.

    `groups` (one name per row of that training set, or None): rows sharing a name stay in one
    fold. Returns (train (F, n), heldout (F, n)) weights, zero outside `rows`: each fold's training
    part gets its own class-balanced weights (or ones), its held-out part weights summing to 1.
    """
    n = targets.shape[0]
    part = targets[rows]
    labels = part.argmax(axis=1)
    codes = _group_codes(groups, rows.size)
    folds = _fold_count(labels, requested_folds, codes)
    if codes is None:
        splits = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(np.zeros(rows.size), labels)
    else:
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        splits = splitter.split(np.zeros(rows.size), labels, codes)
    train_weights = np.zeros((folds, n))
    heldout_weights = np.zeros((folds, n))
    for f, (train_idx, heldout_idx) in enumerate(splits):
        w = class_balanced_weights(part[train_idx]) if class_balance else np.ones(len(train_idx))
        train_weights[f, rows[train_idx]] = w
        h = class_balanced_weights(part[heldout_idx]) if class_balance else np.ones(len(heldout_idx))
        heldout_weights[f, rows[heldout_idx]] = h / h.sum()
    return train_weights, heldout_weights


def select_C_and_fit(
    features,
    targets,
    *,
    seed: int,
    C_grid: Sequence[float] | None = None,
    cv_folds: int | None = None,
    class_balance: bool | None = None,
    n_classes: int | None = None,
    max_iter: int | None = None,
    tol: float = DEFAULT_TOL,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    strategy: str = "auto",
    precondition: bool = False,
    groups=None,
) -> ProbeSelection:
    """Choose C by stratified k-fold CV on (features, targets), then fit on all of them at that C.

    Folds come from scikit-learn's StratifiedKFold(shuffle=True, random_state=seed) over the
    arg-max labels (fewer folds when a class has fewer images than `cv_folds`). Each fold's
    training part gets its own class-balanced weights; the held-out part is scored by its
    class-balanced cross-entropy against its targets, averaged over folds; the smallest mean wins
    (ties: the smaller C). Defaults come from PROTOCOLS["linear-probe"]. Deterministic for a seed.
    `groups` (one name per row, e.g. the scene an image was made from): rows sharing a name stay in
    one fold (StratifiedGroupKFold; with no repeated name the folds are StratifiedKFold's).

    `strategy`: "path" solves one C at a time (folds batched), warm starting each C from the
    previous one: fewest operations on ill-conditioned problems (the CPU default without
    preconditioning). "batched" solves every (C, fold) problem in one batch from zero: fewest
    sequential steps (the default on a GPU or with `precondition`). Both reach the same optima
    within the solver tolerance.

    `precondition` runs the solver on features scaled column-wise by 1 / sqrt(variance + damping)
    (`_Design`, `PRECONDITION_DAMPING`): an exact change of variables (same optimum, same stopping
    rule) that pays off when the features' covariance is nearly diagonal, i.e. after `FeatureBasis` (3-5x fewer
    iterations on backbone features); on raw, correlated features it does not help.
    """
    C_grid, requested_folds, class_balance, max_iter, features, targets, device, dtype = _selection_inputs(
        features, targets, C_grid, cv_folds, class_balance, n_classes, max_iter, device, dtype
    )
    if strategy == "auto":
        strategy = "batched" if device.type == "cuda" or precondition else "path"
    if strategy == "batched":
        # Every (C, fold) problem in one batch: the fewest sequential steps (what a GPU wants).
        return select_C_and_fit_many(
            features, targets, [np.arange(features.shape[0])], [seed], C_grid=C_grid, cv_folds=requested_folds,
            class_balance=class_balance, max_iter=max_iter, tol=tol, device=device, dtype=dtype,
            precondition=precondition, groups=None if groups is None else [groups],
        )[0]
    if strategy != "path":
        raise HarnessError(f"unknown C-selection strategy {strategy!r}; use one of: auto, path, batched")
    n, d = features.shape
    k = targets.shape[1]
    train_weights, heldout_weights = _cv_fold_weights(targets, np.arange(n), seed, requested_folds, class_balance, groups)
    folds = train_weights.shape[0]
    fold_totals = train_weights.sum(axis=1)

    variances = features.var(axis=0, dtype=np.float64) if precondition else None
    design = _Design(features, targets, device, dtype, _column_scale(variances))
    heldout = torch.as_tensor(heldout_weights, device=device)
    # One C at a time, strongest regularisation first, each warm started from the previous
    # solution (one design serves every C): the fewest operations (what a CPU wants).
    fold_weights = torch.as_tensor(train_weights / fold_totals[:, None], device=device)
    x = torch.zeros(folds, k, d + 1, dtype=dtype, device=device)
    cv_loss, solutions, iterations = [], [], 0
    for C in C_grid:
        l2 = torch.as_tensor(1.0 / (C * fold_totals), device=device)
        objective = _BatchedObjective(design, fold_weights, l2)
        result = _lbfgs(objective, x, max_iter=max_iter, tol=tol)
        x = result.x
        iterations += int(result.n_iter.sum())
        cv_loss.append(float(_heldout_loss(objective, x, heldout).mean()))
        solutions.append(x.mean(dim=0))
    best = int(np.argmin(cv_loss))  # first minimum = the smaller C on ties
    C = C_grid[best]

    weights = class_balanced_weights(targets) if class_balance else np.ones(n)
    total = float(weights.sum())
    objective = _BatchedObjective(
        design,
        torch.as_tensor(weights / total, device=device)[None, :],
        torch.tensor([1.0 / (C * total)], dtype=torch.float64, device=device),
    )
    result = _lbfgs(objective, solutions[best][None].clone(), max_iter=max_iter, tol=tol)
    model = _to_model(design.to_original(result.x[0]), C, result.n_iter[0], result.converged[0])
    if not model.converged:
        log.debug("linear probe at C=%s stopped after %d iterations before reaching tol=%s", C, model.n_iter, tol)
    return ProbeSelection(
        model=model, C=C, C_grid=C_grid, cv_loss=cv_loss, cv_folds=folds, cv_iterations=iterations
    )


def select_C_and_fit_many(
    features,
    targets,
    members: Sequence[np.ndarray],
    seeds: Sequence[int],
    *,
    C_grid: Sequence[float] | None = None,
    cv_folds: int | None = None,
    class_balance: bool | None = None,
    n_classes: int | None = None,
    max_iter: int | None = None,
    tol: float = DEFAULT_TOL,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    precondition: bool = True,
    groups: Sequence | None = None,
) -> list[ProbeSelection]:
    """`select_C_and_fit` for several training sets that are row subsets of one feature matrix.

    `members[j]` holds the row indices of training set j (distinct rows), `seeds[j]` its CV seed: the
    folds are those `select_C_and_fit(features[members[j]], ..., seed=seeds[j], groups=groups[j])`
    draws (`groups[j]`: one name per row of set j, or None; `groups` None: no groups). Every
    (member, C, fold) problem runs in one batched L-BFGS on the shared matrix, each with its own
    weights (zero outside its rows), then the members' final fits, one batch per chosen C: on a GPU
    the seeds of a grid setting train together. A problem's solution does not depend on what it is
    batched with; the shared preconditioner (variances of all rows) changes only the path, so the
    results agree with separate calls within the solver tolerance. With one member this is exactly
    `select_C_and_fit(..., strategy="batched")`, which calls it.
    """
    if len(members) != len(seeds) or not members:
        raise HarnessError(f"need one seed per training set, got {len(members)} sets and {len(seeds)} seeds")
    C_grid, requested_folds, class_balance, max_iter, features, targets, device, dtype = _selection_inputs(
        features, targets, C_grid, cv_folds, class_balance, n_classes, max_iter, device, dtype
    )
    n, d = features.shape
    k = targets.shape[1]
    n_c = len(C_grid)

    if groups is not None and len(groups) != len(members):
        raise HarnessError(f"need one group list per training set, got {len(groups)} for {len(members)} sets")
    train_rows, heldout_rows, l2_values, fold_counts = [], [], [], []
    for j, (rows, seed) in enumerate(zip(members, seeds)):
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0 or np.unique(rows).size != rows.size or rows.min() < 0 or rows.max() >= n:
            raise HarnessError("every training set must be distinct, in-range row indices")
        member_groups = None if groups is None else groups[j]
        member_train, member_heldout = _cv_fold_weights(
            targets, rows, seed, requested_folds, class_balance, member_groups
        )
        totals = member_train.sum(axis=1)
        for C in C_grid:  # problem order: member, C, fold
            train_rows.append(member_train / totals[:, None])
            heldout_rows.append(member_heldout)
            l2_values.append(1.0 / (C * totals))
        fold_counts.append(len(totals))

    # One preconditioner for every problem (the damping does not depend on C), final fits included.
    variances = features.var(axis=0, dtype=np.float64) if precondition else None
    design = _Design(features, targets, device, dtype, _column_scale(variances))
    objective = _BatchedObjective(
        design,
        torch.as_tensor(np.concatenate(train_rows), device=device),
        torch.as_tensor(np.concatenate(l2_values), device=device),
    )
    result = _lbfgs(objective, torch.zeros(len(objective.l2), k, d + 1, dtype=dtype, device=device), max_iter=max_iter, tol=tol)
    heldout_loss = _heldout_loss(objective, result.x, torch.as_tensor(np.concatenate(heldout_rows), device=device))

    # CV choice per member, then every member's final fit in one batch on the same design, warm
    # started from the mean of its folds' solutions at the chosen C.
    choices = []  # (C, cv_loss, folds, iterations, start in the solver's variables, fit weights)
    first = 0
    for rows, folds in zip(members, fold_counts):
        rows = np.asarray(rows, dtype=np.int64)
        span = slice(first, first + n_c * folds)
        cv_loss = heldout_loss[span].view(n_c, folds).mean(dim=1).tolist()
        best = int(np.argmin(cv_loss))  # first minimum = the smaller C on ties
        start = result.x[span].view(n_c, folds, k, d + 1).mean(dim=1)[best]
        weights = np.zeros(n)
        weights[rows] = class_balanced_weights(targets[rows]) if class_balance else np.ones(rows.size)
        choices.append((C_grid[best], cv_loss, folds, int(result.n_iter[span].sum()), start, weights))
        first += n_c * folds
    totals = np.array([choice[5].sum() for choice in choices])
    final_objective = _BatchedObjective(
        design,
        torch.as_tensor(np.stack([choice[5] / total for choice, total in zip(choices, totals)]), device=device),
        torch.as_tensor([1.0 / (choice[0] * total) for choice, total in zip(choices, totals)], dtype=torch.float64, device=device),
    )
    final = _lbfgs(final_objective, torch.stack([choice[4] for choice in choices]), max_iter=max_iter, tol=tol)
    models = [
        _to_model(design.to_original(final.x[j]), choice[0], final.n_iter[j], final.converged[j])
        for j, choice in enumerate(choices)
    ]
    selections = []
    for j, (C, cv_loss, folds, iterations, _, _) in enumerate(choices):
        if not models[j].converged:
            log.debug("linear probe at C=%s stopped after %d iterations before reaching tol=%s", C, models[j].n_iter, tol)
        selections.append(
            ProbeSelection(model=models[j], C=C, C_grid=C_grid, cv_loss=cv_loss, cv_folds=folds, cv_iterations=iterations)
        )
    return selections


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Temporarily run torch's CPU ops on `n` intra-op threads (None: leave the setting alone)."""
    if n is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass
class FeatureBasis:
    """Centre features on a reference set and rotate them into its covariance eigenbasis.

    An orthonormal rotation and a shift absorbed by the unpenalised intercept: the probe on the
    transformed features is the same model (same penalty, same predictions at the optimum). It
    makes the features' covariance nearly diagonal, which lets the solver's diagonal
    preconditioner equalise the curvature (3-5x fewer L-BFGS iterations on backbone features).
    """

    mean: np.ndarray  # (D,) float32
    rotation: np.ndarray  # (D, D) float32, columns = eigenvectors of the reference covariance

    @classmethod
    def fit(cls, reference: np.ndarray) -> "FeatureBasis":
        reference = np.asarray(reference, dtype=np.float64)
        if reference.ndim != 2 or reference.shape[0] < 2:
            raise HarnessError(f"a feature basis needs at least 2 reference rows, got shape {reference.shape}")
        mean = reference.mean(axis=0)
        centred = reference - mean
        _, vectors = np.linalg.eigh(centred.T @ centred)
        return cls(mean=mean.astype(np.float32), rotation=vectors.astype(np.float32))

    def apply(self, features: np.ndarray) -> np.ndarray:
        return (np.asarray(features, dtype=np.float32) - self.mean) @ self.rotation


class LinearProbe:
    """Runner of the linear-probe protocol on cached features (used by the grid).

    `fit_predict_features(train_features, train_targets, test_features, seed=...)` L2-normalises
    both sides (when the recipe says so), centres and rotates them into the eigenbasis of the
    training features (`FeatureBasis`), selects C by CV (preconditioned solver), refits and
    predicts the test classes. The grid instead calls `prepare` once on every image it encoded,
    with the task's train_real rows as the basis reference (the same basis for every run and
    every submission of a task), and passes `prepared=True`.
    """

    name = "linear-probe"

    def __init__(self, recipe: dict[str, Any] | None = None, *, device: str | torch.device = "cpu"):
        self.recipe = dict(recipe if recipe is not None else RECIPE)
        self.device = torch.device(device)
        # With the preconditioner every C converges in a few dozen iterations from zero, so one
        # batch of all (C, fold) problems beats the warm-started C path on the CPU too (measured
        # 1.5x on the demo grid) and is what a GPU wants.
        self.strategy = "batched"

    def solver_params(self) -> dict[str, Any]:
        """How the solver runs (recorded with the recipe: it is part of a result's identity)."""
        return {
            "solver": "lbfgs-torch",
            "tol": DEFAULT_TOL,
            "cv_score": "class-balanced held-out cross-entropy",
            "cv_groups": "rows made from the same scene share a fold",
            "strategy": self.strategy,
            "preconditioner": f"train_real eigenbasis + diagonal (damping {PRECONDITION_DAMPING:g} x total variance)",
        }

    def _normalise(self, features: np.ndarray) -> np.ndarray:
        if self.recipe.get("normalise_features", True):
            return l2_normalise(features)
        return np.asarray(features, dtype=np.float32)

    def prepare(self, features: np.ndarray, reference_rows) -> np.ndarray:
        """Normalise every row, then centre and rotate on the basis of rows `reference_rows`."""
        features = self._normalise(features)
        return FeatureBasis.fit(features[reference_rows]).apply(features)

    def fit_predict_features(
        self,
        train_features: np.ndarray,
        train_targets: np.ndarray,
        test_features: np.ndarray,
        *,
        seed: int,
        prepared: bool = False,
        groups=None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if not prepared:
            train_features = self._normalise(train_features)
            basis = FeatureBasis.fit(train_features)
            train_features, test_features = basis.apply(train_features), basis.apply(self._normalise(test_features))
        threads = CPU_THREADS if self.device.type == "cpu" else None
        with torch_threads(threads):
            selection = select_C_and_fit(
                train_features,
                train_targets,
                seed=seed,
                C_grid=self.recipe["C_grid"],
                cv_folds=self.recipe["cv_folds"],
                class_balance=self.recipe["class_balance"],
                max_iter=self.recipe["max_iter"],
                device=self.device,
                strategy=self.strategy,
                precondition=True,
                groups=groups,
            )
        return selection.model.predict(test_features), selection.params()

    def fit_predict_many(
        self,
        features: np.ndarray,
        targets: np.ndarray,
        members: Sequence[np.ndarray],
        test_features: np.ndarray,
        *,
        seeds: Sequence[int],
        groups: Sequence | None = None,
    ) -> list[tuple[np.ndarray, dict[str, Any]]]:
        """Prepared features (see `prepare`) of the union of several training sets; `members[j]` the
        rows of set j, trained with seed `seeds[j]` and CV groups `groups[j]`, all in one batch
        (`select_C_and_fit_many`)."""
        threads = CPU_THREADS if self.device.type == "cpu" else None
        with torch_threads(threads):
            selections = select_C_and_fit_many(
                features,
                targets,
                members,
                seeds,
                C_grid=self.recipe["C_grid"],
                cv_folds=self.recipe["cv_folds"],
                class_balance=self.recipe["class_balance"],
                max_iter=self.recipe["max_iter"],
                device=self.device,
                precondition=True,
                groups=groups,
            )
        return [(s.model.predict(test_features), s.params()) for s in selections]
