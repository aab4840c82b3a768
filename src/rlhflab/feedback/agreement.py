"""How feedback was given: per-annotator label mix, agreement with the gold preference and
between annotators, position bias and time per label.

For a judged pair (σ¹, σ²):
  gold agreement     the share of strict answers (left/right) that pick the segment with the
                     larger true return, among pairs whose true returns differ — how often the
                     feedback points the way the known objective does;
  inter-annotator    for queries judged more than once, the share of pairs of judgements that agree
                     (raw percentage agreement);
  position bias      P(left | strict answer). Pairs are shown in random order, so an unbiased
                     annotator says left half the time; the 95% interval is p ± 1.96·√(p(1−p)/n).
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from rlhflab.types import Comparison, Judgement


@dataclass
class AnnotatorStats:
    annotator: str
    labels: int
    counts: dict[str, int]  # per Judgement value
    gold_agreement: float | None
    gold_pairs: int
    left_share: float | None  # position bias: P(left | strict)
    left_share_halfwidth: float | None
    median_seconds: float | None

    def rate(self, label: Judgement) -> float:
        return self.counts.get(label.value, 0) / self.labels if self.labels else float("nan")


def annotator_stats(comparisons: list[Comparison]) -> list[AnnotatorStats]:
    by_annotator: dict[str, list[Comparison]] = defaultdict(list)
    for c in comparisons:
        by_annotator[c.annotator].append(c)
    out = []
    for name, cs in sorted(by_annotator.items()):
        counts = {j.value: sum(c.judgement == j for c in cs) for j in Judgement}
        strict = [c for c in cs if c.judgement in (Judgement.LEFT, Judgement.RIGHT)]
        golden = [c for c in strict if c.left.true_return != c.right.true_return]
        agree = [(c.judgement == Judgement.LEFT) == (c.left.true_return > c.right.true_return) for c in golden]
        left = float(np.mean([c.judgement == Judgement.LEFT for c in strict])) if strict else None
        seconds = [s for c in cs if (s := c.extra.get("seconds")) is not None]
        out.append(AnnotatorStats(
            name, len(cs), counts, float(np.mean(agree)) if agree else None, len(golden), left,
            1.96 * math.sqrt(left * (1 - left) / len(strict)) if strict else None, float(np.median(seconds)) if seconds else None,
        ))
    return out


def inter_annotator_agreement(comparisons: list[Comparison]) -> tuple[float | None, int]:
    """(share of agreeing judgement pairs on the same query, number of such pairs)."""
    by_query: dict[int, list[str]] = defaultdict(list)
    for c in comparisons:
        by_query[c.query_id].append(c.judgement.value)
    pairs = [a == b for labels in by_query.values() for a, b in itertools.combinations(labels, 2)]
    return (float(np.mean(pairs)) if pairs else None), len(pairs)
