"""Annotator quality and inter-rater agreement for pairwise judgements.

Per annotator: count, agreement with the consensus of the *other* annotators on the
same query (leave-one-out majority), tie and can't-tell rates, position bias (the
share of strict answers that picked the side shown on the left — 0.5 is unbiased),
and the median seconds per label.

Across annotators, on queries judged more than once:
  Fleiss' κ (Fleiss 1971), on the queries with the most common number of raters m:
      P̄ = mean_i (Σ_c n_ic² − m) / (m(m − 1)),  P̄_e = Σ_c p_c²,  κ = (P̄ − P̄_e)/(1 − P̄_e)
  Krippendorff's α (nominal), which allows any number of raters per query:
      α = 1 − (n − 1)·Σ_{c≠k} o_ck / Σ_{c≠k} n_c·n_k
  with o_ck the coincidence matrix Σ_u Σ_{i≠j} [v_ui = c][v_uj = k]/(m_u − 1).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from statistics import median

import numpy as np

from rlhflab.types import Comparison, Judgement

CATEGORIES = ("left", "right", "equal", "cant_tell")


def fleiss_kappa(counts: np.ndarray) -> float:
    """counts[i, c]: raters who put item i in category c; every row sums to the same m ≥ 2."""
    counts = np.asarray(counts, dtype=float)
    m = counts.sum(1)
    if len(counts) == 0 or not np.all(m == m[0]) or m[0] < 2:
        raise ValueError(
            "Fleiss' κ needs at least one item and the same number (≥ 2) of raters per item"
        )
    m = m[0]
    p_i = ((counts**2).sum(1) - m) / (m * (m - 1))
    p_c = counts.sum(0) / counts.sum()
    p_bar, p_e = p_i.mean(), (p_c**2).sum()
    return float("nan") if p_e == 1 else float((p_bar - p_e) / (1 - p_e))


def krippendorff_alpha(units: list[list[str]]) -> float:
    """Nominal α over units, each the list of values its raters gave (units with < 2 values are
    skipped)."""
    units = [u for u in units if len(u) >= 2]
    cats = sorted({v for u in units for v in u})
    if not units or len(cats) < 2:
        return float("nan") if not units else 1.0
    idx = {c: i for i, c in enumerate(cats)}
    o = np.zeros((len(cats), len(cats)))
    for u in units:
        c = Counter(u)
        for a, na in c.items():
            for b, nb in c.items():
                o[idx[a], idx[b]] += (na * (nb - (a == b))) / (len(u) - 1)
    n_c = o.sum(1)
    n = n_c.sum()
    disagree_observed = o.sum() - np.trace(o)
    disagree_expected = n_c.sum() ** 2 - (n_c**2).sum()
    return float(1 - (n - 1) * disagree_observed / disagree_expected)


def annotator_report(rows: list[dict]) -> dict:
    """rows: {query_id, annotator, label, shown_swapped, seconds[, gold]} for pairwise judgements;
    `gold` is +1 when the left segment is truly better, −1 when the right is, 0 for a true tie."""
    by_query: dict[int, list[dict]] = defaultdict(list)
    for r in rows:
        by_query[r["query_id"]].append(r)
    per = {}
    for name in sorted({r["annotator"] for r in rows}):
        mine = [r for r in rows if r["annotator"] == name]
        labels = Counter(r["label"] for r in mine)
        strict = [r for r in mine if r["label"] in ("left", "right")]
        shown_left = [(r["label"] == "left") != bool(r.get("shown_swapped")) for r in strict]
        golden = [r for r in strict if r.get("gold")]
        gold_agree = [(r["label"] == "left") == (r["gold"] > 0) for r in golden]
        p_left = float(np.mean(shown_left)) if shown_left else None
        agree = []
        for r in mine:
            others = Counter(o["label"] for o in by_query[r["query_id"]] if o["annotator"] != name)
            if others:
                top = others.most_common()
                if len(top) == 1 or top[0][1] > top[1][1]:  # a strict majority of the others
                    agree.append(r["label"] == top[0][0])
        seconds = [r["seconds"] for r in mine if r.get("seconds") is not None]
        per[name] = {
            "count": len(mine),
            "counts": {c: labels[c] for c in CATEGORIES},
            "agreement_with_consensus": float(np.mean(agree)) if agree else None,
            "compared_with_consensus": len(agree),
            "tie_rate": labels["equal"] / len(mine),
            "cant_tell_rate": labels["cant_tell"] / len(mine),
            "left_shown_win_rate": p_left,
            "left_shown_halfwidth": None
            if p_left is None
            else 1.96 * math.sqrt(p_left * (1 - p_left) / len(shown_left)),
            "gold_agreement": float(np.mean(gold_agree)) if gold_agree else None,
            "gold_pairs": len(golden),
            "median_seconds": median(seconds) if seconds else None,
        }
    overlapping = [[r["label"] for r in rs] for rs in by_query.values() if len(rs) >= 2]
    kappa = None
    if overlapping:
        m = Counter(len(u) for u in overlapping).most_common(1)[0][0]
        same = [u for u in overlapping if len(u) == m]
        counts = np.array([[u.count(c) for c in CATEGORIES] for u in same])
        kappa = fleiss_kappa(counts)
    pair_agreement = [a == b for u in overlapping for a, b in itertools.combinations(u, 2)]
    return {
        "annotators": per,
        "overlapping_queries": len(overlapping),
        "pairwise_agreement": float(np.mean(pair_agreement)) if pair_agreement else None,
        "judgement_pairs": len(pair_agreement),
        "fleiss_kappa": None if kappa is None or np.isnan(kappa) else kappa,
        "krippendorff_alpha": None if not overlapping else _finite(krippendorff_alpha(overlapping)),
        "judgements": len(rows),
    }


def _finite(x: float) -> float | None:
    return None if np.isnan(x) else x


def comparison_rows(comparisons: list[Comparison]) -> list[dict]:
    """Segment comparisons as `annotator_report` rows, with the gold side from the true returns."""
    return [
        {
            "query_id": c.query_id,
            "annotator": c.annotator,
            "label": c.judgement.value,
            "shown_swapped": c.extra.get("shown_swapped"),
            "seconds": c.extra.get("seconds"),
            "gold": float(np.sign(c.left.judged_return - c.right.judged_return)),
        }
        for c in comparisons
    ]


@dataclass
class AnnotatorStats:
    """One annotator's row of `annotator_report`, for reports and the disclosure sheet."""

    annotator: str
    labels: int
    counts: dict[str, int]
    gold_agreement: float | None
    gold_pairs: int
    left_share: float | None  # position bias: P(shown-left | strict)
    left_share_halfwidth: float | None
    median_seconds: float | None

    def rate(self, label: Judgement) -> float:
        return self.counts.get(label.value, 0) / self.labels if self.labels else float("nan")


def annotator_stats(comparisons: list[Comparison]) -> list[AnnotatorStats]:
    per = annotator_report(comparison_rows(comparisons))["annotators"]
    return [
        AnnotatorStats(
            name,
            a["count"],
            a["counts"],
            a["gold_agreement"],
            a["gold_pairs"],
            a["left_shown_win_rate"],
            a["left_shown_halfwidth"],
            a["median_seconds"],
        )
        for name, a in per.items()
    ]


def inter_annotator_agreement(comparisons: list[Comparison]) -> tuple[float | None, int]:
    """(share of agreeing pairs of judgements of the same query, number of such pairs)."""
    report = annotator_report(comparison_rows(comparisons))
    return report["pairwise_agreement"], report["judgement_pairs"]


def gold_scores(answers: list[dict], window: int = 10) -> dict:
    """Per annotator, from their answers to gold questions (dicts with annotator, at, correct,
    in time order): how many, the share right, and the share right in each successive block of
    `window` answers — the annotator's accuracy over time."""
    by: dict[str, list[dict]] = defaultdict(list)
    for a in answers:
        by[a["annotator"]].append(a)
    out = {}
    for name, rows in by.items():
        right = [bool(r["correct"]) for r in rows]
        blocks = [
            {
                "until": rows[min(i + window, len(rows)) - 1]["at"].isoformat(),
                "answers": len(right[i : i + window]),
                "accuracy": float(np.mean(right[i : i + window])),
            }
            for i in range(0, len(right), window)
        ]
        out[name] = {"answers": len(right), "accuracy": float(np.mean(right)), "over_time": blocks}
    return out
