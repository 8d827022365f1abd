"""The rank rule: entries whose confidence intervals overlap share a rank.

Rule (stated once here; the methodology page prints TIE_RULE): an entry's rank is one plus the
number of entries whose whole CI lies strictly above its own CI (their lower bound is greater than
its upper bound), i.e. one plus the number of entries that are significantly better than it.

Properties that follow, and that the tests check on constructed records:
- the rank does not depend on the order entries are listed in;
- rank 1 is held by exactly the entries whose upper bound reaches the highest lower bound on the
  board (overlapping the entry with the highest *point* is not enough: A [50, 90], B [64, 66],
  C [55, 63] rank 1, 1, 2, as B lies above C);
- an entry never ranks ahead of an entry that is significantly better than it;
- ranks are shown as "=r" when two or more entries hold rank r, else "r".
A CI overlap is not transitive, so two entries whose CIs overlap can still hold different ranks
when a third entry's CI lies above one of them and not the other (A [60, 70], B [45, 62],
C [30, 50]: A and B rank 1; C ranks 2 because A lies above it, although its CI overlaps B's).
The rank uses each entry's own (marginal) CI, not a paired test between two entries, and a wider
CI reaches higher: an entry with a lower point estimate but a wider interval can outrank one with
a higher point. This is the rank used by Chatbot Arena's "rank (UB)" column; it never chains a tie
down the whole table the way "shares the rank of any overlapping entry" would.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

TIE_RULE = (
    "An entry's rank is 1 + the number of entries whose whole confidence interval lies above its own "
    "(lower bound greater than its upper bound): the number of entries significantly better than it. "
    "Rank 1 goes to every entry whose interval reaches the highest lower bound on the board; a rank held by "
    "several entries is shown as \"=r\". Overlap is not transitive: A [60, 70], B [45, 62], C [30, 50] rank "
    "1, 1 and 2 (A lies above C), although C's interval overlaps B's. Each entry's own interval is used, not a "
    "paired test between two entries, so a wider interval can lift an entry above one with a higher point "
    "estimate, and two entries whose paired difference is significant can share a rank. Whether an entry "
    "differs from real-only is its verdict (the paired Δ interval), not its rank. Rows are listed by rank, "
    "then by point estimate. The sharper comparison is listed beside the rank: for each entry, the entries "
    "significantly better and worse than it by the CI of their paired difference (the same test images, runs "
    "matched by backbone, ratio and seed, the same resampled seeds and images on both sides)."
)


def ranks_from_intervals(intervals: Sequence[tuple[float, float]]) -> list[int]:
    """Rank of each (lo, hi) interval: 1 + how many intervals lie entirely above it."""
    for lo, hi in intervals:
        if lo > hi:
            raise ValueError(f"confidence interval with lower bound {lo} above upper bound {hi}")
    return [1 + sum(1 for other_lo, _ in intervals if other_lo > hi) for _, hi in intervals]


def rank_labels(ranks: Sequence[int]) -> list[str]:
    """"=r" for a rank held by several entries, "r" otherwise."""
    counts = Counter(ranks)
    return [f"={rank}" if counts[rank] > 1 else str(rank) for rank in ranks]


def ranking_order(points: Sequence[float], ranks: Sequence[int], names: Sequence[str]) -> list[int]:
    """Indices in display order: by rank, then by point estimate (higher first), then by name."""
    return sorted(range(len(points)), key=lambda i: (ranks[i], -points[i], names[i]))
