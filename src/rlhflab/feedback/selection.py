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
    """Choose n pairs from `segments`; `disagreement(pairs) -> scores` is needed for method 'disagreement'."""
    if n <= 0:
        return []
    if len(segments) < 2:
        raise ValueError("need at least two segments to form a query")
    n_candidates = n * (k if method == "disagreement" else 1)
    pairs = []
    for _ in range(n_candidates):
        i, j = rng.choice(len(segments), size=2, replace=False)
        pairs.append((segments[i], segments[j]))
    if method == "random":
        return pairs
    if method == "disagreement":
        scores = disagreement(pairs)
        keep = np.argsort(-scores, kind="stable")[:n]
        return [pairs[i] for i in keep]
    raise ValueError(f"unknown query selection '{method}' (use random or disagreement)")
