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
    """Macro-F1 and accuracy against the ratio 1:k for synthetic@k and mixed@k, real as a level."""
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
        axes = figure.subplots(1, 2, sharex=True)
        for ax, metric, label in zip(axes, ("macro_f1", "accuracy"), ("Macro-F1 (%)", "Accuracy (%)")):
            if real is not None:
                level = getattr(real, metric)
                ax.axhspan(_pct(level.lo), _pct(level.hi), color=COLOURS["real"], alpha=0.12, lw=0)
                ax.axhline(_pct(level.point), color=COLOURS["real"], ls="--", lw=1.2, label="real only")
            for kind, stats in by_kind.items():
                if not stats:
                    continue
                ratios = [s.ratio for s in stats]
                points = [_pct(getattr(s, metric).point) for s in stats]
                ax.fill_between(
                    ratios,
                    [_pct(getattr(s, metric).lo) for s in stats],
                    [_pct(getattr(s, metric).hi) for s in stats],
                    color=COLOURS[kind], alpha=0.18, lw=0,
                )
                ax.plot(ratios, points, marker="o", color=COLOURS[kind], lw=1.6, label=f"{kind}@k")
            ax.set_xticks(sorted({s.ratio for group in by_kind.values() for s in group}))
            ax.set_xticklabels([f"1:{k}" for k in ax.get_xticks().astype(int)])
            ax.set_xlabel("real : synthetic")
            ax.set_ylabel(label)
            ax.grid(axis="y", alpha=0.3)
        handles, labels = axes[0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=8, frameon=False)
        figure.suptitle(title, fontsize=10)
    return save(figure, stem)


def best_ratio_bars(view: BoardView, title: str, stem: Path) -> dict[str, str] | None:
    """Every entry's macro-F1 at its best ratio (the real-only row at real), with CIs, in rank order."""
    rows = []
    for entry in view.entries:
        stats = entry.per_setting.get(entry.best_setting or "real")
        if stats is None:
            continue
        label = entry.name + (f"  ({entry.best_setting})" if entry.best_setting else "")
        colour = COLOURS["real"] if entry.is_reference else COLOURS["baseline"] if entry.baseline else COLOURS["entry"]
        rows.append((label, stats.macro_f1, colour))
    if not rows:
        return None
    with matplotlib.rc_context(RC_PARAMS):
        figure = _figure(7.2, 0.9 + 0.32 * len(rows))
        ax = figure.subplots()
        positions = np.arange(len(rows))[::-1]
        points = np.array([_pct(est.point) for _, est, _ in rows])
        errors = np.array([[_pct(est.point - est.lo) for _, est, _ in rows], [_pct(est.hi - est.point) for _, est, _ in rows]])
        ax.barh(positions, points, xerr=errors, color=[c for *_, c in rows], height=0.65, capsize=3, error_kw={"lw": 1})
        ax.set_yticks(positions)
        ax.set_yticklabels([label for label, *_ in rows], fontsize=8)
        ax.set_xlabel("Macro-F1 (%) at the best ratio, 95% CI")
        ax.set_xlim(0, min(100.0, max(points.max() + errors[1].max() + 5, 10.0)))
        ax.grid(axis="x", alpha=0.3)
        ax.set_title(title, fontsize=10)
    return save(figure, stem)


def confusion_matrices(classes: Sequence[str], panels: Sequence[tuple[str, SettingStats]], stem: Path) -> dict[str, str] | None:
    """Row-normalised confusion matrices (rows: true class; summed over seeds and backbones)."""
    if not panels:
        return None
    with matplotlib.rc_context(RC_PARAMS):
        size = 0.45 * len(classes) + 1.6
        figure = _figure(size * len(panels) + 0.8, size + 0.4)
        axes = np.atleast_1d(figure.subplots(1, len(panels)))
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
        figure.colorbar(image, ax=list(axes), shrink=0.8, label="fraction of the true class")
    return save(figure, stem)


def per_class_f1(classes: Sequence[str], profile: Profile, title: str, stem: Path) -> dict[str, str] | None:
    """Heat map of per-class F1 (mean over runs): one row per setting, one column per class."""
    settings = list(profile.settings.values())
    if not settings:
        return None
    values = np.array([[100 * stats.per_class_f1[name] for name in classes] for stats in settings])
    with matplotlib.rc_context(RC_PARAMS):
        figure = _figure(1.8 + 0.8 * len(classes), 0.9 + 0.32 * len(settings))
        ax = figure.subplots()
        image = ax.imshow(values, cmap="viridis", vmin=0, vmax=100, aspect="auto")
        for (i, j), value in np.ndenumerate(values):
            ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=7, color="black" if value > 60 else "white")
        ax.set_xticks(range(len(classes)))
        ax.set_xticklabels(classes, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(settings)))
        ax.set_yticklabels([stats.setting for stats in settings], fontsize=8)
        ax.spines[:].set_visible(False)
        ax.set_title(title, fontsize=10)
        figure.colorbar(image, ax=ax, label="F1 (%)")
    return save(figure, stem)
