"""The leaderboard's figures (matplotlib, no GUI): each written as SVG and PNG, byte-for-byte reproducible.

Reproducible: the SVG hash salt is fixed and no date or software version is written into either
file, so rebuilding an unchanged board changes no file (CI diffs show only real changes). Numbers
are shown in percent; bands and error bars are the 95% bootstrap CIs of the aggregation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # before anything imports pyplot: no display on CI or servers

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from benchmark.protocol import SETTINGS  # noqa: E402

from .aggregate import BoardView, Profile, SettingStats  # noqa: E402

#: rcParams for every figure: fixed SVG ids; text kept as SVG text (the viewer draws it in its sans-serif).
RC_PARAMS = {
    "svg.hashsalt": "synthbench-leaderboard",
    "svg.fonttype": "none",  # text stays text: smaller, faster files, selectable labels
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
PNG_DPI = 110
COLOURS = {"synthetic": "#d95f02", "mixed": "#1b9e77", "real": "#555555", "baseline": "#7570b3", "entry": "#1f78b4"}


def save(figure: Figure, stem: Path) -> dict[str, str]:
    """Write stem.svg and stem.png (deterministic); return their file names."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context(RC_PARAMS):
        figure.savefig(stem.with_suffix(".svg"), format="svg", metadata={"Date": None, "Creator": None})
        figure.savefig(stem.with_suffix(".png"), format="png", dpi=PNG_DPI, metadata={"Software": None})
    return {"svg": stem.with_suffix(".svg").name, "png": stem.with_suffix(".png").name}


def _figure(width: float, height: float) -> Figure:
    with matplotlib.rc_context(RC_PARAMS):
        return Figure(figsize=(width, height), layout="constrained")


def _pct(value: float) -> float:
    return 100.0 * value


def ratio_curves(profile: Profile, title: str, stem: Path) -> dict[str, str] | None:
    """Left: the paired Δ macro-F1 over real-only at each ratio 1:k (mixed@k and synthetic@k) with its
    paired CI and the zero line. Right: macro-F1 of each setting with the real-only level drawn."""
    by_kind: dict[str, list[SettingStats]] = {"synthetic": [], "mixed": []}
    for name, stats in profile.settings.items():
        setting = SETTINGS.get(name)
        if setting is not None and setting.kind in by_kind:
            by_kind[setting.kind].append(stats)
    if not any(by_kind.values()):
        return None
    real = profile.settings.get("real")
    with matplotlib.rc_context(RC_PARAMS):
        figure = _figure(7.2, 3.3)
        delta_ax, level_ax = figure.subplots(1, 2, sharex=True)
        delta_ax.axhline(0.0, color=COLOURS["real"], lw=1.2, label="real only (zero line / level)")
        if real is not None:
            level = real.macro_f1
            level_ax.axhspan(_pct(level.lo), _pct(level.hi), color=COLOURS["real"], alpha=0.12, lw=0)
            level_ax.axhline(_pct(level.point), color=COLOURS["real"], lw=1.2)
        for kind, stats in by_kind.items():
            if not stats:
                continue
            ratios = np.array([s.ratio for s in stats], dtype=float)
            offset = -0.06 if kind == "mixed" else 0.06  # side by side, error bars readable
            paired = [s for s in stats if s.delta_macro_f1 is not None]
            if paired:
                _error_bars(delta_ax, [s.ratio + offset for s in paired], [s.delta_macro_f1 for s in paired], COLOURS[kind], f"{kind}@k")
            _error_bars(level_ax, ratios + offset, [s.macro_f1 for s in stats], COLOURS[kind], None)
        ticks = sorted({s.ratio for group in by_kind.values() for s in group})
        for ax, label in ((delta_ax, "Δ macro-F1 vs real only (pp), paired 95% CI"), (level_ax, "Macro-F1 (%), 95% CI")):
            ax.set_xticks(ticks)
            ax.set_xticklabels([f"1:{k}" for k in ticks])
            ax.set_xlabel("real : synthetic")
            ax.set_ylabel(label, fontsize=8)
            ax.grid(axis="y", alpha=0.3)
        handles, labels = delta_ax.get_legend_handles_labels()
        figure.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=8, frameon=False)
        figure.suptitle(title, fontsize=10)
    return save(figure, stem)


def _error_bars(ax, xs, estimates, colour: str, label: str | None) -> None:
    points = np.array([_pct(e.point) for e in estimates])
    errors = np.array([[_pct(e.point - e.lo) for e in estimates], [_pct(e.hi - e.point) for e in estimates]])
    ax.errorbar(xs, points, yerr=errors, fmt="o-", color=colour, lw=1.4, capsize=3, ms=4, label=label)


def board_bars(view: BoardView, title: str, stem: Path) -> dict[str, str] | None:
    """The ranked quantity of every entry with its 95% CI, in board order: Δ macro-F1 with a zero line
    (Augment, Models), or macro-F1 with the real-only level drawn (Replace). Nothing is chosen per entry."""
    delta = view.board != "replace"
    rows = []
    for entry in view.entries:
        estimate = entry.delta_macro_f1 if delta else entry.macro_f1
        if estimate is None or entry.is_reference:
            continue  # the reference is the zero line (Δ) or the level line (Replace)
        colour = COLOURS["baseline"] if entry.baseline else COLOURS["entry"]
        label = f"{entry.name}  [{entry.rank_label}]" if entry.rank is not None else f"{entry.name}  [not ranked]"
        rows.append((label, estimate, colour))
    if not rows:
        return None
    reference = next((e for e in view.entries if e.is_reference), None)
    with matplotlib.rc_context(RC_PARAMS):
        figure = _figure(7.2, 1.0 + 0.32 * len(rows))
        ax = figure.subplots()
        positions = np.arange(len(rows))[::-1]
        points = np.array([_pct(est.point) for _, est, _ in rows])
        errors = np.array([[_pct(est.point - est.lo) for _, est, _ in rows], [_pct(est.hi - est.point) for _, est, _ in rows]])
        ax.errorbar(points, positions, xerr=errors, fmt="none", ecolor="#333333", capsize=3, lw=1)
        ax.scatter(points, positions, c=[c for *_, c in rows], s=36, zorder=3)
        if delta:
            ax.axvline(0.0, color=COLOURS["real"], lw=1.2)
            ax.set_xlabel("Δ macro-F1 vs real only (pp), mean over ratios, paired 95% CI; 0 = real only")
        else:
            if reference is not None:
                level = reference.macro_f1
                ax.axvspan(_pct(level.lo), _pct(level.hi), color=COLOURS["real"], alpha=0.12, lw=0)
                ax.axvline(_pct(level.point), color=COLOURS["real"], lw=1.2)
            ax.set_xlabel("Macro-F1 (%) of the synthetic-only runs, mean over ratios, 95% CI; grey: real only")
        ax.set_yticks(positions)
        ax.set_yticklabels([label for label, *_ in rows], fontsize=8)
        ax.grid(axis="x", alpha=0.3)
        ax.set_title(title, fontsize=10)
    return save(figure, stem)


def confusion_matrices(classes: Sequence[str], panels: Sequence[tuple[str, SettingStats]], stem: Path) -> dict[str, str] | None:
    """Row-normalised confusion matrices (rows: true class; summed over seeds and backbones)."""
    if not panels:
        return None
    with matplotlib.rc_context(RC_PARAMS):
        size = 0.45 * len(classes) + 1.6
        columns = min(3, len(panels))
        rows = -(-len(panels) // columns)
        figure = _figure(size * columns + 0.8, (size + 0.4) * rows)
        grid = np.atleast_1d(figure.subplots(rows, columns)).ravel()
        for ax in grid[len(panels):]:
            ax.set_visible(False)
        axes = grid[: len(panels)]
        image = None
        for ax, (title, stats) in zip(axes, panels):
            counts = stats.confusion.astype(float)
            rows = counts.sum(axis=1, keepdims=True)
            normalised = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
            image = ax.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
            for (i, j), value in np.ndenumerate(normalised):
                if len(classes) <= 10:
                    ax.text(j, i, f"{100 * value:.0f}", ha="center", va="center", fontsize=7,
                            color="white" if value > 0.5 else "black")
            ax.set_xticks(range(len(classes)))
            ax.set_xticklabels(classes, rotation=45, ha="right", fontsize=8)
            ax.set_yticks(range(len(classes)))
            ax.set_yticklabels(classes, fontsize=8)
            ax.set_xlabel("predicted")
            ax.set_ylabel("true")
            ax.set_title(title, fontsize=9)
            ax.spines[:].set_visible(False)
        figure.colorbar(image, ax=list(grid), shrink=0.8, label="fraction of the true class")
    return save(figure, stem)


def per_class_delta_f1(classes: Sequence[str], profile: Profile, title: str, stem: Path) -> dict[str, str] | None:
    """Per-class Δ F1 of each setting over real-only (mean over runs, pp) on a diverging scale centred at 0."""
    real = profile.settings.get("real")
    settings = [stats for name, stats in profile.settings.items() if name != "real"]
    if real is None or not settings:
        return None
    values = np.array([[100 * (stats.per_class_f1[name] - real.per_class_f1[name]) for name in classes] for stats in settings])
    bound = max(5.0, float(np.abs(values).max()))
    with matplotlib.rc_context(RC_PARAMS):
        figure = _figure(1.8 + 0.8 * len(classes), 1.0 + 0.32 * len(settings))
        ax = figure.subplots()
        image = ax.imshow(values, cmap="RdBu", vmin=-bound, vmax=bound, aspect="auto")
        for (i, j), value in np.ndenumerate(values):
            ax.text(j, i, f"{value:+.0f}".replace("-", "\u2212"), ha="center", va="center", fontsize=7,
                    color="white" if abs(value) > 0.6 * bound else "black")
        ax.set_xticks(range(len(classes)))
        ax.set_xticklabels(classes, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(settings)))
        ax.set_yticklabels([stats.setting for stats in settings], fontsize=8)
        ax.spines[:].set_visible(False)
        ax.set_title(title, fontsize=10)
        figure.colorbar(image, ax=ax, label="Δ F1 vs real only (pp)")
    return save(figure, stem)
