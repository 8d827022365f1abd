"""Pool validated runs into board entries with bootstrap CIs, and rank them.

Definitions (the methodology page prints them; tests check them on constructed records):

- A *view* is one board (Augment, Replace, Models) under one protocol and one backbone, or under
  the protocol's *suite* of backbones ("all"): the backbones on which every shipped baseline has
  results for that protocol (every submission, when there are no baselines). The headline view is
  the ranking protocol (benchmark.protocol.DEFAULT_PROTOCOL) over the suite.
- An entry's numbers pool every run of the board's settings present for it: all ratios, all seeds,
  all backbones of the view, as one list of prediction vectors. The CI is a two-level bootstrap
  (benchmark.metrics): each draw resamples the seeds (one seed draw shared by every ratio and
  backbone, matched by seed) and the test images, and averages the metric over that list with
  each run counted as often as its seed is drawn, so one CI covers test-set and retraining
  variation. The difference to real-only is paired: each run is matched with the `real` run of the
  same submission record (same backbone, same seed), with the same seed and image draws.
- Augment ranks by that mean Delta macro-F1 of mixed@k over real; Replace by the mean macro-F1 of
  synthetic@k; Models by the macro-F1 of the submitted checkpoints. An entry missing a ratio of the
  board or a backbone of the view, or whose ratios/backbones do not all have the same seeds (the
  run average would then weight them unequally), is shown but not ranked (its mean is over other
  conditions).
- The real-only row is the `real` setting of a reference record for each backbone (official runs
  first, then baselines, then by submission id); its Delta is 0 by definition. It is the zero line,
  not a competitor: it is not ranked, and is listed where its value lies.
- An entry with a record scored without the leakage gate (`leakage_checked` false or unknown) is
  "unchecked": shown, labelled, and never ranked on the board of a real task (on the procedural
  demo task it is only labelled). "official" = every record's maintainers' signature verifies.
- Verdict: "helps" when the Delta CI lies entirely above 0, "hurts" when entirely below 0, else
  "no significant effect".
- Rank (leaderboard.ranking.RANK_RULE): by the point estimate, with the central 95% of the entry's
  ranks over the paired bootstrap draws (the same seed and image draws for every entry) as its interval.
- Paired comparisons, listed beside the rank (`beaten_by`, `beats`): entry A is significantly
  better than B when the CI of their paired difference on the board's metric lies entirely above
  0. Two entries are matched cell by cell
  (protocol, backbone, ratio, seed; the real-only row's real run stands in every ratio's cell) on
  the cells they share; entries sharing no cell (the Models board: checkpoints against each other
  or against the real-only row) are compared as the difference of their means, each side with its
  own independent seed draw.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from benchmark.metrics import bootstrap_values, percentile_interval, seed_weights, weighted_mean
from benchmark.protocol import BOARDS, DEFAULT_PROTOCOL, PROTOCOLS, SETTINGS

from .ranking import rank_intervals, rank_label, ranking_order
from .tree import Record, Submission, Tree

log = logging.getLogger(__name__)

#: Boards whose entries are synthetic sets scored under a training protocol.
TRAINING_BOARDS = ("augment", "replace")
MODELS_BOARD = "models"
ZERO_SHOT_PROTOCOL = "zero-shot"
REAL = "real"
#: The view over the protocol's whole backbone suite.
ALL_BACKBONES = "all"
#: Protocol/backbone of the Models view (checkpoints are scored directly, whatever their architecture).
ANY = "*"

#: The metrics every estimate is computed for (one bootstrap gives both).
METRICS = ("accuracy", "macro_f1")

HELPS, HURTS, NO_EFFECT, REFERENCE = "helps", "hurts", "no significant effect", "reference"

#: (submission id, backbone, protocol, setting, seed): one run's prediction vector.
RunKey = tuple[str, str, str, str, int]
#: (protocol, backbone, ratio, seed): where two entries' runs are matched for a paired comparison.
Cell = tuple[str, str, int, int]

assert ZERO_SHOT_PROTOCOL in PROTOCOLS and MODELS_BOARD in BOARDS and REAL in SETTINGS


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its percentile-bootstrap CI (fractions, not percent)."""

    point: float
    lo: float
    hi: float

    def to_dict(self) -> dict[str, float | list[float]]:
        return {"point": self.point, "ci": [self.lo, self.hi]}


ZERO = Estimate(0.0, 0.0, 0.0)


def verdict(delta: Estimate | None) -> str:
    if delta is None:
        return ""
    if delta.lo > 0:
        return HELPS
    if delta.hi < 0:
        return HURTS
    return NO_EFFECT


@dataclass
class SettingStats:
    """One setting of one profile: pooled over seeds and the profile's backbones."""

    setting: str
    runs: list[RunKey]
    baseline: list[RunKey] | None  # the paired real runs (None for real and non-grid settings)
    accuracy: Estimate
    macro_f1: Estimate
    delta_accuracy: Estimate | None
    delta_macro_f1: Estimate | None
    per_class_f1: dict[str, float]  # mean over runs
    confusion: np.ndarray  # summed over runs, rows = true class
    n_synthetic_per_class: int

    @property
    def ratio(self) -> int:
        setting = SETTINGS.get(self.setting)
        return setting.ratio if setting else 0

    @property
    def seeds(self) -> list[int]:
        return sorted({key[4] for key in self.runs})

    def to_dict(self) -> dict:
        return {
            "setting": self.setting,
            "n_runs": len(self.runs),
            "seeds": self.seeds,
            "accuracy": self.accuracy.to_dict(),
            "macro_f1": self.macro_f1.to_dict(),
            "delta_accuracy": self.delta_accuracy.to_dict() if self.delta_accuracy else None,
            "delta_macro_f1": self.delta_macro_f1.to_dict() if self.delta_macro_f1 else None,
            "verdict": verdict(self.delta_macro_f1),
            "per_class_f1": self.per_class_f1,
        }


@dataclass
class Profile:
    """Every setting of one submission (or of the real-only reference) under a protocol and backbones."""

    submission_id: str | None  # None: the real-only reference
    protocol: str
    backbones: tuple[str, ...]
    settings: dict[str, SettingStats]


@dataclass
class Entry:
    """One row of a board view."""

    submission_id: str | None  # None: the real-only reference row
    name: str
    team: str
    track: str
    generator: str
    baseline: str | None
    is_reference: bool
    images_per_class: int | None
    images_per_class_note: str
    accuracy: Estimate
    macro_f1: Estimate
    delta_accuracy: Estimate | None
    delta_macro_f1: Estimate | None
    per_setting: dict[str, SettingStats]
    missing: list[str]
    status: str  # "official" | "self-reported"
    harness_versions: list[str]
    n_runs: int
    rank_metric: str
    rank: int | None = None
    rank_label: str = "—"
    #: The central 95% of the entry's ranks over the paired bootstrap draws (ranking.RANK_RULE).
    rank_interval: tuple[int, int] | None = None
    #: Where the unranked reference row sorts among the ranks (between the entries above and below it).
    sort_rank: float | None = None
    #: cell -> (run, the run it is paired with or None): the board metric's terms, for comparisons.
    cells: dict[Cell, tuple[RunKey, RunKey | None]] = field(default_factory=dict, repr=False)
    #: Names of the entries significantly better / worse than this one (paired comparisons).
    beaten_by: list[str] = field(default_factory=list)
    beats: list[str] = field(default_factory=list)
    #: A record of the entry was scored without the leakage gate (leakage_checked false or unknown).
    unchecked: bool = False
    #: Why a complete entry is still not ranked ("" when it is): unchecked on a real task's board.
    held_back: str = ""
    #: Replace: the effective real images of its largest synthetic@k (leaderboard.worth, recomputed).
    worth: dict | None = None
    worth_by_backbone: dict = field(default_factory=dict, repr=False)
    #: Augment: its Δ beside more-real@k's and their ratio, per ratio (leaderboard.worth).
    more_real: list = field(default_factory=list)

    @property
    def ranked(self) -> bool:
        return not self.missing and not self.held_back

    @property
    def verdict(self) -> str:
        return REFERENCE if self.is_reference else verdict(self.delta_macro_f1)

    @property
    def score(self) -> Estimate:
        return getattr(self, self.rank_metric)

    def to_dict(self) -> dict:
        return {
            "rank": self.rank,
            "rank_label": self.rank_label,
            "rank_interval": list(self.rank_interval) if self.rank_interval else None,
            "ranked": self.ranked,
            "significantly_better": self.beaten_by,
            "significantly_worse": self.beats,
            "submission": self.submission_id,
            "name": self.name,
            "team": self.team,
            "track": self.track,
            "generator": self.generator,
            "baseline": self.baseline,
            "is_reference": self.is_reference,
            "images_per_class": self.images_per_class,
            "accuracy": self.accuracy.to_dict(),
            "macro_f1": self.macro_f1.to_dict(),
            "delta_accuracy": self.delta_accuracy.to_dict() if self.delta_accuracy else None,
            "delta_macro_f1": self.delta_macro_f1.to_dict() if self.delta_macro_f1 else None,
            "verdict": self.verdict,
            "per_setting": {name: stats.to_dict() for name, stats in self.per_setting.items()},
            "missing": self.missing,
            "status": self.status,
            "leakage_checked": not self.unchecked,
            "held_back": self.held_back or None,
            "harness_versions": self.harness_versions,
            "n_runs": self.n_runs,
            "effective_real": [
                {key: row[key] for key in ("backbone", "setting", "synthetic_per_class", "estimate", "ci", "censored",
                                           "ci_censored", "text")} for row in self.worth["rows"]
            ] if self.worth else None,
            "more_real": [
                {"ratio": row["ratio"], "delta_macro_f1": row["delta"].to_dict(), "more_real_delta_macro_f1": row["more_real"].to_dict(),
                 "share": row["share"], "share_note": row["note"]} for row in self.more_real
            ] or None,
        }


@dataclass
class BoardView:
    """One board under one protocol and one backbone (or the suite), its entries in rank order."""

    board: str
    protocol: str
    backbone: str
    backbones: list[str]
    headline: bool
    entries: list[Entry]
    notes: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.board}--{self.protocol}--{self.backbone}".replace("*", "any")

    @property
    def title(self) -> str:
        return BOARDS[self.board]["title"]

    def to_dict(self) -> dict:
        return {
            "board": self.board,
            "protocol": self.protocol,
            "backbone": self.backbone,
            "backbones": self.backbones,
            "headline": self.headline,
            "rank_metric": BOARDS[self.board]["metric"],
            "notes": self.notes,
            "entries": [entry.to_dict() for entry in self.entries],
        }


@dataclass
class Leaderboard:
    """Everything the site shows, computed once from a validated Tree."""

    tree: Tree
    views: list[BoardView]
    suites: dict[str, list[str]]
    profiles: dict[tuple[str | None, str, tuple[str, ...]], Profile]
    zero_shot: list[Entry]
    notes: list[str]
    #: The bootstrap behind every number (for paired comparisons the site adds, e.g. the compare page).
    estimator: "_Estimator | None" = None

    def headline(self, board: str) -> BoardView | None:
        views = [view for view in self.views if view.board == board]
        return next((view for view in views if view.headline), views[0] if views else None)

    def profiles_of(self, submission_id: str | None) -> list[Profile]:
        return [profile for (sub, _, _), profile in self.profiles.items() if sub == submission_id]

    def entries_of(self, submission_id: str) -> list[tuple[BoardView, Entry]]:
        return [(view, entry) for view in self.views for entry in view.entries if entry.submission_id == submission_id]


class _Estimator:
    """Bootstrap CIs over run keys (benchmark.metrics, two-level), memoised.

    Each run's per-draw metric values are computed once (they do not depend on the other runs of a
    list), so views, pooled lists and pairwise comparisons only combine cached columns.
    """

    def __init__(self, tree: Tree):
        assert tree.test_labels is not None
        self.labels = tree.test_labels
        self.n_classes = len(tree.classes)
        self._submissions = {submission.id: submission for submission in tree.submissions}
        self._memo: dict[tuple, Estimate] = {}
        self._values: dict[RunKey, dict[str, tuple[float, np.ndarray]]] = {}

    def record(self, submission_id: str, backbone: str, protocol: str) -> Record:
        return self._submissions[submission_id].records[(backbone, protocol)]

    def predictions(self, key: RunKey) -> np.ndarray:
        submission_id, backbone, protocol, setting, seed = key
        return self.record(submission_id, backbone, protocol).predictions(setting, seed)

    def run(self, key: RunKey) -> dict:
        submission_id, backbone, protocol, setting, seed = key
        return self.record(submission_id, backbone, protocol).runs[(setting, seed)]

    def values(self, metric: str, keys: Sequence[RunKey]) -> tuple[np.ndarray, np.ndarray]:
        """(observed (V,), per-draw (resamples, V)) of `metric` for each run, image draws only."""
        missing = [key for key in dict.fromkeys(keys) if key not in self._values]
        if missing:
            computed = bootstrap_values(self.labels, [self.predictions(key) for key in missing], self.n_classes, metrics=METRICS)
            for i, key in enumerate(missing):
                self._values[key] = {name: (points[i], draws[:, i]) for name, (points, draws) in computed.items()}
        columns = [self._values[key][metric] for key in keys]
        return np.array([point for point, _ in columns]), np.stack([draws for _, draws in columns], axis=1)

    def estimate(
        self,
        metric: str,
        runs: Sequence[RunKey],
        baseline: Sequence[RunKey] | None = None,
        seeds: Sequence[int] | None = None,
    ) -> Estimate:
        """Mean `metric` over `runs` (minus the mean over the paired `baseline`), two-level CI.

        Run i (and baseline i) counts as often as seeds[i] is drawn; `seeds` defaults to the runs'
        own seeds. The same arithmetic as benchmark.metrics.bootstrap_cis(..., seeds=...).
        """
        seeds = [key[4] for key in runs] if seeds is None else list(seeds)
        memo_key = (metric, tuple(runs), tuple(baseline) if baseline is not None else None, tuple(seeds))
        if memo_key not in self._memo:
            weights = seed_weights(seeds)
            point, draws = weighted_mean(*self.values(metric, runs), weights)
            if baseline is not None:
                base_point, base_draws = weighted_mean(*self.values(metric, baseline), weights)
                point, draws = point - base_point, draws - base_draws
            self._memo[memo_key] = Estimate(*percentile_interval(point, draws))
        return self._memo[memo_key]

    def _cell_terms(self, metric: str, entry: "Entry", cells: Sequence[Cell]) -> tuple[np.ndarray, np.ndarray]:
        """Per cell: metric(run) - metric(paired run) (or metric(run) alone), observed and per draw."""
        points, draws = self.values(metric, [entry.cells[cell][0] for cell in cells])
        minus = [entry.cells[cell][1] for cell in cells]
        if any(key is not None for key in minus):
            if not all(key is not None for key in minus):
                raise ValueError(f"{entry.name}: some cells are paired with a real run and others not")
            minus_points, minus_draws = self.values(metric, minus)
            points, draws = points - minus_points, draws - minus_draws
        return points, draws

    def score_draws(self, metric: str, entry: "Entry") -> np.ndarray:
        """(resamples,) the entry's board value in each bootstrap draw: the mean of its cell terms
        with the shared seed draws (the same draws for every entry, so ranks per draw are paired)."""
        cells = sorted(entry.cells)
        _, draws = weighted_mean(*self._cell_terms(metric, entry, cells), seed_weights([c[3] for c in cells]))
        return draws

    def compare(self, metric: str, a: "Entry", b: "Entry", ratio: int | None = None) -> Estimate:
        """The paired difference a - b on `metric` over the cells both have (see the module docstring),
        or over those of one `ratio` only."""
        common = sorted(c for c in set(a.cells) & set(b.cells) if ratio is None or c[2] == ratio)
        if common:
            a_points, a_draws = self._cell_terms(metric, a, common)
            b_points, b_draws = self._cell_terms(metric, b, common)
            point, draws = weighted_mean(a_points - b_points, a_draws - b_draws, seed_weights([c[3] for c in common]))
        else:
            sides = []
            for stream, entry in enumerate((a, b)):
                cells = sorted(entry.cells)
                sides.append(weighted_mean(*self._cell_terms(metric, entry, cells), seed_weights([c[3] for c in cells], stream=stream)))
            point, draws = sides[0][0] - sides[1][0], sides[0][1] - sides[1][1]
        return Estimate(*percentile_interval(point, draws))


def _preference(submission: Submission, record: Record) -> tuple:
    """Which record supplies a reference row: official runs first, then baselines, then by id."""
    return (not record.official, submission.baseline is None, submission.id)


def _order_settings(names: Iterable[str]) -> list[str]:
    order = {name: i for i, name in enumerate(SETTINGS)}
    return sorted(set(names), key=lambda name: (order.get(name, len(order)), name))


def _order_protocols(names: Iterable[str]) -> list[str]:
    order = {name: i for i, name in enumerate(PROTOCOLS)}
    return sorted(set(names), key=lambda name: (order.get(name, len(order)), name))


def build_leaderboard(tree: Tree) -> Leaderboard:
    """Aggregate a verified tree into ranked board views.

    The tree's records are the ones its checks kept (leaderboard.tree); its problems are listed
    on the site, not fatal here. An entry with a record scored without the leakage gate is
    "unchecked": never ranked on the board of a real task (on the demo task it is only labelled).
    """
    return _Builder(tree).build()


#: Why an unchecked entry is not ranked on a real task's board.
UNCHECKED_NOTE = "scored without the leakage gate (unchecked)"


def _hold_back(entry: "Entry", records: Sequence[Record], is_demo: bool) -> "Entry":
    entry.unchecked = any(not r.leakage_checked for r in records)
    if entry.unchecked and not is_demo:
        entry.held_back = UNCHECKED_NOTE
    return entry


class _Builder:
    def __init__(self, tree: Tree):
        self.tree = tree
        self.classes = tree.classes
        self.estimator = _Estimator(tree) if tree.test_labels is not None else None
        self.profiles: dict[tuple[str | None, str, tuple[str, ...]], Profile] = {}
        self.notes: list[str] = []
        grid_settings = set(SETTINGS)
        models_settings = set(BOARDS[MODELS_BOARD]["settings"])
        self.training_protocols = _order_protocols(
            r.protocol
            for r in tree.records()
            if r.protocol != ZERO_SHOT_PROTOCOL and grid_settings & set(r.settings)
        )
        self.models_records = [
            (s, r) for s in tree.submissions for r in s.records.values() if models_settings & set(r.settings)
        ]
        self.zero_shot_records = [
            (s, r) for s in tree.submissions for r in s.records.values() if r.protocol == ZERO_SHOT_PROTOCOL
        ]

    # -- suites and references ------------------------------------------------------------------

    def suite(self, protocol: str) -> list[str]:
        """Backbones every baseline (or, with no baselines, every submission) has `protocol` results on."""
        with_protocol = [s for s in self.tree.submissions if s.backbones(protocol)]
        baselines = [s for s in with_protocol if s.baseline]
        sets = [s.backbones(protocol) for s in (baselines or with_protocol)]
        return sorted(set.intersection(*sets)) if sets else []

    def reference_source(self, backbone: str, protocol: str) -> tuple[Submission, Record] | None:
        candidates = [
            (s, s.records[(backbone, protocol)])
            for s in self.tree.submissions
            if (backbone, protocol) in s.records and s.records[(backbone, protocol)].seeds(REAL)
        ]
        return min(candidates, key=lambda pair: _preference(*pair)) if candidates else None

    def check_real_agreement(self, backbone: str, protocol: str, reference: Submission) -> None:
        """Note when records disagree on the real-only predictions (non-deterministic training)."""
        ref = reference.records[(backbone, protocol)]
        differing = sorted(
            s.id
            for s in self.tree.submissions
            if (backbone, protocol) in s.records and s.id != reference.id
            and any(
                seed in ref.seeds(REAL)
                and not np.array_equal(s.records[(backbone, protocol)].predictions(REAL, seed), ref.predictions(REAL, seed))
                for seed in s.records[(backbone, protocol)].seeds(REAL)
            )
        )
        if differing:
            self.notes.append(
                f"{protocol} / {backbone}: the real-only predictions of {', '.join(differing)} differ from "
                f"{reference.id}'s (non-deterministic training?). The real-only row uses {reference.id}'s; "
                "each submission's Delta is paired with its own real runs."
            )

    # -- profiles -------------------------------------------------------------------------------

    def profile(
        self, sources: Sequence[tuple[str, str]], protocol: str, *, submission_id: str | None, settings: Iterable[str] | None = None
    ) -> Profile:
        """Stats per setting pooled over `sources` ((submission id, backbone) pairs) and their seeds.

        Only settings present for every source are included, so each pooled list is balanced
        across backbones.
        """
        backbones = tuple(backbone for _, backbone in sources)
        memo_key = (submission_id, protocol, backbones)
        if memo_key in self.profiles and settings is None:
            return self.profiles[memo_key]
        records = [self.estimator.record(sub, backbone, protocol) for sub, backbone in sources]
        common = set.intersection(*(set(r.settings) for r in records))
        if settings is not None:
            common &= set(settings)
        stats: dict[str, SettingStats] = {}
        for setting in _order_settings(common):
            runs = [
                (sub, backbone, protocol, setting, seed)
                for (sub, backbone), record in zip(sources, records)
                for seed in record.seeds(setting)
            ]
            # Grid settings other than real are paired with the real run of the same record and seed.
            paired = setting in SETTINGS and SETTINGS[setting].kind != REAL
            baseline = [key[:3] + (REAL, key[4]) for key in runs] if paired else None
            stats[setting] = self.setting_stats(setting, runs, baseline)
        profile = Profile(submission_id, protocol, backbones, stats)
        if settings is None:
            self.profiles[memo_key] = profile
        return profile

    def setting_stats(self, setting: str, runs: list[RunKey], baseline: list[RunKey] | None) -> SettingStats:
        est = self.estimator
        run_dicts = [est.run(key) for key in runs]
        per_class = {
            name: float(np.mean([run["metrics"]["per_class"][name]["f1"] for run in run_dicts])) for name in self.classes
        }
        confusion = np.sum([np.asarray(run["metrics"]["confusion_matrix"], dtype=np.int64) for run in run_dicts], axis=0)
        return SettingStats(
            setting=setting,
            runs=runs,
            baseline=baseline,
            accuracy=est.estimate("accuracy", runs),
            macro_f1=est.estimate("macro_f1", runs),
            delta_accuracy=est.estimate("accuracy", runs, baseline) if baseline else None,
            delta_macro_f1=est.estimate("macro_f1", runs, baseline) if baseline else None,
            per_class_f1=per_class,
            confusion=confusion,
            n_synthetic_per_class=max(int(run.get("n_synthetic_per_class") or 0) for run in run_dicts),
        )

    # -- entries --------------------------------------------------------------------------------

    def submission_columns(self, submission: Submission) -> dict:
        generator = submission.generator
        counts = submission.images_per_class(self.classes)
        if counts:
            images, note = min(counts.values()), ", ".join(f"{name}: {n}" for name, n in counts.items())
        else:
            pool = max(
                (int(run.get("n_synthetic_per_class") or 0) for r in submission.records.values() for run in r.data["runs"]),
                default=0,
            )
            images, note = (pool or None), "no metadata.jsonl: the largest number a run used"
        return {
            "submission_id": submission.id,
            "name": submission.id,
            "team": submission.team,
            "track": submission.track,
            "generator": " ".join(part for part in (generator["name"], generator["version"]) if part),
            "baseline": submission.baseline,
            "is_reference": False,
            "images_per_class": images,
            "images_per_class_note": note,
        }

    @staticmethod
    def reference_columns() -> dict:
        return {
            "submission_id": None,
            "name": "real-only",
            "team": "",
            "track": REFERENCE,
            "generator": "",
            "baseline": REAL,
            "is_reference": True,
            "images_per_class": None,
            "images_per_class_note": "",
        }

    def pooled_entry(
        self, board: str, profile: Profile, columns: dict, records: list[Record], missing_backbones: list[str]
    ) -> Entry | None:
        board_settings = BOARDS[board]["settings"]
        available = [s for s in board_settings if s in profile.settings]
        if not available:
            return None
        runs = [key for s in available for key in profile.settings[s].runs]
        baseline = [key for s in available for key in (profile.settings[s].baseline or [])]
        est = self.estimator
        paired = BOARDS[board]["metric"].startswith("delta_")
        cells = {}
        for s in available:
            stats = profile.settings[s]
            for i, key in enumerate(stats.runs):
                minus = stats.baseline[i] if paired and stats.baseline else None
                cells[(key[2], key[1], SETTINGS[s].ratio if s in SETTINGS else 0, key[4])] = (key, minus)
        entry = Entry(
            **columns,
            accuracy=est.estimate("accuracy", runs),
            macro_f1=est.estimate("macro_f1", runs),
            delta_accuracy=est.estimate("accuracy", runs, baseline) if baseline else None,
            delta_macro_f1=est.estimate("macro_f1", runs, baseline) if baseline else None,
            per_setting={s: profile.settings[s] for s in available},
            missing=[s for s in board_settings if s not in available]
            + [f"backbone {b}" for b in missing_backbones]
            + _unbalanced_seeds(profile, available),
            status=_status(records),
            harness_versions=sorted({r.harness_version for r in records}),
            n_runs=len(runs),
            rank_metric=BOARDS[board]["metric"],
            cells=cells,
        )
        return _hold_back(entry, records, self.tree.is_demo)

    def reference_entry(self, board: str, profile: Profile, records: list[Record]) -> Entry:
        real = profile.settings[REAL]
        # The real run stands in every ratio's cell; on a Delta board it is paired with itself (0).
        paired = BOARDS[board]["metric"].startswith("delta_")
        ratios = sorted({SETTINGS[s].ratio if s in SETTINGS else 0 for s in BOARDS[board]["settings"]})
        cells = {
            (key[2], key[1], ratio, key[4]): (key, key if paired else None) for key in real.runs for ratio in ratios
        }
        return Entry(
            **self.reference_columns(),
            accuracy=real.accuracy,
            macro_f1=real.macro_f1,
            delta_accuracy=ZERO,
            delta_macro_f1=ZERO,
            per_setting={REAL: real},
            missing=[],
            status=_status(records),
            harness_versions=sorted({r.harness_version for r in records}),
            n_runs=len(real.runs),
            rank_metric=BOARDS[board]["metric"],
            cells=cells,
        )

    # -- views ----------------------------------------------------------------------------------

    def training_view(self, board: str, protocol: str, backbone: str, backbones: list[str], headline: bool) -> BoardView:
        view = BoardView(board, protocol, backbone, backbones, headline, entries=[])
        references = [self.reference_source(b, protocol) for b in backbones]
        if all(references):
            sources = [(sub.id, b) for (sub, _), b in zip(references, backbones)]
            profile = self.profile(sources, protocol, submission_id=None, settings=[REAL])
            self.profiles[(None, protocol, tuple(backbones))] = profile
            view.entries.append(self.reference_entry(board, profile, [r for _, r in references]))
        else:
            view.notes.append("no real-only runs for " + ", ".join(b for b, ref in zip(backbones, references) if not ref))
        for submission in self.tree.submissions:
            have = [b for b in backbones if (b, protocol) in submission.records]
            if not have:
                continue
            profile = self.profile([(submission.id, b) for b in have], protocol, submission_id=submission.id)
            entry = self.pooled_entry(
                board,
                profile,
                self.submission_columns(submission),
                [submission.records[(b, protocol)] for b in have],
                [b for b in backbones if b not in have],
            )
            if entry is not None:
                view.entries.append(entry)
        view.entries = rank_entries(view.entries, self.estimator)
        return view

    def models_view(self, reference: Profile | None) -> BoardView:
        view = BoardView(MODELS_BOARD, ANY, ANY, sorted({r.backbone for _, r in self.models_records}), True, entries=[])
        settings = BOARDS[MODELS_BOARD]["settings"]
        reference_runs = reference.settings[REAL].runs if reference else None
        if reference:
            records = [self.estimator.record(*source) for source in sorted({key[:3] for key in reference_runs})]
            view.entries.append(self.reference_entry(MODELS_BOARD, reference, records))
            view.notes.append(
                f"Delta is against the real-only row: {reference.protocol} over {', '.join(reference.backbones)}."
            )
        by_submission: dict[str, list[Record]] = {}
        for submission, record in self.models_records:
            by_submission.setdefault(submission.id, []).append(record)
        for submission_id, records in by_submission.items():
            submission = self.tree.submission(submission_id)
            runs = [
                (submission_id, r.backbone, r.protocol, s, seed) for r in records for s in r.settings if s in settings for seed in r.seeds(s)
            ]
            paired_runs = paired_reference = ref_seeds = None
            if reference_runs:
                # Unpaired by construction (no seeds in common): pair every checkpoint run with every
                # reference run, so the mean difference is mean(checkpoint) - mean(real-only); the
                # real-only seeds are resampled (a checkpoint is one fixed model).
                paired_runs = [key for key in runs for _ in reference_runs]
                paired_reference = [ref for _ in runs for ref in reference_runs]
                ref_seeds = [ref[4] for ref in paired_reference]
            est = self.estimator
            stats = self.setting_stats(settings[0], runs, None)
            entry = Entry(
                **self.submission_columns(submission),
                accuracy=stats.accuracy,
                macro_f1=stats.macro_f1,
                delta_accuracy=est.estimate("accuracy", paired_runs, paired_reference, ref_seeds) if paired_runs else None,
                delta_macro_f1=est.estimate("macro_f1", paired_runs, paired_reference, ref_seeds) if paired_runs else None,
                    per_setting={settings[0]: stats},
                missing=[],
                status=_status(records),
                harness_versions=sorted({r.harness_version for r in records}),
                n_runs=len(runs),
                rank_metric=BOARDS[MODELS_BOARD]["metric"],
                cells={(key[2], key[1], 0, key[4]): (key, None) for key in runs},
            )
            entry.images_per_class = None
            view.entries.append(_hold_back(entry, records, self.tree.is_demo))
        view.entries = rank_entries(view.entries, self.estimator)
        return view

    def zero_shot_entries(self) -> list[Entry]:
        entries = []
        for backbone in sorted({r.backbone for _, r in self.zero_shot_records}):
            submission, record = min(
                ((s, r) for s, r in self.zero_shot_records if r.backbone == backbone), key=lambda pair: _preference(*pair)
            )
            runs = [(submission.id, backbone, record.protocol, s, seed) for s in record.settings for seed in record.seeds(s)]
            stats = self.setting_stats(record.settings[0], runs, None)
            entry = Entry(
                **self.reference_columns(),
                accuracy=stats.accuracy,
                macro_f1=stats.macro_f1,
                delta_accuracy=None,
                delta_macro_f1=None,
                    per_setting={},
                missing=[],
                status=_status([record]),
                harness_versions=[record.harness_version],
                n_runs=len(runs),
                rank_metric="macro_f1",
            )
            entry.name = f"zero-shot ({backbone})"
            entries.append(entry)
        return entries

    def view_order(self, view: BoardView) -> tuple:
        protocols = self.training_protocols
        return (
            list(BOARDS).index(view.board),
            protocols.index(view.protocol) if view.protocol in protocols else -1,
            view.backbone != ALL_BACKBONES,
            view.backbone,
        )

    def build(self) -> Leaderboard:
        views: list[BoardView] = []
        suites: dict[str, list[str]] = {}
        zero_shot: list[Entry] = []
        if self.estimator is None:  # no records at all: an empty board
            return Leaderboard(self.tree, views, suites, self.profiles, zero_shot, self.notes)
        for protocol in self.training_protocols:
            suites[protocol] = self.suite(protocol)
            all_backbones = sorted({b for s in self.tree.submissions for b in s.backbones(protocol)})
            for backbone in all_backbones:
                reference = self.reference_source(backbone, protocol)
                if reference:
                    self.check_real_agreement(backbone, protocol, reference[0])
            if not suites[protocol]:
                self.notes.append(
                    f"{protocol}: no backbone is shared by every "
                    f"{'baseline' if any(s.baseline for s in self.tree.submissions) else 'submission'}; "
                    "only per-backbone views are shown"
                )
            for board in TRAINING_BOARDS:
                if suites[protocol]:
                    views.append(
                        self.training_view(board, protocol, ALL_BACKBONES, suites[protocol], protocol == DEFAULT_PROTOCOL)
                    )
                for backbone in all_backbones:
                    views.append(self.training_view(board, protocol, backbone, [backbone], False))
        if self.models_records:
            headline_protocol = DEFAULT_PROTOCOL if suites.get(DEFAULT_PROTOCOL) else next(
                (p for p in self.training_protocols if suites[p]), None
            )
            reference = self.profiles.get((None, headline_protocol, tuple(suites.get(headline_protocol, []))))
            views.append(self.models_view(reference))
        zero_shot = self.zero_shot_entries()
        views.sort(key=self.view_order)
        return Leaderboard(self.tree, views, suites, self.profiles, zero_shot, self.notes, self.estimator)


def _unbalanced_seeds(profile: Profile, settings: Sequence[str]) -> list[str]:
    """The seeds some (setting, backbone) cells of an entry lack while others have them.

    The pooled estimate averages runs, so unequal seed counts would weight ratios (or backbones)
    unequally and the number would not be the documented mean over ratios: such an entry is
    incomplete, like one missing a ratio.
    """
    cells: dict[tuple[str, str], set[int]] = {}
    for setting in settings:
        for _, backbone, _, _, seed in profile.settings[setting].runs:
            cells.setdefault((setting, backbone), set()).add(seed)
    every = set().union(*cells.values()) if cells else set()
    several_backbones = len(profile.backbones) > 1
    missing = []
    for (setting, backbone), seeds in cells.items():
        lacking = sorted(every - seeds)
        if lacking:
            where = f" on {backbone}" if several_backbones else ""
            missing.append(f"{setting} seed{'s' if len(lacking) > 1 else ''} {', '.join(map(str, lacking))}{where}")
    return missing


def _status(records: Sequence[Record]) -> str:
    return "official" if records and all(r.official for r in records) else "self-reported"


def rank_entries(entries: list[Entry], estimator: _Estimator) -> list[Entry]:
    """Rank the complete entries by their board metric with a bootstrap rank interval (ranking.RANK_RULE),
    list each one's significantly better and worse entries (paired comparisons), and place the
    real-only reference where its value lies (the zero line of a Δ board); incomplete entries follow."""
    compared = [entry for entry in entries if entry.ranked]
    unranked = [entry for entry in entries if not entry.ranked]
    better = [[False] * len(compared) for _ in compared]
    # Each pair once, in name order, so that the result does not depend on the listing order.
    order = sorted(range(len(compared)), key=lambda i: compared[i].name)
    for x, i in enumerate(order):
        for j in order[x + 1 :]:
            a, b = compared[i], compared[j]
            difference = estimator.compare(_base_metric(a.rank_metric), a, b)
            better[i][j], better[j][i] = difference.lo > 0, difference.hi < 0
    for i, entry in enumerate(compared):
        entry.beaten_by = sorted(compared[j].name for j in range(len(compared)) if better[j][i])
        entry.beats = sorted(compared[j].name for j in range(len(compared)) if better[i][j])
    competitors = [entry for entry in compared if not entry.is_reference]
    if competitors:
        metric = _base_metric(competitors[0].rank_metric)
        draws = np.stack([estimator.score_draws(metric, entry) for entry in competitors], axis=1)
        for entry, (rank, lo, hi) in zip(competitors, rank_intervals([e.score.point for e in competitors], draws)):
            entry.rank, entry.rank_interval, entry.rank_label = rank, (lo, hi), rank_label(rank, lo, hi)
    display = [competitors[i] for i in ranking_order(
        [e.score.point for e in competitors], [e.rank for e in competitors], [e.name for e in competitors])]
    for reference in (entry for entry in compared if entry.is_reference):
        reference.rank, reference.rank_label = None, "reference"
        at = next((i for i, e in enumerate(display) if e.score.point < reference.score.point), len(display))
        reference.sort_rank = (display[at - 1].rank if at else 0) + 0.5  # sorts by rank to where it is listed
        display.insert(at, reference)
    unranked.sort(key=lambda entry: (-entry.score.point, entry.name))
    for entry in unranked:
        entry.rank, entry.rank_label = None, "—"
    return display + unranked


def _base_metric(rank_metric: str) -> str:
    """The per-run metric behind a board metric ("delta_macro_f1" -> "macro_f1")."""
    return rank_metric[len("delta_"):] if rank_metric.startswith("delta_") else rank_metric
