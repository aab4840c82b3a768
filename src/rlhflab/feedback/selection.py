"""Query selection: which pairs of segments to ask about.

Random pairs, or one of three active rules that sample k× more candidate pairs than needed,
score them with the reward ensemble's members' P̂_m = P̂_m[σ¹ ≻ σ²], and keep n:
  disagreement      the spread (std over m) of P̂_m, highest first (Christiano et al. 2017, §2.2.4);
  information_gain  the expected information gain about the reward from the answer, estimated
                    with the ensemble as posterior samples (BALD, Houlsby et al. 2011):
                        I = H(P̄) − mean_m H(P̂_m),   P̄ = mean_m P̂_m,  H the binary entropy (bits)
                    — high where the members are each confident but disagree;
  diverse           a batch that is informative *and* spread out (Bıyık & Sadigh 2018, batch
                    active preference learning): the 2n candidates of highest information gain,
                    then n of them by farthest-point selection in the feature space of the
                    pair, ψ = φ̄(σ¹) − φ̄(σ²) (each segment's mean observation and action,
                    standardised over the candidates), starting from the most informative — so
                    one informative region of behaviour does not fill the whole batch.
"""

from __future__ import annotations

import numpy as np

from rlhflab.types import Segment

METHODS = ("random", "disagreement", "information_gain", "diverse")


def select_pairs(
    segments: list[Segment],
    n: int,
    method: str,
    rng: np.random.Generator,
    k: int = 4,
    disagreement=None,
    preferences=None,
) -> list[tuple[Segment, Segment]]:
    """Choose n pairs from `segments`. The active rules need `preferences(pairs) -> [M, n]`, the
    members' P̂_m[left ≻ right] (`disagreement(pairs) -> [n]` may stand in for 'disagreement')."""
    if method not in METHODS:
        raise ValueError(f"unknown query selection '{method}' (use {', '.join(METHODS)})")
    if n <= 0:
        return []
    if len(segments) < 2:
        raise ValueError("need at least two segments to form a query")
    n_candidates = n * (1 if method == "random" else k)
    pairs = candidate_pairs(segments, n_candidates, rng)
    if method == "random":
        return pairs[:n]
    if method == "disagreement":
        scores = disagreement(pairs) if disagreement else np.std(preferences(pairs), axis=0)
        keep = np.argsort(-scores, kind="stable")[:n]
    else:
        scores = information_gain(preferences(pairs))
        keep = np.argsort(-scores, kind="stable")[: 2 * n if method == "diverse" else n]
        if method == "diverse":
            keep = keep[farthest_points(pair_features([pairs[i] for i in keep]), n)]
    return [pairs[i] for i in keep]


def _entropy(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


def information_gain(p: np.ndarray) -> np.ndarray:
    """[n] BALD mutual information between the answer and the member, from P̂_m of shape [M, n]."""
    p = np.asarray(p, dtype=np.float64)
    return _entropy(p.mean(0)) - _entropy(p).mean(0)


def pair_features(pairs: list[tuple[Segment, Segment]]) -> np.ndarray:
    """[n, F] ψ = φ̄(σ¹) − φ̄(σ²), φ̄ a segment's mean observation and action, standardised."""

    def phi(s: Segment) -> np.ndarray:
        a = np.asarray(s.actions, np.float64).reshape(len(s), -1)
        return np.concatenate([np.asarray(s.obs, np.float64).mean(0), a.mean(0)])

    psi = np.stack([phi(a) - phi(b) for a, b in pairs])
    return (psi - psi.mean(0)) / (psi.std(0) + 1e-8)


def farthest_points(x: np.ndarray, n: int) -> np.ndarray:
    """Indices of n rows of x chosen greedily, each the farthest from those already chosen,
    starting from row 0 (k-center greedy)."""
    chosen = [0]
    dist = np.linalg.norm(x - x[0], axis=1)
    while len(chosen) < min(n, len(x)):
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(x - x[nxt], axis=1))
    return np.array(chosen)


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
