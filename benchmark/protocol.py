"""The fixed protocol of synthbench, as data (one place; everything else reads it).

Tasks' class lists and prompts, the settings and ratios, the seeds, the CI recipe and each
protocol's recipe live here. The CLI's choices, the errors for unknown names, the methodology page
of the leaderboard and the harness itself all read these dicts, so they cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from .errors import SynthbenchError

# ----------------------------------------------------------------------------------------------
# Task xbd-disaster6: the 19 xBD events grouped into 6 disaster types (docs/TASKS.md)
# ----------------------------------------------------------------------------------------------

XBD_CLASSES: tuple[str, ...] = ("earthquake", "wildfire", "volcano", "storm", "flooding", "tsunami")

XBD_EVENT_TO_CLASS: dict[str, str] = {
    "mexico-earthquake": "earthquake",
    "portugal-wildfire": "wildfire",
    "santa-rosa-wildfire": "wildfire",
    "socal-fire": "wildfire",
    "woolsey-fire": "wildfire",
    "pinery-bushfire": "wildfire",
    "lower-puna-volcano": "volcano",
    "guatemala-volcano": "volcano",
    "joplin-tornado": "storm",
    "moore-tornado": "storm",
    "tuscaloosa-tornado": "storm",
    "hurricane-matthew": "storm",
    "hurricane-florence": "storm",
    "nepal-flooding": "flooding",
    "hurricane-harvey": "flooding",
    "hurricane-michael": "flooding",
    "midwest-flooding": "flooding",
    "palu-tsunami": "tsunami",
    "sunda-tsunami": "tsunami",
}

#: xBD label JSONs' own `metadata.disaster_type` values -> classes (`--label-source metadata`).
#: xBD calls tornadoes' and hurricanes' wind damage "wind" and wildfires "fire".
XBD_METADATA_TYPE_TO_CLASS: dict[str, str] = {
    "earthquake": "earthquake",
    "fire": "wildfire",
    "volcano": "volcano",
    "wind": "storm",
    "flooding": "flooding",
    "tsunami": "tsunami",
}

#: How a class name reads inside a prompt ("make it suffer from <phrase>").
CLASS_PROMPT_PHRASES: dict[str, str] = {
    "earthquake": "an earthquake",
    "wildfire": "a wildfire",
    "volcano": "a volcano eruption",
    "storm": "a storm",
    "flooding": "flooding",
    "tsunami": "a tsunami",
}

#: Prompt templates given to generators with each pre-disaster image; `{phrase}` is filled in.
PROMPT_TEMPLATES: tuple[str, ...] = (
    "make it suffer from {phrase}",
    "a satellite image of the same place after {phrase}",
)

#: Zero-shot text prompts for CLIP-family backbones; `{name}` is the class name.
ZERO_SHOT_TEMPLATES: tuple[str, ...] = (
    "a satellite image of an area hit by {name}.",
    "an aerial photo of damage caused by {name}.",
    "a post-disaster satellite image showing {name}.",
)


def prompt_for(class_name: str, template_index: int = 0) -> str:
    phrase = CLASS_PROMPT_PHRASES.get(class_name, class_name.replace("_", " "))
    return PROMPT_TEMPLATES[template_index].format(phrase=phrase)


# ----------------------------------------------------------------------------------------------
# Settings and ratios
# ----------------------------------------------------------------------------------------------

#: Real training images per class in every task (the brief: 100 per class).
TRAIN_PER_CLASS = 100
#: Ratios real:synthetic 1:k.
RATIOS: tuple[int, ...] = (1, 2, 3, 4)
#: Synthetic images per class a submission needs to be ranked (the 1:4 ratio).
RANKING_IMAGES_PER_CLASS = TRAIN_PER_CLASS * max(RATIOS)


#: The real-data learning curve (issue 15): `real@n` trains on a nested subset of n real images
#: per class, drawn per seed like the synthetic subsets; the full split (`real`, TRAIN_PER_CLASS per
#: class) is the curve's last point. Each synthetic@k is read off this curve as "worth N real images
#: per class" (benchmark.metrics.effective_real_images).
LEARNING_CURVE: dict[str, Any] = {
    "points": (10, 25, 50),
    # Only the linear probe runs the curve by default: it is cheap on cached features. Fine-tuning
    # costs the same fixed number of images seen per run whatever n is (15 more full trainings per
    # grid), so it runs `real@n` only when asked with --settings.
    "default_protocols": ("linear-probe",),
    # The subsets' own random stream, apart from the synthetic draws' (`default_rng(seed)`), so that
    # adding the curve changes no existing setting's draw.
    "draw_stream": 15,
    "description": (
        "real@n trains on n real images per class (n = 10, 25, 50), the first n of a per-seed "
        "permutation of each class's train_real images, so the subsets are nested over n and paired "
        "by seed with every other setting; `real` (all of train_real) is the curve's last point. "
        "A task whose train_real has at most n images in some class skips real@n."
    ),
}

#: The effective number of real images of a synthetic set (benchmark.metrics.effective_real_images).
EFFECTIVE_REAL: dict[str, Any] = {
    "settings": [f"synthetic@{k}" for k in RATIOS],
    "metric": "macro_f1",
    "description": (
        "For each synthetic@k: the number of real images per class that gives the same macro-F1, "
        "read off the learning curve (real@n and real, averaged over the seeds that every curve "
        "point and synthetic@k share). The curve is made non-decreasing by isotonic regression and "
        "interpolated linearly in log n; the estimate is the smallest n whose curve value reaches the "
        "synthetic set's macro-F1. Below the first point it is reported as the bound "
        f"'< {LEARNING_CURVE['points'][0]}', above the full split as '> {TRAIN_PER_CLASS}' (the full "
        "split's images per class). The CI is the percentile interval "
        "of the same estimate over the record's two-level bootstrap draws (seeds and test images, the "
        "same draws on the curve and on synthetic@k). It assumes more real images never hurt (hence "
        "the monotone curve) and that macro-F1 grows smoothly in log n between the points; it is "
        "undefined (absent) without the full `real` setting and at least one real@n point."
    ),
}


#: The more-real control (issue 15; benchmark.more_real): on a task with a `train_real_extra` split,
#: `more-real@k` trains on train_real plus k x n more real images per class (n: the class's
#: train_real images), beside `mixed@k`'s k x n synthetic ones, so the Augment board can say what
#: share of the gain of that many more *real* images the synthetic set delivers.
MORE_REAL: dict[str, Any] = {
    "ratios": RATIOS,
    "split": "train_real_extra",
    # like the learning curve: cheap on cached features, a full training per run otherwise
    "default_protocols": ("linear-probe",),
    # the extra images' own random stream, apart from the synthetic and real@n draws
    "draw_stream": 16,
    "metric": "macro_f1",
    "description": (
        "more-real@k trains on train_real plus k x n real images per class from the task's "
        "train_real_extra split (n: the class's train_real images), the first k x n of a per-seed "
        "permutation of each class's extra images, so the subsets are nested over k and paired by "
        "seed with every other setting. It runs only on a task with that split and only for the k "
        "every class can fill (the record's `skipped` says which could not). Each mixed@k's summary "
        "sets its paired delta to real beside more-real@k's, and their ratio: the share of the gain "
        "of k x n more real images per class that k x n synthetic ones deliver (1: as good as real "
        "images, 0: no gain). The ratio is given only when more-real@k's own delta is clearly above "
        "zero (its CI's lower end > 0): a ratio to a gain that may be nothing means nothing. The CI "
        "is the percentile interval of the ratio over the same two-level bootstrap draws (seeds and "
        "test images) on all three settings; an end past what the draws can bound is null."
    ),
}


@dataclass(frozen=True)
class Setting:
    """One training-set recipe: how many real and synthetic images per class."""

    name: str  # "real", "real@n", "synthetic@k", "mixed@k", "more-real@k"
    kind: str  # "real" | "synthetic" | "mixed" | "more-real"
    ratio: int  # k, 0 for real
    uses_real: bool
    synthetic_per_class: int
    #: real@n: the n real images per class of a learning-curve point; None: all of train_real.
    real_per_class: int | None = None

    @property
    def description(self) -> str:
        if self.kind == "real":
            n = self.real_per_class or TRAIN_PER_CLASS
            curve = " (a learning-curve point)" if self.real_per_class else ""
            return f"{n} real images per class{curve}"
        if self.kind == "synthetic":
            return f"{self.synthetic_per_class} synthetic images per class, no real (ratio 1:{self.ratio})"
        if self.kind == "more-real":
            return (f"{TRAIN_PER_CLASS} real + {self.ratio * TRAIN_PER_CLASS} more real images per class from "
                    f"train_real_extra (the control of mixed@{self.ratio})")
        return (
            f"{TRAIN_PER_CLASS} real + {self.synthetic_per_class} synthetic images per class "
            f"(ratio 1:{self.ratio})"
        )

    @property
    def is_curve_point(self) -> bool:
        return self.real_per_class is not None


def _build_settings() -> dict[str, Setting]:
    settings = {"real": Setting("real", "real", 0, True, 0)}
    for n in LEARNING_CURVE["points"]:
        settings[f"real@{n}"] = Setting(f"real@{n}", "real", 0, True, 0, real_per_class=n)
    for k in RATIOS:
        settings[f"synthetic@{k}"] = Setting(f"synthetic@{k}", "synthetic", k, False, k * TRAIN_PER_CLASS)
    for k in RATIOS:
        settings[f"mixed@{k}"] = Setting(f"mixed@{k}", "mixed", k, True, k * TRAIN_PER_CLASS)
    for k in MORE_REAL["ratios"]:
        settings[f"more-real@{k}"] = Setting(f"more-real@{k}", "more-real", k, True, 0)
    return settings


SETTINGS: dict[str, Setting] = _build_settings()

# ----------------------------------------------------------------------------------------------
# Seeds and statistics
# ----------------------------------------------------------------------------------------------

DEFAULT_SEEDS: tuple[int, ...] = (0, 1, 2, 3, 4)
BOOTSTRAP_RESAMPLES = 1000
CI_LEVEL = 0.95
#: Seed of the bootstrap's resampling (fixed: CIs are reproducible bit for bit).
BOOTSTRAP_SEED = 20250701

# ----------------------------------------------------------------------------------------------
# Synthetic-set diagnostics (benchmark.diagnostics; docs/DIAGNOSTICS.md)
# ----------------------------------------------------------------------------------------------

#: Each diagnostic compares a submission's images with train_real (never the test split), per class
#: and overall, on the grid backbone's cached features: KID and FD on the features as they are, the
#: distance-based ones L2-normalised (Euclidean distances on the unit sphere). The parameters and
#: the one-line definitions the docs and the methodology page show.
DIAGNOSTICS: dict[str, Any] = {
    "params": {
        "nearest_k": 5,  # PRDC's k (Naeem et al. 2020 recommend 5)
        "kid_degree": 3,  # KID's polynomial kernel (x.y / d + 1)^3 (Binkowski et al. 2018)
        "kid_coef": 1.0,
        "memorisation_percentile": 5.0,  # of the real images' nearest-real-neighbour distances
        "fd_min_samples_per_dim": 1.0,  # FD only when both sets have more images than dimensions
        "resamples": 200,  # bootstrap draws of every CI here
        "vendi_resamples": 50,  # Vendi's draws each need an eigen-decomposition
        "ci_level": CI_LEVEL,
        "seed": BOOTSTRAP_SEED,
    },
    "descriptions": {
        "kid": "Kernel Inception Distance: unbiased MMD^2 between synthetic and real features with the "
               "cubic polynomial kernel (0: same distribution); unbiased at any sample size, so suited "
               "to ~100 images per class. CI: bootstrap over both sets.",
        "fd": "Frechet distance between Gaussians fitted to the two sets (FID's formula); reported only "
              "when both sets have more images than feature dimensions, otherwise null.",
        "precision": "Share of synthetic images inside the real images' k-NN balls (fidelity).",
        "recall": "Share of real images inside the synthetic images' k-NN balls (diversity).",
        "density": "Mean number of real k-NN balls containing each synthetic image, over k (1: as "
                   "dense as the real data).",
        "coverage": "Share of real images whose k-NN ball holds at least one synthetic image.",
        "vendi_ratio": "Vendi score (exp of the entropy of the cosine-similarity matrix's eigenvalues / n: "
                       "the effective number of distinct images) of the synthetic set over the real "
                       "images' own, on equal sample sizes: the mean over half-samples (1: as diverse "
                       "as the real data).",
        "memorisation_rate": "Share of synthetic images closer to some train_real or generation-input "
                             "image than the stated percentile of real images' distances to their "
                             "nearest other real image (copies and near-copies).",
        "edit_strength": "Mean distance of each synthetic image to the image named by its source_id "
                         "(its generation input or real twin); null when no source is known.",
    },
    "ci_note": "k-NN radii and the memorisation threshold are fixed from the full sets; a bootstrap "
               "draw resamples the images scored against them.",
}

# ----------------------------------------------------------------------------------------------
# Protocols (recipes are data)
# ----------------------------------------------------------------------------------------------

PROTOCOLS: dict[str, dict[str, Any]] = {
    "linear-probe": {
        "ranking": True,
        "description": (
            "Frozen backbone; L2-normalised cached features; multinomial logistic regression in torch "
            "(L-BFGS, soft-label cross-entropy, class-balanced sample weights); the L2 strength C is "
            "chosen from a fixed grid by stratified k-fold cross-validation on the run's own training set, "
            "each scene (a real image and the synthetic images made from it or its twin) kept in one fold."
        ),
        "C_grid": [0.01, 0.1, 1.0, 10.0, 100.0],
        "cv_folds": 5,
        "max_iter": 200,
        "class_balance": True,
        "normalise_features": True,
    },
    "fine-tune": {
        "ranking": False,
        "description": (
            "End-to-end training of backbone + linear head with AdamW and a cosine schedule; a fixed "
            "number of images seen whatever the training-set size (equal compute across settings); "
            "classic augmentation on the fly; autocast on GPU."
        ),
        "images_seen": 24000,
        "batch_size": 64,
        "lr_backbone": 1e-5,
        "lr_head": 1e-3,
        "weight_decay": 0.05,
        "warmup_fraction": 0.05,
        # Classic augmentation on the fly. No hue jitter: colour is evidence here (burn scars,
        # flood water, lava), and hue shifts would blur the classes.
        "augmentation": {
            "crop_scale": [0.6, 1.0],
            "hflip": 0.5,
            "vflip": 0.5,
            "rot90": True,
            "brightness": 0.2,
            "contrast": 0.2,
            "saturation": 0.2,
            "hue": 0.0,
        },
    },
    "zero-shot": {
        "ranking": False,
        "description": "CLIP-family text prompts per class, no training: a reference row.",
        "templates": list(ZERO_SHOT_TEMPLATES),
    },
    "checkpoint": {
        "ranking": False,
        "description": "A submitted model checkpoint (safetensors + model.yaml) scored directly on the test split.",
    },
}

DEFAULT_PROTOCOL = "linear-probe"

#: Leaderboard boards (docs/LEADERBOARD.md).
BOARDS: dict[str, dict[str, Any]] = {
    "augment": {
        "title": "Augment",
        "description": "Mean difference in macro-F1 of mixed@k over real-only (paired by backbone and seed), across ratios.",
        "settings": [f"mixed@{k}" for k in RATIOS],
        "metric": "delta_macro_f1",
    },
    "replace": {
        "title": "Replace",
        "description": "Macro-F1 of classifiers trained on synthetic images alone (classification accuracy score).",
        "settings": [f"synthetic@{k}" for k in RATIOS],
        "metric": "macro_f1",
    },
    "models": {
        "title": "Models",
        "description": "Submitted model checkpoints scored directly on the real test split.",
        "settings": ["checkpoint"],
        "metric": "macro_f1",
    },
}


def lookup(registry: dict[str, Any], name: str, what: str) -> Any:
    """registry[name], or a SynthbenchError listing the valid names (DataComp's habit)."""
    try:
        return registry[name]
    except KeyError:
        raise SynthbenchError(f"unknown {what} {name!r}; use one of: {', '.join(registry)}") from None


def default_settings(protocol: str | None = None) -> list[Setting]:
    """The settings a grid runs when none are named: all of them, less the learning curve for the
    protocols it is not run by default (LEARNING_CURVE["default_protocols"]), less the more-real
    control, which the grid adds itself on a task that has it (benchmark.more_real.settings_for)."""
    protocol = protocol or DEFAULT_PROTOCOL
    curve = protocol in LEARNING_CURVE["default_protocols"]
    return [s for s in SETTINGS.values() if (curve or not s.is_curve_point) and s.kind != "more-real"]


def parse_settings(names: Iterable[str] | None, protocol: str | None = None) -> list[Setting]:
    if not names:
        return default_settings(protocol)
    return [lookup(SETTINGS, name, "setting") for name in names]
