"""Build the static leaderboard site: validate -> aggregate -> plots + pages + JSON/CSV, written atomically.

    site/
      index.html                  the boards (filter by board, protocol, backbone, track; sortable)
      methodology.html            generated from benchmark.protocol: cannot drift from the code
      submissions/<id>/index.html one page per submission: metadata, samples, plots, every number + CI
      submissions/<id>/plots/     ratio curves, confusion matrices, per-class F1 (SVG + PNG)
      submissions/<id>/thumbs/    a few sample images, re-encoded as small PNG thumbnails
      plots/                      each board view's ranked quantity with CIs (static PNG/SVG for previews)
      static/                     leaderboard.css, leaderboard.js (local: works from file:// too)
      leaderboard.json            machine-readable boards (fractions, not percent)
      leaderboard.csv             one row per board view x entry (pandas)

The site is built in a temporary sibling folder and moved into place only when complete, so a
failed build leaves the previous site untouched. It only ever replaces a folder that holds a site
(marked by SITE_MARKER) or an empty one.

A bad entry never stops the build: the tree's checks (leaderboard.tree) leave it off the boards,
and the index lists it under "Not shown" with its file and the reason (as do the entry's own
page and leaderboard.json). Only `strict=True` refuses to publish a tree with any problem.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from benchmark import __version__
from benchmark.images import ImageDecodeError, open_rgb
from benchmark.io import atomic_directory, atomic_write_json
from benchmark.metrics import CI_METHOD, SCORING_VERSION, SEED_DRAW_SEED
from benchmark.protocol import (
    BOARDS,
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    CI_LEVEL,
    DEFAULT_PROTOCOL,
    DIAGNOSTICS,
    EFFECTIVE_REAL,
    LEARNING_CURVE,
    MORE_REAL,
    PROTOCOLS,
    RATIOS,
    SETTINGS,
)

from . import plots, worth
from .aggregate import (
    ALL_BACKBONES,
    ANY,
    MODELS_BOARD,
    REAL,
    ZERO_SHOT_PROTOCOL,
    BoardView,
    Estimate,
    Leaderboard,
    Profile,
    build_leaderboard,
    verdict,
)
from .identity import Board, split_by_identity
from .ranking import RANK_RULE
from .tree import SELF_REPORTED, LeaderboardError, Problem, Submission, Tree, hard_label, validate_tree

log = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = PACKAGE_DIR / "templates"
STATIC_DIR = PACKAGE_DIR / "static"
DEFAULT_SITE_DIR = PACKAGE_DIR / "site"
#: A file every built site holds: `build` replaces only a folder that has it (or an empty one).
SITE_MARKER = ".synthbench-site"
#: Boards of other comparability identities live in boards/<slug>/ (leaderboard.identity).
BOARDS_DIR = "boards"
#: 4: entries' `effective_real` (Replace: recomputed effective real images per backbone) and `more_real`
#: (Augment: Δ beside more-real@k and the share, per ratio). 3: `not_shown` (every problem: path, reason, shown_as), entries' and submissions' `status`
#: (official = signature verified) and `leakage_checked`, entries' `held_back`. 2: entries carry
#: significantly_better / significantly_worse (paired comparisons beside the overlap rank),
#: two-level CIs (`ci_method`).
LEADERBOARD_SCHEMA_VERSION = 4
THUMBNAIL_SIZE = 160
#: Sample images per class shown on a submission page.
THUMBNAILS_PER_CLASS = 1
DEMO_LABEL = "Pipeline demo, not a scientific result"
#: How to cite the benchmark (the repository's CITATION.cff says the same; a test keeps them in step).
CITATION_TITLE = "synthbench: do AI-generated images help recognise real images?"
CITATION_AUTHOR = "The synthbench maintainers"
BIBTEX = (
    "@software{synthbench,\n"
    f"  title = {{{{{CITATION_TITLE}}}}},\n"
    f"  author = {{{{{CITATION_AUTHOR}}}}},\n"
    f"  version = {{{__version__}}},\n"
    "  note = {Benchmark harness and leaderboard; flagship task: xBD disaster types}\n"
    "}"
)
#: Columns of each board's table, the board's own metric first (templates/index.html renders them).
#: (The harness version, and the Replace board's accuracy, are on each entry's page and in leaderboard.json/.csv: the
#: boards fit 1400 px; below 1100 px the descriptive columns marked "minor" in index.html give way.)
_DESCRIPTION_COLUMNS = ["team", "track", "generator", "images", "status"]
BOARD_COLUMNS = {
    "augment": ["rank", "submission", "delta", "verdict", "more_real", "macro_f1", "accuracy", *_DESCRIPTION_COLUMNS],
    "replace": ["rank", "submission", "worth", "macro_f1", "ratios", "delta", "verdict",
                *_DESCRIPTION_COLUMNS],
    "models": ["rank", "submission", "macro_f1", "delta", "verdict", "accuracy", "team", "track", "status", "harness"],
}
assert set(BOARD_COLUMNS) == set(BOARDS), "every board in benchmark.protocol.BOARDS needs its columns here"


def build_site(
    submissions_dir: str | Path = "submissions",
    out_dir: str | Path = DEFAULT_SITE_DIR,
    *,
    tasks=None,
    public_keys=None,
    strict: bool = False,
) -> Path:
    """Verify the tree under `submissions_dir` and publish the site into `out_dir`; return `out_dir`.

    `tasks` (leaderboard.tree.TaskTruth list) and `public_keys` default as in `validate_tree`.
    Entries with a problem are left off (or shown as self-reported / unchecked) and listed as not
    shown; `strict=True` raises LeaderboardError listing every problem instead (nothing is written).
    """
    tree = validate_tree(submissions_dir, tasks=tasks, public_keys=public_keys)
    if strict:
        tree.raise_if_problems()
    for problem in tree.problems:
        log.warning("%s (%s)", problem, problem.shown_as)
    return write_site(tree, out_dir)


def write_site(tree: Tree, out_dir: str | Path = DEFAULT_SITE_DIR) -> Path:
    """Publish a verified tree (problems listed on the index) into `out_dir`, atomically."""
    out_dir = Path(out_dir)
    _check_replaceable(out_dir)
    boards = split_by_identity(tree)  # records of another identity form their own board, under boards/
    with atomic_directory(out_dir, overwrite=True) as tmp:
        for board in boards:
            root = tmp if board.is_main else tmp / BOARDS_DIR / board.slug
            leaderboard = build_leaderboard(board.tree)
            _SiteWriter(leaderboard, root, identity=board, boards=boards).write()
            log.info("leaderboard board %s written (%d views, %d submissions)", board.title, len(leaderboard.views),
                     len(board.tree.submissions))
    log.info("leaderboard site written to %s (%d board(s))", out_dir, len(boards))
    return out_dir


#: The charting library, written into every built site from the `plotly` package (never kept in the repository).
PLOTLY_FILE = "plotly.min.js"


def _write_plotly(path: Path) -> None:
    """plotly.js as shipped by the Python package: the charts work offline and from file://."""
    from plotly.offline import get_plotlyjs

    path.write_text(get_plotlyjs(), encoding="utf-8")


def _chart_data(view: BoardView) -> dict[str, Any]:
    """What a view's chart draws, from the same entries as its table: the ranked quantity with its CI."""
    delta = view.board != "replace"
    reference = next((e for e in view.entries if e.is_reference), None)
    rows = []
    for entry in view.entries:
        estimate = entry.delta_macro_f1 if delta else entry.macro_f1
        if entry.is_reference or estimate is None:
            continue
        rows.append({
            "submission": entry.submission_id, "name": entry.name, "rank": entry.rank_label, "ranked": entry.ranked,
            "baseline": bool(entry.baseline), "point": estimate.point, "lo": estimate.lo, "hi": estimate.hi,
        })
    level = reference.macro_f1 if (reference is not None and not delta) else None
    return {
        "delta": delta,
        "axis": "Δ macro-F1 vs real only (pp), paired 95% CI; 0 = real only" if delta
        else "Macro-F1 (%) of the synthetic-only runs, 95% CI; grey: real only",
        "level": level.to_dict() if level else None,
        "entries": rows,
    }


def _columns(view: BoardView) -> list[str]:
    """The board's columns; effective real images and the more-real share only where some entry has them."""
    present = {"worth": any(e.worth for e in view.entries), "more_real": any(e.more_real for e in view.entries)}
    return [col for col in BOARD_COLUMNS[view.board] if present.get(col, True)]


def _headline_note(view: BoardView) -> str:
    """The Replace board's headline: what each set is worth in real images (read off the learning curve)."""
    rows = [e.worth["rows"][0] for e in view.entries if e.worth]
    if view.board != "replace" or not rows:
        return ""
    per_class = sorted({r["synthetic_per_class"] for r in rows})
    return (f"Worth: {'/'.join(map(str, per_class))} synthetic images per class are worth this many real ones "
            "(read off the real@n learning curve, 95% CI; '> n': beats the whole real split, '< n': below the curve).")


def _check_replaceable(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / SITE_MARKER).exists())):
        raise LeaderboardError(
            f"{out_dir}: exists and is not a leaderboard site (no {SITE_MARKER}); refusing to replace it"
        )


# ------------------------------------------------------------------------------------------------
# Formatting (Jinja filters): numbers are stored as fractions and shown in percent
# ------------------------------------------------------------------------------------------------


def percent(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "—"
    text = f"{100 * value:+.1f}" if signed else f"{100 * value:.1f}"
    return text.replace("-", "\u2212")  # a real minus sign


def share_text(share: dict | None) -> str:
    """A share of the real-data gain in percent with its CI; an unbounded end (None) reads as ∞."""
    if not share:
        return "—"
    lo, hi = share["ci"]
    ends = [percent(lo) if lo is not None else "−∞", percent(hi) if hi is not None else "∞"]
    return f"{percent(share['point'])}% [{ends[0]}, {ends[1]}]"


def interval(estimate: Estimate | None, signed: bool = False) -> str:
    if estimate is None:
        return ""
    return f"[{percent(estimate.lo, signed)}, {percent(estimate.hi, signed)}]"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,  # a typo in a template fails the build, not the reader
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["percent"] = percent
    env.filters["interval"] = interval
    env.filters["verdict"] = verdict
    env.filters["share"] = share_text
    env.filters["ratio"] = lambda setting: f"1:{SETTINGS[setting].ratio}" if setting in SETTINGS else (setting or "—")
    return env


def _safe_link(url: str) -> str | None:
    """Only http(s) links from participants' metadata become hyperlinks (no javascript: URLs)."""
    return url if url.startswith(("https://", "http://")) else None


# ------------------------------------------------------------------------------------------------
# The writer
# ------------------------------------------------------------------------------------------------


class _SiteWriter:
    def __init__(self, board: Leaderboard, root: Path, identity: Board | None = None, boards: list[Board] | None = None):
        self.board = board
        self.identity = identity or Board(board.tree)
        self.boards = boards or [self.identity]
        self.tree = board.tree
        self.root = root
        self.env = _environment()
        self.view_plots: dict[str, dict[str, str]] = {}

    def write(self) -> None:
        worth.enrich(self.board)  # effective real images and the more-real control, recomputed
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / SITE_MARKER).write_text(f"synthbench {__version__} leaderboard site\n")
        shutil.copytree(STATIC_DIR, self.root / "static")
        _write_plotly(self.root / "static" / PLOTLY_FILE)
        for view in self.board.views:
            figure = plots.board_bars(view, self._view_title(view), self.root / "plots" / f"{view.id}-board")
            if figure:
                self.view_plots[view.id] = {name: f"plots/{file}" for name, file in figure.items()}
        common = self._common_context()
        self._render("index.html", self.root / "index.html", **common, **self._index_context())
        self._render("methodology.html", self.root / "methodology.html", **common, **self._methodology_context())
        self._render("compare.html", self.root / "compare.html", **common, compare=self._compare_data())
        self._render("diagnostics.html", self.root / "diagnostics.html", **common, diagnostic_views=self._diagnostic_views(),
                     diagnostic_descriptions=DIAGNOSTICS["descriptions"],
                     tracks=sorted({s.track for s in self.tree.submissions if s.track}))
        for submission in self.tree.submissions:
            page_dir = self.root / "submissions" / submission.id
            context = self._submission_context(submission, page_dir)
            self._render("submission.html", page_dir / "index.html", **common, base="../../", **context)
        atomic_write_json(self.root / "leaderboard.json", self._json())
        self._csv().to_csv(self.root / "leaderboard.csv", index=False, float_format="%.6f")

    def _render(self, template: str, path: Path, **context: Any) -> None:
        context.setdefault("base", "")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.env.get_template(template).render(**context), encoding="utf-8")

    # -- context --------------------------------------------------------------------------------

    def _common_context(self) -> dict[str, Any]:
        task = self.tree.task
        finished = sorted(filter(None, (r.finished for r in self.tree.records())))
        return {
            "task": task,
            "is_demo": self.tree.is_demo,
            "demo_label": DEMO_LABEL,
            "harness_versions": sorted({r.harness_version for r in self.tree.records()}),
            "results_as_of": finished[-1] if finished else None,
            "n_records": sum(1 for _ in self.tree.records()),
            "site_version": __version__,
            "this_board": self.identity,
            "other_boards": [
                {"title": b.title, "href": ("../../" if not self.identity.is_main else "") + ("index.html" if b.is_main else f"{BOARDS_DIR}/{b.slug}/index.html"),
                 "is_main": b.is_main}
                for b in self.boards if b is not self.identity
            ],
        }

    def _view_title(self, view: BoardView) -> str:
        if view.board == MODELS_BOARD:
            return f"{view.title}: submitted checkpoints"
        backbones = f"suite ({', '.join(view.backbones)})" if view.backbone == ALL_BACKBONES else view.backbone
        return f"{view.title} · {view.protocol} · {backbones}"

    def _index_context(self) -> dict[str, Any]:
        views = self.board.views
        protocols = list(dict.fromkeys(v.protocol for v in views if v.protocol != ANY))
        backbones = sorted({v.backbone for v in views if v.backbone not in (ANY, ALL_BACKBONES)})
        default_protocol = DEFAULT_PROTOCOL if DEFAULT_PROTOCOL in protocols else (protocols[0] if protocols else "")
        return {
            "views": [
                {
                    "view": view,
                    "title": self._view_title(view),
                    "description": BOARDS[view.board]["description"],
                    "plot": self.view_plots.get(view.id),
                    "chart": _chart_data(view),
                    # Visible without JavaScript: the headline of each board (the script's defaults).
                    "visible": view.headline and view.protocol in (default_protocol, ANY),
                    "columns": _columns(view),
                    "headline_note": _headline_note(view),
                    "pooled": {"augment": "mixed@k", "replace": "synthetic@k"}.get(view.board),
                }
                for view in views
            ],
            "boards": {name: spec["title"] for name, spec in BOARDS.items() if any(v.board == name for v in views)},
            "protocols": protocols,
            "default_protocol": default_protocol,
            "backbones": backbones,
            "tracks": sorted({s.track for s in self.tree.submissions if s.track}),
            "ratios": list(RATIOS),
            "zero_shot": self.board.zero_shot,
            "zero_shot_description": PROTOCOLS[ZERO_SHOT_PROTOCOL]["description"],
            "pending": [s for s in self.tree.submissions if not s.records],
            "baselines_without_records": self._baselines_without_records(),
            "not_shown": [self._problem_row(p) for p in self.tree.problems],
            "notes": self.board.notes,
            "suites": self.board.suites,
        }

    def _baselines_without_records(self) -> list[str]:
        """The shipped baselines (benchmark.registry.BASELINES) with no record shown on this board."""
        from benchmark.registry import BASELINES

        shown = {s.baseline for s in self.tree.submissions if s.baseline and s.records}
        return [name for name in BASELINES if name not in shown]

    def _problem_row(self, problem: Problem) -> dict[str, str]:
        path = Path(problem.path)
        shown = path.relative_to(self.tree.root) if path.is_relative_to(self.tree.root) else path
        return {"path": str(shown), "reason": problem.reason, "shown_as": problem.shown_as}

    def _methodology_context(self) -> dict[str, Any]:
        recipes = {
            name: {key: value for key, value in spec.items() if key not in ("description", "ranking")}
            for name, spec in PROTOCOLS.items()
        }
        return {
            "settings": list(SETTINGS.values()),
            "learning_curve": LEARNING_CURVE,
            "effective_real": EFFECTIVE_REAL,
            "diagnostics": DIAGNOSTICS,
            "more_real": MORE_REAL,
            "protocols": PROTOCOLS,
            "recipes": recipes,
            "default_protocol": DEFAULT_PROTOCOL,
            "boards": BOARDS,
            "ratios": RATIOS,
            "resamples": BOOTSTRAP_RESAMPLES,
            "ci_level": CI_LEVEL,
            "bootstrap_seed": BOOTSTRAP_SEED,
            "seed_draw_seed": ", ".join(map(str, SEED_DRAW_SEED)),
            "tie_rule": RANK_RULE,
            "scoring_version": SCORING_VERSION,
            **self._task_numbers(),
            "bibtex": BIBTEX,
            "backbones": _backbone_registry(),
            "suites": self.board.suites,
        }

    def _compare_data(self) -> list[dict[str, Any]]:
        """For the headline view of each training board: every pair of its compared entries' paired
        difference (A - B on the board's metric, with its 95% CI), over all ratios and per ratio."""
        estimator = self.board.estimator
        out = []
        for board in ("augment", "replace"):
            view = self.board.headline(board)
            if view is None or estimator is None:
                continue
            entries = [e for e in view.entries if e.ranked]
            ratios = sorted({cell[2] for e in entries for cell in e.cells})
            pairs: dict[str, dict[str, list[float]]] = {}
            for i, a in enumerate(entries):
                for b in entries[i + 1:]:
                    rows = {"mean over ratios": estimator.compare("macro_f1", a, b)}
                    rows.update({f"1:{k}": estimator.compare("macro_f1", a, b, ratio=k) for k in ratios})
                    pairs[f"{a.name}|{b.name}"] = {key: [e.point, e.lo, e.hi] for key, e in rows.items()}
            out.append({
                "id": view.id, "title": self._view_title(view), "board": board,
                "metric": "Δ macro-F1 (pp)" if board == "augment" else "macro-F1 (pp)",
                "entries": [e.name for e in entries], "rows": ["mean over ratios", *(f"1:{k}" for k in ratios)],
                "pairs": pairs,
            })
        return out

    def _diagnostic_views(self) -> list[dict[str, Any]]:
        """Per one-backbone training view: each entry's Δ macro-F1 (mean over the board's ratios) and the overall
        diagnostics its record stores, for the diagnostic-vs-Δ page (views where no entry has diagnostics are left out)."""
        out = []
        for view in self.board.views:
            if view.board not in ("augment", "replace") or len(view.backbones) != 1:
                continue
            entries = []
            for entry in view.entries:
                if entry.is_reference or entry.delta_macro_f1 is None:
                    continue
                record = self.board.estimator.record(entry.submission_id, view.backbones[0], view.protocol)
                overall = (record.data.get("diagnostics") or {}).get("overall") or {}
                values = {name: [v["value"], *v["ci"]] for name, v in overall.items() if isinstance(v, dict) and "value" in v}
                d = entry.delta_macro_f1
                entries.append({"submission": entry.submission_id, "name": entry.name, "track": entry.track,
                                "baseline": bool(entry.baseline), "delta": [d.point, d.lo, d.hi], "diagnostics": values})
            if any(e["diagnostics"] for e in entries):
                pooled = {"augment": "mixed@k", "replace": "synthetic@k"}[view.board]
                out.append({"id": view.id, "title": self._view_title(view), "entries": entries,
                            "metric": f"Δ macro-F1 of {pooled} over real only (pp)"})
        return out

    def _settings_in_use(self) -> list[dict[str, Any]]:
        """Every setting the board's records ran, with the images per class its runs trained on (from the runs)."""
        seen: dict[str, dict[str, set]] = {}
        for record in self.tree.records():
            for run in record.data["runs"]:
                numbers = seen.setdefault(run["setting"], {"real": set(), "synthetic": set(), "seeds": set()})
                numbers["real"].add(int(run.get("n_real_per_class") or 0))
                numbers["synthetic"].add(int(run.get("n_synthetic_per_class") or 0))
                numbers["seeds"].add(int(run["seed"]))
        order = {name: i for i, name in enumerate(SETTINGS)}
        return [
            {"name": name, "ratio": worth.ratio_of(name), "real": sorted(n["real"]), "synthetic": sorted(n["synthetic"]),
             "seeds": sorted(n["seeds"]), "curve": name in SETTINGS and SETTINGS[name].is_curve_point}
            for name, n in sorted(seen.items(), key=lambda item: (order.get(item[0], len(order)), item[0]))
        ]

    def _task_numbers(self) -> dict[str, Any]:
        """The numbers of the task in use (from its test labels and the records), never the protocol's constants:
        test images per class, real training images per class, the settings, seeds, ratios and learning curve
        the records ran, and the smallest Δ its test split can detect."""
        labels, classes = self.tree.test_labels, self.tree.classes
        test_counts = {name: int((labels == i).sum()) for i, name in enumerate(classes)} if labels is not None else {}
        settings = self._settings_in_use()
        real_per_class = next((s["real"] for s in settings if s["name"] == REAL), [])
        ratios = sorted({s["ratio"] for s in settings if s["ratio"] and s["name"] in SETTINGS})
        augment = self.board.headline("augment")
        half_widths = [
            (e.delta_macro_f1.hi - e.delta_macro_f1.lo) / 2 for e in (augment.entries if augment else [])
            if e.delta_macro_f1 is not None and not e.is_reference
        ]
        return {
            "test_counts": test_counts,
            "test_size": int(labels.size) if labels is not None else None,
            "real_per_class_in_use": real_per_class,
            "settings_in_use": settings,
            "seeds_in_use": sorted({seed for s in settings for seed in s["seeds"]}),
            "ratios_in_use": ratios,
            "curve_in_use": [s["real"][0] for s in settings if s["curve"] and s["real"]],
            "more_real_in_use": [s["name"] for s in settings if s["name"].startswith(worth.MORE_REAL_PREFIX)],
            "synthetic_in_use": sorted({n for s in settings if s["name"].startswith("synthetic@") for n in s["synthetic"]}),
            "detectable_delta": float(sorted(half_widths)[len(half_widths) // 2]) if half_widths else None,
            "detectable_from": len(half_widths),
        }

    def _submission_context(self, submission: Submission, page_dir: Path) -> dict[str, Any]:
        classes = self.tree.classes
        sections = self._profile_sections(submission, page_dir)
        standings = [
            {"view": view, "title": self._view_title(view), "entry": entry}
            for view, entry in self.board.entries_of(submission.id)
            # Per-backbone views, not the non-headline suite views; a one-backbone suite once only.
            if view.headline or (view.backbone != ALL_BACKBONES and self.board.suites.get(view.protocol) != [view.backbone])
        ]
        counts = submission.images_per_class(classes)
        generator = submission.generator
        records = sorted(submission.records.values(), key=lambda r: r.path.name)
        more_real = next((entry.more_real for view, entry in self.board.entries_of(submission.id)
                          if view.board == "augment" and view.headline and entry.more_real), [])
        return {
            "effective_real": [(r, self._effective_real(r)) for r in records],
            "diagnostics": [(r, worth.diagnostics_of(r)) for r in records],
            "diagnostic_descriptions": DIAGNOSTICS["descriptions"],
            "more_real": more_real,
            "submission": submission,
            "generator": generator,
            "generator_link": _safe_link(generator["link"]),
            "fine_tuned": submission.meta.get("fine_tuned"),
            **self._follow_up(submission),
            "licence": submission.meta.get("licence") or submission.meta.get("license") or "",
            "submission_task": submission.meta.get("task") if isinstance(submission.meta.get("task"), dict) else {},
            "content_hashes": sorted({r.data["submission"]["content_hash"] for r in submission.records.values()}),
            "counts": counts,
            "thumbnails": self._thumbnails(submission, page_dir),
            "sections": sections,
            "standings": standings,
            "records": records,
            "status": (
                None if not submission.records
                else "official" if all(r.official for r in submission.records.values()) else SELF_REPORTED
            ),
            "unchecked": bool(submission.records) and not submission.leakage_checked,
            "problems": [self._problem_row(p) for p in self.tree.problems_of(submission)],
        }

    def _profile_sections(self, submission: Submission, page_dir: Path) -> list[dict[str, Any]]:
        """One section per protocol and backbone set of the entry: its settings table, charts and per-class Δ F1."""
        classes = self.tree.classes
        profiles = [p for p in self.board.profiles_of(submission.id)]
        sections = []
        for profile in profiles:
            stem = f"{profile.protocol}--{'+'.join(profile.backbones)}"
            is_suite = list(profile.backbones) == self.board.suites.get(profile.protocol) or len(
                [p for p in profiles if p.protocol == profile.protocol]
            ) == 1
            label = self._profile_label(profile)
            figures = {}
            curves = plots.ratio_curves(profile, f"{submission.id} · {label}", page_dir / "plots" / f"{stem}-ratios")
            if curves:
                figures["Per ratio: the paired Δ macro-F1 over real only with its paired 95% CI (left, 0 = real only) and "
                        "macro-F1 with the real-only level in grey (right)"] = curves
            if is_suite:
                panels = self._confusion_panels(profile)
                confusion = plots.confusion_matrices(classes, panels, page_dir / "plots" / f"{stem}-confusion")
                if confusion:
                    figures["Confusion matrices of every ratio, rows normalised (" + ", ".join(t for t, _ in panels) + ")"] = confusion
                heat = plots.per_class_delta_f1(classes, profile, f"Per-class Δ F1 vs real only (pp) · {label}",
                                                page_dir / "plots" / f"{stem}-per-class")
                if heat:  # the static copy (no JavaScript); the page draws the same with CIs in the browser
                    figures["Per-class Δ F1 of every setting over real only (static copy, no CIs)"] = heat
            sections.append(
                {
                    "profile": profile,
                    "label": label,
                    "is_suite": is_suite,
                    "per_class": self._per_class_delta(profile) if is_suite else None,
                    "figures": [(caption, {k: f"plots/{v}" for k, v in files.items()}) for caption, files in figures.items()],
                }
            )
        sections.sort(key=lambda s: (s["profile"].protocol != DEFAULT_PROTOCOL, not s["is_suite"], s["label"]))
        return sections

    def _effective_real(self, record) -> dict[str, dict]:
        """{synthetic@k: effective real images} of a record, recomputed (memoised per build)."""
        memo = self.__dict__.setdefault("_worth_memo", {})
        if record.path not in memo:
            memo[record.path] = worth.effective_real(record, self.tree.test_labels, len(self.tree.classes))
        return memo[record.path]

    def _per_class_delta(self, profile: Profile) -> dict[str, Any] | None:
        """Per-class Δ F1 of every paired setting over real only, with paired two-level CIs (table + heat map)."""
        if self.board.estimator is None:
            return None
        per_class = self.__dict__.setdefault("_per_class_f1", worth.PerClassF1(self.board.estimator))
        classes = self.tree.classes
        rows = [{"setting": name, "cells": per_class.delta(stats.runs, stats.baseline, classes)}
                for name, stats in profile.settings.items() if stats.baseline]
        if not rows:
            return None
        chart = {
            "classes": classes, "settings": [r["setting"] for r in rows],
            "z": [[100 * r["cells"][c].point for c in classes] for r in rows],
            "ci": [[f"[{percent(r['cells'][c].lo, True)}, {percent(r['cells'][c].hi, True)}]" for c in classes] for r in rows],
            # The cell's number in parentheses when its CI includes 0: a strong colour alone is not a finding.
            "text": [[(lambda e: f"{100 * e.point:+.0f}" if e.lo > 0 or e.hi < 0 else f"({100 * e.point:+.0f})")(r["cells"][c])
                      for c in classes] for r in rows],
        }
        return {"classes": classes, "rows": rows, "chart": chart}

    @staticmethod
    def _follow_up(submission: Submission) -> dict[str, Any]:
        """Paper, code, citation and the recipe of an entry (optional submission.yaml fields), bounded."""
        meta = submission.meta
        link = lambda key: _safe_link(meta[key]) if isinstance(meta.get(key), str) and len(meta[key]) <= 500 else None  # noqa: E731
        citation = meta.get("citation")
        recipe = meta.get("recipe") if submission.kind == "recipe" and isinstance(meta.get("recipe"), dict) else None
        pins = recipe.get("content_hashes") if recipe else None
        return {
            "paper": link("paper"),
            "code": link("code"),
            "citation": citation[:5000] if isinstance(citation, str) else None,
            "recipe": {"multiplier": recipe.get("multiplier"), "seed": recipe.get("seed"),
                       "pins": {str(k): str(v) for k, v in pins.items()} if isinstance(pins, dict) else {}} if recipe else None,
        }

    @staticmethod
    def _profile_label(profile: Profile) -> str:
        if len(profile.backbones) > 1:
            return f"{profile.protocol} · mean over {', '.join(profile.backbones)}"
        return f"{profile.protocol} · {profile.backbones[0]}"

    @staticmethod
    def _confusion_panels(profile: Profile) -> list[tuple[str, Any]]:
        """real and every mixed ratio (small multiples): none is picked by its score on the test set."""
        panels = [("real", profile.settings[REAL])] if REAL in profile.settings else []
        panels += [(name, stats) for name, stats in profile.settings.items() if SETTINGS.get(name) and SETTINGS[name].kind == "mixed"]
        return panels

    def _thumbnails(self, submission: Submission, page_dir: Path) -> list[dict[str, str]]:
        """Re-encode a few sample images (one per class) as small PNGs inside the site."""
        chosen: dict[str, str] = {}
        for row in sorted(submission.metadata_rows(), key=lambda row: str(row.get("file_name", ""))):
            label = hard_label(row.get("label"))
            if label is None or len([c for c in chosen.values() if c == label]) >= THUMBNAILS_PER_CLASS:
                continue
            if isinstance(row.get("file_name"), str):
                chosen[row["file_name"]] = label
        thumbnails = []
        for index, (file_name, label) in enumerate(sorted(chosen.items(), key=lambda item: (self._class_order(item[1]), item[0]))):
            path = submission.image_path(file_name)
            if path is None:
                log.warning("%s: sample image %s not found inside the submission; no thumbnail", submission.path, file_name)
                continue
            try:
                image = open_rgb(path)  # participants' files: decoded with the harness's safe reader
            except ImageDecodeError as exc:
                log.warning("no thumbnail: %s", exc)
                continue
            image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
            target = page_dir / "thumbs" / f"{index:02d}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            image.save(target, format="PNG")
            thumbnails.append({"src": f"thumbs/{target.name}", "label": label, "file_name": file_name})
        return thumbnails

    def _class_order(self, label: str) -> int:
        return self.tree.classes.index(label) if label in self.tree.classes else len(self.tree.classes)

    # -- machine-readable -------------------------------------------------------------------------

    def _json(self) -> dict[str, Any]:
        return {
            "schema_version": LEADERBOARD_SCHEMA_VERSION,
            "task": self.tree.task,
            "is_demo": self.tree.is_demo,
            "note": DEMO_LABEL if self.tree.is_demo else None,
            "ci_method": CI_METHOD,
            "classes": self.tree.classes,
            "harness_versions": sorted({r.harness_version for r in self.tree.records()}),
            "suites": self.board.suites,
            # This board's comparability identity and the other boards of the build (leaderboard.identity).
            "board": {"main": self.identity.is_main, "differs": self.identity.differs},
            "other_boards": [{"title": b.title, "differs": b.differs, "path": "" if b.is_main else f"{BOARDS_DIR}/{b.slug}/"}
                             for b in self.boards if b is not self.identity],
            "views": [view.to_dict() for view in self.board.views],
            "zero_shot": [entry.to_dict() for entry in self.board.zero_shot],
            "notes": self.board.notes,
            "not_shown": [self._problem_row(p) for p in self.tree.problems],
            "submissions": [
                {
                    "id": s.id,
                    "team": s.team,
                    "method": s.method,
                    "track": s.track,
                    "kind": s.kind,
                    "baseline": s.baseline,
                    "generator": s.generator,
                    "records": sorted(r.path.name for r in s.records.values()),
                    "status": (
                        None if not s.records else "official" if all(r.official for r in s.records.values()) else SELF_REPORTED
                    ),
                    "leakage_checked": s.leakage_checked if s.records else None,
                }
                for s in self.tree.submissions
            ],
        }

    def _csv(self) -> pd.DataFrame:
        rows = []
        for view in self.board.views:
            for entry in view.entries:
                row: dict[str, Any] = {
                    "board": view.board,
                    "protocol": view.protocol,
                    "backbone": view.backbone,
                    "backbones": " ".join(view.backbones),
                    "headline": view.headline,
                    "rank": entry.rank,
                    "rank_label": entry.rank_label,
                    "ranked": entry.ranked,
                    "submission": entry.submission_id or "",
                    "name": entry.name,
                    "team": entry.team,
                    "track": entry.track,
                    "generator": entry.generator,
                    "baseline": entry.baseline or "",
                    "images_per_class": entry.images_per_class,
                }
                for metric in ("accuracy", "macro_f1", "delta_macro_f1", "delta_accuracy"):
                    estimate = getattr(entry, metric)
                    row[metric] = estimate.point if estimate else None
                    row[f"{metric}_lo"] = estimate.lo if estimate else None
                    row[f"{metric}_hi"] = estimate.hi if estimate else None
                row.update(
                    verdict=entry.verdict,
                    rank_lo=entry.rank_interval[0] if entry.rank_interval else None,
                    rank_hi=entry.rank_interval[1] if entry.rank_interval else None,
                    status=entry.status,
                    leakage_checked=not entry.unchecked,
                    harness_versions=" ".join(entry.harness_versions),
                    n_runs=entry.n_runs,
                    missing="; ".join(entry.missing),
                    is_demo=self.tree.is_demo,
                )
                rows.append(row)
        return pd.DataFrame(rows)


def _backbone_registry() -> list[dict[str, Any]]:
    """The backbone registry as rows for the methodology page ([] until benchmark.registry exists)."""
    try:
        from benchmark.registry import BACKBONES, DEFAULT_BACKBONE  # plain data: no torch for the board
    except ImportError:  # the harness's backbone module is optional for the leaderboard
        return []
    rows = []
    for name, spec in BACKBONES.items():
        if dataclasses.is_dataclass(spec):
            fields = dataclasses.asdict(spec)
        elif isinstance(spec, dict):
            fields = dict(spec)
        else:
            fields = {"spec": repr(spec)}
        fields = {k: v for k, v in fields.items() if k != "name" and v is not None and not callable(v)}
        rows.append({"name": name, "default": name == DEFAULT_BACKBONE, "fields": fields})
    return rows
