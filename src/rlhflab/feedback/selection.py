"""Query selection: which pairs of segments to ask about.

Random pairs, or ensemble disagreement (Christiano et al. 2017, §2.2.4): sample k×
more candidate pairs than needed, score each by the spread (std) of the ensemble
members' P̂[σ¹ ≻ σ²], and keep the most disputed.
"""

from __future__ import annotations

import numpy as np

from rlhflab.types import Segment


def select_pairs(
    segments: list[Segment],
    n: int,
    method: str,
    rng: np.random.Generator,
    k: int = 4,
    disagreement=None,
) -> list[tuple[Segment, Segment]]:
    """Choose n pairs from `segments`; `disagreement(pairs) -> scores` is needed for method "
    "'disagreement'."""
    if n <= 0:
        return []
    if len(segments) < 2:
        raise ValueError("need at least two segments to form a query")
    n_candidates = n * (k if method == "disagreement" else 1)
    pairs = candidate_pairs(segments, n_candidates, rng)
    if method == "random":
        return pairs[:n]
    if method == "disagreement":
        scores = disagreement(pairs)
        keep = np.argsort(-scores, kind="stable")[:n]
        return [pairs[i] for i in keep]
    raise ValueError(f"unknown query selection '{method}' (use random or disagreement)")


def candidate_pairs(
    segments: list[Segment], n: int, rng: np.random.Generator
) -> list[tuple[Segment, Segment]]:
    """n pairs of different segments; each segment in one pair while there are enough of them.

    Segments are shuffled and paired off, so the candidates are as diverse as the segments
    allow; a pair of identical segments (same observations and actions) is never formed."""
    pairs: list[tuple[Segment, Segment]] = []
    for _ in range(4 * n):  # reshuffle when the segments run out; bounded, for degenerate input
        order = rng.permutation(len(segments))
        for i, j in zip(order[0::2], order[1::2]):
            a, b = segments[i], segments[j]
            if not (np.array_equal(a.obs, b.obs) and np.array_equal(a.actions, b.actions)):
                pairs.append((a, b))
            if len(pairs) == n:
                return pairs
    if not pairs:
        raise ValueError("every candidate pair holds two identical segments")
    return pairs
