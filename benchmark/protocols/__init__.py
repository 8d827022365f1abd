"""Protocols: how a classifier is obtained from one run's training set, behind one interface.

`get_runner(name)` returns the runner of a protocol named in `benchmark.protocol.PROTOCOLS`. The
grid only ever talks to this interface:

    runner.name              the protocol name
    runner.needs_backbone    the grid loads the backbone once (linear-probe, zero-shot)
    runner.needs_features    the grid encodes every needed image once, up front, into the cache
    runner.fixed_setting     None for protocols that train on each setting; otherwise the one
                             setting name it is scored as ("zero-shot", "checkpoint"), once
    runner.params()          the recipe, recorded in the result (and part of its identity)
    runner.fit_predict(train, test, *, seed, context) -> (test predictions, run params)

Runners of harness-A's protocols (fine-tune, zero-shot, checkpoint) import their module when first
used, so a missing or broken piece fails with a message naming it, not at import time.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import HarnessError, SynthbenchError
from ..protocol import PROTOCOLS, lookup
from .data import TestData, TrainData

#: Recipe keys that describe a protocol but do not change its numbers (left out of params()).
_DESCRIPTIVE_KEYS = ("description", "ranking")


@dataclass
class RunContext:
    """What a runner may need beyond its training and test data (filled in by the grid)."""

    classes: list[str]
    device: Any = "cpu"
    backbone_name: str | None = None
    weights: str | None = None
    image_size: int | None = None
    random_init_config: dict | None = None
    backbone: Any = None  # a loaded benchmark.backbones.Backbone when runner.needs_backbone
    cache: Any = None  # the benchmark.features.FeatureCache
    features: Callable[[Sequence[Any]], np.ndarray] | None = None  # ImageRefs -> (N, D) cached features
    features_prepared: bool = False  # `features` went through the runner's prepare_features
    submission_path: Path | None = None
    progress: bool = True
    num_workers: int = 0


def _import(module: str, attribute: str, protocol: str):
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as exc:
        raise HarnessError(
            f"protocol {protocol!r} needs {module}.{attribute}, which cannot be loaded: {exc}"
        ) from exc


class ProtocolRunner:
    """Base of every runner: the recipe from PROTOCOLS, optionally overridden (tests, ablations)."""

    name: str = ""
    needs_backbone = False
    needs_features = False
    fixed_setting: str | None = None
    #: Whether independent runs may be fitted side by side in threads on the CPU (each
    #: single-threaded; a run's result does not depend on what runs beside it).
    fits_in_threads = False

    def __init__(self, overrides: dict[str, Any] | None = None, *, device: Any = "cpu"):
        recipe = dict(PROTOCOLS[self.name])
        unknown = set(overrides or {}) - set(recipe)
        if unknown:
            raise HarnessError(
                f"protocol {self.name!r} has no parameter(s) {', '.join(sorted(unknown))}; "
                f"it has: {', '.join(k for k in recipe if k not in _DESCRIPTIVE_KEYS)}"
            )
        recipe.update(overrides or {})
        self.recipe = recipe
        self.device = device

    def params(self) -> dict[str, Any]:
        return {k: v for k, v in self.recipe.items() if k not in _DESCRIPTIVE_KEYS}

    def fit_predict(
        self, train: TrainData | None, test: TestData, *, seed: int, context: RunContext
    ) -> tuple[np.ndarray, dict[str, Any]]:
        raise NotImplementedError

    def fit_predict_many(
        self, trains: list[TrainData], test: TestData, *, seeds: list[int], context: RunContext
    ) -> list[tuple[np.ndarray, dict[str, Any]]]:
        """Several runs of one setting (one per seed); runners that batch them override this."""
        return [self.fit_predict(t, test, seed=s, context=context) for t, s in zip(trains, seeds)]

    def prepare_features(self, features: np.ndarray, reference_rows) -> np.ndarray:
        """Transform the grid's whole feature matrix once, before any run (default: as it is).

        `reference_rows` index the task's train_real images: a transform fitted on them is the
        same for every run and every submission of the task.
        """
        return features


class LinearProbeRunner(ProtocolRunner):
    """Linear probe on cached features (benchmark.protocols.linear_probe)."""

    name = "linear-probe"
    needs_backbone = True
    needs_features = True
    #: Its CPU fits run on one intra-op thread (`linear_probe.CPU_THREADS`): on a machine with
    #: more cores, the grid fits that many runs at once.
    fits_in_threads = True

    def __init__(self, overrides: dict[str, Any] | None = None, *, device: Any = "cpu"):
        super().__init__(overrides, device=device)
        from . import linear_probe

        self._module = linear_probe
        self.probe = linear_probe.LinearProbe(self.recipe, device=device)

    def params(self) -> dict[str, Any]:
        params = super().params()
        params.update(self.probe.solver_params())
        return params

    def fit_predict(self, train, test, *, seed, context):
        if train is None:
            raise HarnessError("linear-probe needs a training set")
        if context.features is None:
            raise HarnessError("linear-probe needs cached features (RunContext.features)")
        return self.probe.fit_predict_features(
            context.features(train.refs), train.targets, context.features(test.refs), seed=seed,
            prepared=context.features_prepared, groups=train.groups,
        )

    def prepare_features(self, features: np.ndarray, reference_rows) -> np.ndarray:
        return self.probe.prepare(features, reference_rows)

    #: None: train the seeds of a setting together exactly when running on a GPU (tests force it).
    seeds_together: bool | None = None

    @property
    def trains_seeds_together(self) -> bool:
        if self.seeds_together is not None:
            return self.seeds_together
        import torch

        return torch.device(self.device).type == "cuda"

    def fit_predict_many(self, trains, test, *, seeds, context):
        """Every training set at once (`linear_probe.select_C_and_fit_many`) on their union's rows."""
        if context.features is None or not context.features_prepared:
            return [self.fit_predict(t, test, seed=s, context=context) for t, s in zip(trains, seeds)]
        index: dict[tuple, int] = {}
        refs, targets, members = [], [], []
        for train in trains:
            rows, seen = [], {}
            for ref, target, synthetic in zip(train.refs, train.targets, train.is_synthetic):
                # the duplicate baseline may repeat an image: each repeat is its own row, as in a run
                occurrence = seen[(bool(synthetic), ref.sha256)] = seen.get((bool(synthetic), ref.sha256), -1) + 1
                key = (bool(synthetic), ref.sha256, occurrence)
                if key not in index:
                    index[key] = len(refs)
                    refs.append(ref)
                    targets.append(target)
                rows.append(index[key])
            members.append(np.asarray(rows, dtype=np.int64))
        groups = None if all(t.groups is None for t in trains) else [t.groups for t in trains]
        return self.probe.fit_predict_many(
            context.features(refs), np.stack(targets), members, context.features(test.refs), seeds=seeds,
            groups=groups,
        )


class FineTuneRunner(ProtocolRunner):
    """End-to-end fine-tuning (benchmark.protocols.fine_tune, harness-A)."""

    name = "fine-tune"

    def fit_predict(self, train, test, *, seed, context):
        if train is None:
            raise HarnessError("fine-tune needs a training set")
        fine_tune_predict = _import("benchmark.protocols.fine_tune", "fine_tune_predict", self.name)
        return fine_tune_predict(
            context.backbone_name,
            train,
            test,
            n_classes=len(context.classes),
            seed=seed,
            recipe=self.params(),
            device=context.device,
            weights=context.weights,
            image_size=context.image_size,
            random_init_config=context.random_init_config,
            progress=context.progress,
            num_workers=context.num_workers,
        )


class ZeroShotRunner(ProtocolRunner):
    """CLIP-family prompts, no training (benchmark.protocols.zero_shot, harness-A): one run."""

    name = "zero-shot"
    needs_backbone = True
    needs_features = True
    fixed_setting = "zero-shot"

    def fit_predict(self, train, test, *, seed, context):
        zero_shot_predict = _import("benchmark.protocols.zero_shot", "zero_shot_predict", self.name)
        return zero_shot_predict(
            context.backbone,
            context.cache,
            test,
            context.classes,
            self.recipe["templates"],
            num_workers=context.num_workers,
            progress=context.progress,
        )


class CheckpointRunner(ProtocolRunner):
    """A submitted checkpoint scored directly (benchmark.protocols.checkpoint, harness-A): one run."""

    name = "checkpoint"
    fixed_setting = "checkpoint"

    def fit_predict(self, train, test, *, seed, context):
        if context.submission_path is None:
            raise HarnessError("the checkpoint protocol needs the submission folder")
        score_checkpoint = _import("benchmark.protocols.checkpoint", "score_checkpoint", self.name)
        return score_checkpoint(
            context.submission_path,
            context.classes,
            test,
            context.device,
            num_workers=context.num_workers,
            progress=context.progress,
        )


#: Protocol name -> runner class (the keys are exactly those of PROTOCOLS).
RUNNERS: dict[str, type[ProtocolRunner]] = {
    runner.name: runner for runner in (LinearProbeRunner, FineTuneRunner, ZeroShotRunner, CheckpointRunner)
}
if set(RUNNERS) != set(PROTOCOLS):  # a protocol added to the registry without a runner is a bug
    raise RuntimeError(f"protocol runners {sorted(RUNNERS)} do not match PROTOCOLS {sorted(PROTOCOLS)}")


def get_runner(name: str, overrides: dict[str, Any] | None = None, *, device: Any = "cpu") -> ProtocolRunner:
    """The runner of protocol `name`, or a HarnessError listing the valid names."""
    try:
        runner_class = lookup(RUNNERS, name, "protocol")
    except SynthbenchError as exc:
        raise HarnessError(str(exc)) from None
    return runner_class(overrides, device=device)


__all__ = [
    "RUNNERS",
    "CheckpointRunner",
    "FineTuneRunner",
    "LinearProbeRunner",
    "ProtocolRunner",
    "RunContext",
    "TestData",
    "TrainData",
    "ZeroShotRunner",
    "get_runner",
]
