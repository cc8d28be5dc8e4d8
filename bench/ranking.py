"""Ranking metrics over one ordered result list, shared by the retrieval benchmark's parts.

Plain functions of the result's sources (a document's `source`, in result order) and the set of
sources that answer the question, so they are the same for the demo and the real manual.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence


def first_rank(sources: Sequence[str], relevant: Collection[str], *, depth: int) -> int | None:
    """1-based position of the first result from a relevant source within `depth`, or None."""
    return next((i for i, source in enumerate(sources[:depth], 1) if source in relevant), None)


def hit(sources: Sequence[str], relevant: Collection[str], *, depth: int) -> float:
    return float(first_rank(sources, relevant, depth=depth) is not None)


def reciprocal_rank(sources: Sequence[str], relevant: Collection[str], *, depth: int) -> float:
    rank = first_rank(sources, relevant, depth=depth)
    return 1 / rank if rank else 0.0


def ndcg(sources: Sequence[str], relevant: Collection[str], *, depth: int) -> float:
    """Binary nDCG: each relevant source gains once, at the first position it appears (so several
    chunks of one page earn no more than one); the ideal ranks every relevant source first."""
    seen: set[str] = set()
    gain = 0.0
    for i, source in enumerate(sources[:depth], 1):
        if source in relevant and source not in seen:
            seen.add(source)
            gain += 1 / math.log2(i + 1)
    ideal = sum(1 / math.log2(i + 1) for i in range(1, min(len(relevant), depth) + 1))
    return gain / ideal if ideal else 0.0


def distinct(sources: Sequence[str]) -> list[str]:
    """The sources in order of first appearance: ranks counted over documents, not chunks."""
    return list(dict.fromkeys(sources))
