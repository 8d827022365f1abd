"""What a synthetic set looks like next to the real training images, from cached features.

Per class and overall, a submission's images against the task's train_real images (never the test
split): KID, FD (when the sample size supports it), precision / recall / density / coverage,
Vendi diversity relative to the real images' own, a memorisation rate and edit strength. The
definitions and parameters are `benchmark.protocol.DIAGNOSTICS` (docs/DIAGNOSTICS.md explains them).

The features are those of the feature cache (nothing is encoded twice). KID and FD use them as
they are (as KID and FID use Inception's); the distance-based diagnostics (PRDC, Vendi,
memorisation, edit strength) use them L2-normalised, with Euclidean distances. `diagnose_features` is the pure computation (tests check
it against torchmetrics, prdc and vendi-score); `diagnose` fetches the features of a task and a
submission; `synthbench diagnose` prints the result. scipy and scikit-learn are imported where they are used,
so that registering the command keeps `synthbench --help` fast.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .errors import HarnessError
from .protocol import DIAGNOSTICS

PARAMS = DIAGNOSTICS["params"]
#: The diagnostics of each group, in print order.
NAMES = ("kid", "fd", "precision", "recall", "density", "coverage", "vendi_ratio", "memorisation_rate", "edit_strength")


def normalise(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.where(norms > 0, norms, 1.0)


# ----------------------------------------------------------------------------------------------
# Estimators (each a plain function of feature matrices; the bootstrap reuses their pieces)
# ----------------------------------------------------------------------------------------------


def poly_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + PARAMS["kid_coef"]) ** PARAMS["kid_degree"]


def mmd2_unbiased(k_rr: np.ndarray, k_ss: np.ndarray, k_rs: np.ndarray) -> float:
    """Unbiased MMD^2 from kernel matrices (real-real, synthetic-synthetic, real-synthetic)."""
    m, n = k_rr.shape[0], k_ss.shape[0]
    within_real = (k_rr.sum() - np.trace(k_rr)) / (m * (m - 1))
    within_synthetic = (k_ss.sum() - np.trace(k_ss)) / (n * (n - 1))
    return float(within_real + within_synthetic - 2.0 * k_rs.mean())


def kid(real: np.ndarray, synthetic: np.ndarray) -> float:
    return mmd2_unbiased(poly_kernel(real, real), poly_kernel(synthetic, synthetic), poly_kernel(real, synthetic))


def frechet_distance(real: np.ndarray, synthetic: np.ndarray) -> float | None:
    """FID's formula on these features; None when a set has no more images than dimensions."""
    from scipy import linalg

    dim = real.shape[1]
    if min(len(real), len(synthetic)) <= PARAMS["fd_min_samples_per_dim"] * dim:
        return None
    mu_r, mu_s = real.mean(axis=0), synthetic.mean(axis=0)
    sigma_r, sigma_s = np.cov(real, rowvar=False), np.cov(synthetic, rowvar=False)
    # Tr sqrt(sigma_r sigma_s) = sum of the square roots of its eigenvalues (as torchmetrics)
    root_trace = np.sqrt(linalg.eigvals(sigma_r @ sigma_s).astype(complex)).real.sum()
    return float(((mu_r - mu_s) ** 2).sum() + np.trace(sigma_r) + np.trace(sigma_s) - 2.0 * root_trace)


def knn_radii(features: np.ndarray, k: int) -> np.ndarray:
    """Distance of each point to its k-th nearest other point."""
    from sklearn.metrics import pairwise_distances

    distances = pairwise_distances(features, metric="euclidean")
    return np.partition(distances, k, axis=1)[:, k]


@dataclass
class PRDCParts:
    """Per-image pieces of precision, recall, density and coverage (Naeem et al. 2020, as `prdc`):
    the scores are their means, and a bootstrap draw resamples them."""

    in_real_ball: np.ndarray  # (synthetic,) inside some real k-NN ball: precision
    real_balls_hit: np.ndarray  # (synthetic,) number of real balls holding it / k: density
    in_synthetic_ball: np.ndarray  # (real,) inside some synthetic k-NN ball: recall
    ball_covered: np.ndarray  # (real,) its ball holds a synthetic image: coverage

    @classmethod
    def compute(cls, real: np.ndarray, synthetic: np.ndarray, k: int) -> "PRDCParts":
        from sklearn.metrics import pairwise_distances

        real_radii, synthetic_radii = knn_radii(real, k), knn_radii(synthetic, k)
        distances = pairwise_distances(real, synthetic, metric="euclidean")  # (real, synthetic)
        inside_real = distances < real_radii[:, None]
        return cls(
            in_real_ball=inside_real.any(axis=0).astype(float),
            real_balls_hit=inside_real.sum(axis=0) / k,
            in_synthetic_ball=(distances < synthetic_radii[None, :]).any(axis=1).astype(float),
            ball_covered=(distances.min(axis=1) < real_radii).astype(float),
        )


def vendi_from_gram(gram: np.ndarray) -> float:
    """exp(entropy of the eigenvalues of K / n): the effective number of distinct images."""
    from scipy import linalg

    eigenvalues = linalg.eigvalsh(gram / gram.shape[0])
    p = eigenvalues[eigenvalues > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def memorisation_threshold(real: np.ndarray) -> float:
    """The stated percentile of real images' distances to their nearest other real image."""
    return float(np.percentile(knn_radii(real, 1), PARAMS["memorisation_percentile"]))


# ----------------------------------------------------------------------------------------------
# One group (a class, or every image): point estimates and bootstrap CIs
# ----------------------------------------------------------------------------------------------


def _interval(point: float | None, draws: np.ndarray) -> dict | None:
    if point is None:
        return None
    from .metrics import percentile_interval

    draws = draws[np.isfinite(draws)]
    if draws.size == 0:
        return {"value": float(point), "ci": [float(point), float(point)]}
    value, lo, hi = percentile_interval(point, draws, PARAMS["ci_level"])
    return {"value": value, "ci": [lo, hi]}


def _counts(rng: np.random.Generator, n: int, draws: int) -> np.ndarray:
    """(draws, n) how often each image is in each bootstrap draw of n images with replacement."""
    picks = rng.integers(0, n, size=(draws, n)) + (np.arange(draws) * n)[:, None]
    return np.bincount(picks.ravel(), minlength=draws * n).reshape(draws, n).astype(np.float64)


def _kid_draws(real, synthetic, real_counts, synthetic_counts) -> tuple[float, np.ndarray]:
    """KID and its bootstrap draws. A draw's within-set terms average over pairs of *distinct images*
    (weights c_i c_j, i != j): an image drawn twice must not be paired with itself, or its self-
    similarity K_ii inflates the draw and the point estimate falls outside its own interval."""
    k_rr, k_ss, k_rs = poly_kernel(real, real), poly_kernel(synthetic, synthetic), poly_kernel(real, synthetic)
    m, n = len(real), len(synthetic)

    def within(kernel, counts):
        squared = counts**2
        pairs = counts.sum(axis=1) ** 2 - squared.sum(axis=1)
        return (((counts @ kernel) * counts).sum(axis=1) - squared @ np.diag(kernel)) / np.maximum(pairs, 1.0)

    cross = ((real_counts @ k_rs) * synthetic_counts).sum(axis=1) / (m * n)
    draws = within(k_rr, real_counts) + within(k_ss, synthetic_counts) - 2.0 * cross
    return mmd2_unbiased(k_rr, k_ss, k_rs), draws


def _vendi_ratio(real, synthetic, rng) -> dict:
    """Vendi of the synthetic set over the real images' own, by half-sampling: each draw takes a
    random half of the smaller set's size from each set, without replacement (a resample with
    duplicates would lower Vendi); the value is the mean ratio over the draws, the CI their spread."""
    size = max(2, min(len(real), len(synthetic)) // 2)
    gram_r, gram_s = real @ real.T, synthetic @ synthetic.T
    pairs = []
    for _ in range(PARAMS["vendi_resamples"]):
        r, s = rng.permutation(len(real))[:size], rng.permutation(len(synthetic))[:size]
        pairs.append((vendi_from_gram(gram_s[np.ix_(s, s)]), vendi_from_gram(gram_r[np.ix_(r, r)])))
    vendi_s, vendi_r = np.asarray(pairs).T
    ratios = vendi_s / vendi_r
    return {
        "vendi_ratio": _interval(float(ratios.mean()), ratios),
        "vendi_synthetic": float(vendi_s.mean()),
        "vendi_real": float(vendi_r.mean()),
        "vendi_sample_size": size,
    }


def _fd(real, synthetic, rng) -> dict | None:
    point = frechet_distance(real, synthetic)
    if point is None:
        return None
    draws = [
        frechet_distance(real[rng.integers(0, len(real), len(real))], synthetic[rng.integers(0, len(synthetic), len(synthetic))])
        for _ in range(PARAMS["vendi_resamples"])
    ]
    return _interval(point, np.asarray([d for d in draws if d is not None]))


def diagnose_group(
    real: np.ndarray, synthetic: np.ndarray, nearest_reference: np.ndarray, source_distance: np.ndarray,
    threshold: float, rng: np.random.Generator, raw: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Every diagnostic of one group. real / synthetic: L2-normalised features; raw: the same rows
    unnormalised (KID and FD; default: the normalised ones). nearest_reference / source_distance:
    (synthetic,) distance of each synthetic image to its nearest train_real or generation-input
    image / to its source (NaN: unknown). Diagnostics a group is too small for are None."""
    m, n, k = len(real), len(synthetic), PARAMS["nearest_k"]
    out: dict[str, Any] = {"n_real": m, "n_synthetic": n, **{name: None for name in NAMES}}
    if n == 0:
        return out
    draws = PARAMS["resamples"]
    real_counts, synthetic_counts = _counts(rng, m, draws), _counts(rng, n, draws)
    memorised = (nearest_reference <= threshold).astype(float)
    out["memorisation_rate"] = _interval(memorised.mean(), synthetic_counts @ memorised / n)
    known = np.isfinite(source_distance)
    if known.any():
        weights = synthetic_counts[:, known]
        out["edit_strength"] = _interval(
            source_distance[known].mean(),
            (weights @ source_distance[known]) / np.maximum(weights.sum(axis=1), 1e-12),
        )
        out["edit_strength_n"] = int(known.sum())
    if m >= 2 and n >= 2:
        raw_real, raw_synthetic = raw if raw is not None else (real, synthetic)
        out["kid"] = _interval(*_kid_draws(raw_real, raw_synthetic, real_counts, synthetic_counts))
        out.update(_vendi_ratio(real, synthetic, rng))
        out["fd"] = _fd(raw_real, raw_synthetic, rng)
    if m > k and n > k:
        parts = PRDCParts.compute(real, synthetic, k)
        for name, values, counts, size in (
            ("precision", parts.in_real_ball, synthetic_counts, n),
            ("density", parts.real_balls_hit, synthetic_counts, n),
            ("recall", parts.in_synthetic_ball, real_counts, m),
            ("coverage", parts.ball_covered, real_counts, m),
        ):
            out[name] = _interval(values.mean(), counts @ values / size)
    return out


def diagnose_features(
    classes: Sequence[str],
    real: np.ndarray,
    real_labels: np.ndarray,
    synthetic: np.ndarray,
    synthetic_labels: np.ndarray,
    reference: np.ndarray,
    source_rows: np.ndarray,
) -> dict[str, Any]:
    """Diagnostics per class and overall from raw feature matrices.

    real / real_labels: train_real; synthetic / synthetic_labels: the submission (hard labels);
    reference: train_real and generation-input features (the memorisation rate's neighbours);
    source_rows: each synthetic image's source row in `reference` (-1: unknown).
    """
    from sklearn.metrics import pairwise_distances

    raw_real, raw_synthetic = np.asarray(real, dtype=np.float64), np.asarray(synthetic, dtype=np.float64)
    real, synthetic, reference = normalise(real), normalise(synthetic), normalise(reference)
    if len(real) < 2:
        raise HarnessError("diagnostics need at least two train_real images")
    threshold = memorisation_threshold(real)
    nearest = pairwise_distances(synthetic, reference).min(axis=1) if len(synthetic) else np.zeros(0)
    source = np.full(len(synthetic), np.nan)
    has_source = source_rows >= 0
    source[has_source] = np.linalg.norm(synthetic[has_source] - reference[source_rows[has_source]], axis=1)
    groups = {"overall": (np.ones(len(real), bool), np.ones(len(synthetic), bool))}
    groups.update({name: (real_labels == c, synthetic_labels == c) for c, name in enumerate(classes)})
    results = {}
    for index, (name, (real_rows, synthetic_rows)) in enumerate(groups.items()):
        rng = np.random.default_rng([PARAMS["seed"], index])
        results[name] = diagnose_group(
            real[real_rows], synthetic[synthetic_rows], nearest[synthetic_rows], source[synthetic_rows], threshold, rng,
            raw=(raw_real[real_rows], raw_synthetic[synthetic_rows]),
        )
    return {
        "params": dict(PARAMS),
        "memorisation_threshold": threshold,
        "overall": results.pop("overall"),
        "per_class": results,
    }


# ----------------------------------------------------------------------------------------------
# From a task and a submission
# ----------------------------------------------------------------------------------------------


def _reference_rows(task) -> tuple[list, dict[str, int]]:
    """train_real then generation_inputs refs, and image_id -> row (the source_id lookup)."""
    refs, rows = [], {}
    for split in ("train_real", "generation_inputs"):
        if split in task.splits:
            for image_id, ref in zip(task.image_ids(split), task.image_refs(split)):
                rows.setdefault(image_id, len(refs))
                refs.append(ref)
    return refs, rows


def diagnose(task, submission, backbone, cache, *, progress: bool = False, **encoding) -> dict[str, Any]:
    """Diagnostics of a loaded submission against a loaded task, through a FeatureCache (a
    loaded backbone: its features are those the grid and the leakage gate cache)."""
    if submission.kind == "checkpoint":
        raise HarnessError(f"{submission.id}: a checkpoint submission has no images to diagnose")
    classes = list(task.classes)
    reference_refs, rows = _reference_rows(task)
    synthetic_refs = submission.image_refs()
    features = cache.features(backbone, reference_refs + list(synthetic_refs), progress=progress, **encoding)
    reference, synthetic = features[: len(reference_refs)], features[len(reference_refs):]
    n_real = len(task.image_ids("train_real"))
    targets = submission.targets(classes)
    synthetic_labels = targets.argmax(axis=1) if len(targets) else np.zeros(0, dtype=np.int64)
    sources = np.array([rows.get(entry.source_id, -1) if entry.source_id else -1 for entry in submission.entries],
                       dtype=np.int64)
    result = diagnose_features(
        classes, reference[:n_real], np.asarray(task.labels("train_real")), synthetic, synthetic_labels,
        reference, sources,
    )
    described = backbone.describe()
    result["features"] = {"backbone": described["name"], "preprocessing": described["preprocessing"],
                          "kid_fd": "raw", "distances": "L2-normalised"}
    return result


# ----------------------------------------------------------------------------------------------
# `synthbench diagnose`
# ----------------------------------------------------------------------------------------------


def _cell(entry: dict | None, spec: str) -> str:
    if entry is None:
        return "—"
    lo, hi = entry["ci"]
    return f"{entry['value']:{spec}} [{lo:{spec}}, {hi:{spec}}]"


def diagnostics_table(result: dict):
    """A pandas DataFrame: one row per group (overall, then each class), one column per diagnostic."""
    import pandas as pd

    specs = {"kid": ".3g", "fd": ".3g", "edit_strength": ".3f"}
    rows = []
    for group, entry in [("overall", result["overall"]), *result["per_class"].items()]:
        row = {"group": group, "synthetic": entry["n_synthetic"], "real": entry["n_real"]}
        row.update({name: _cell(entry[name], specs.get(name, ".2f")) for name in NAMES})
        rows.append(row)
    return pd.DataFrame(rows)


def register(subparsers) -> None:
    """Add `synthbench diagnose` to the CLI."""
    parser = subparsers.add_parser(
        "diagnose",
        help="fidelity, diversity and copying of a submission's images against train_real (KID, PRDC, Vendi, ...)",
        description="Compare a submission's images with the task's train_real images (never the test split) "
        "on cached backbone features, per class and overall: " + "; ".join(
            f"{name}: {text}" for name, text in DIAGNOSTICS["descriptions"].items()
        ),
    )
    parser.add_argument("submission", help="submission folder")
    parser.add_argument("--task", required=True, help="task folder or Hub dataset repo id")
    parser.add_argument("--revision", default=None, help="Hub revision of the task (repo ids only)")
    parser.add_argument("--backbone", default=None, help="feature backbone (default: the grid's default)")
    parser.add_argument("--image-size", type=int, default=None, help="backbone input resolution")
    parser.add_argument("--weights", default=None, help="local backbone weights file or folder (offline use)")
    parser.add_argument("--cache-dir", default=None, help="feature cache (default: as `synthbench run`)")
    parser.add_argument("--device", default="auto", help="torch device (default auto)")
    parser.add_argument("--json", dest="json_out", default=None, help="also write the diagnostics to this JSON file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=_diagnose_command)


def _diagnose_command(args: argparse.Namespace) -> int:
    import pandas as pd

    from .backbones import DEFAULT_BACKBONE, load_backbone
    from .device import resolve_device
    from .features import FeatureCache
    from .paths import default_cache_dir
    from .io import atomic_write_json
    from .submissions import load_submission
    from .tasks import load_task

    task = load_task(args.task, revision=args.revision)
    submission = load_submission(args.submission)
    backbone = load_backbone(args.backbone or DEFAULT_BACKBONE, weights=args.weights,
                             device=resolve_device(args.device), image_size=args.image_size)
    cache = FeatureCache(args.cache_dir or default_cache_dir())
    result = diagnose(task, submission, backbone, cache, progress=not args.no_progress)
    print(f"{submission.id} against {task.name} train_real | {result['features']['backbone']} features")
    with pd.option_context("display.width", 250, "display.max_columns", 20):
        print(diagnostics_table(result).to_string(index=False))
    print(f"memorisation threshold: {result['memorisation_threshold']:.4f} "
          f"({PARAMS['memorisation_percentile']:g}th percentile of real nearest-neighbour distances); "
          f"{PARAMS['ci_level']:.0%} bootstrap CIs")
    if args.json_out:
        atomic_write_json(args.json_out, result)
        print(f"wrote {args.json_out}")
    return 0
