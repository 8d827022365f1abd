"""The rank rule: a rank from the point estimates, with its interval from the paired bootstrap draws.

Rule (stated once here; the methodology page prints RANK_RULE): the entries of a board (the
real-only reference is not one of them: it is the zero line) are ranked by their point estimate of
the board's metric, 1 = best. Each bootstrap draw (the same resampled seeds and test images for
every entry, so the draws are paired) ranks the entries again; an entry's rank interval is the
central 95% of its ranks over the draws, widened to include its point rank. It is shown as
"2 (1–4)": second on the point estimates, between first and fourth in 95% of the draws. An interval
of one rank is shown as the rank alone.

Properties that follow, and that the tests check on constructed records:
- the rank and its interval do not depend on the order entries are listed in;
- an entry whose paired difference to another is positive in every draw ranks ahead of it in every
  draw, so their intervals can still overlap only through the other entries;
- equal entries (the same predictions) hold the same rank and interval.
This follows the rank-uncertainty reporting of large embedding leaderboards (bootstrap intervals
of ranks) rather than "entries whose CIs overlap share a rank", which is much more conservative
than the paired comparisons the board computes anyway.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from benchmark.protocol import CI_LEVEL

RANK_RULE = (
    "Entries are ranked by the point estimate of the board's metric (1 = best); the real-only reference is not "
    "ranked: it is the zero line every Δ is measured from. The interval beside a rank, \"2 (1–4)\", is the central "
    f"{100 * CI_LEVEL:.0f}% of the entry's ranks over the bootstrap draws, recomputed in each draw from the same "
    "resampled seeds and test images for every entry (paired draws), and always includes the point rank. One rank "
    "alone means the entry held that rank in that share of the draws. Whether an entry differs from real-only is "
    "its verdict (the paired Δ interval), not its rank. Beside the rank, each entry lists the entries significantly "
    "better and worse than it by the CI of their paired difference (runs matched by backbone, ratio and seed)."
)


def rank_intervals(points: Sequence[float], draws: np.ndarray, level: float = CI_LEVEL) -> list[tuple[int, int, int]]:
    """(rank, lo, hi) of each entry: rank by `points` (higher is better; equal points share the better
    rank) and the central `level` of its ranks over `draws` (resamples, entries), the same paired draws."""
    points = np.asarray(points, dtype=float)
    draws = np.asarray(draws, dtype=float)
    if draws.ndim != 2 or draws.shape[1] != points.size:
        raise ValueError(f"draws must be (resamples, {points.size}), got {draws.shape}")
    ranks = 1 + (points[None, :] > points[:, None]).sum(axis=1)
    # draw_ranks[r, i] = 1 + number of entries j with a higher value than i in draw r.
    draw_ranks = 1 + (draws[:, None, :] > draws[:, :, None]).sum(axis=2)
    tail = (1.0 - level) / 2.0
    lows = np.quantile(draw_ranks, tail, axis=0, method="lower")
    highs = np.quantile(draw_ranks, 1.0 - tail, axis=0, method="higher")
    return [(int(r), int(min(lo, r)), int(max(hi, r))) for r, lo, hi in zip(ranks, lows, highs)]


def rank_label(rank: int, lo: int, hi: int) -> str:
    """"2 (1–4)", or "2" when the interval is that one rank."""
    return str(rank) if lo == hi == rank else f"{rank} ({lo}\u2013{hi})"


def ranking_order(points: Sequence[float], ranks: Sequence[int], names: Sequence[str]) -> list[int]:
    """Indices in display order: by rank, then by point estimate (higher first), then by name."""
    return sorted(range(len(points)), key=lambda i: (ranks[i], -points[i], names[i]))
