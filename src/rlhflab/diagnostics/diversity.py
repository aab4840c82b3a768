"""Diversity of generated text: the signs of mode collapse in a text policy.

On a set of responses, each a sequence of tokens:
  distinct-n     unique n-grams / all n-grams over the set (Li et al. 2016);
  self-BLEU      mean over responses of BLEU-4 with every other response as references
                 (Zhu et al. 2018, Texygen) — 1 when all responses are the same;
  token entropy  H = −Σ_w p(w)·log p(w) of the set's token frequencies, in nats.
A policy over-optimised against a reward model tends to one style: distinct-n and entropy fall,
self-BLEU rises. Text runs log these as `distinct_1`, `distinct_2`, `self_bleu` and `token_entropy`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

Tokens = Sequence[str]


def ngrams(tokens: Tokens, n: int) -> list[tuple]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(responses: Sequence[Tokens], n: int) -> float:
    grams = [g for r in responses for g in ngrams(r, n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def token_entropy(responses: Sequence[Tokens]) -> float:
    counts = Counter(t for r in responses for t in r)
    total = sum(counts.values())
    return -sum(c / total * math.log(c / total) for c in counts.values()) if total else 0.0


def bleu(hypothesis: Tokens, references: Sequence[Tokens], max_n: int = 4) -> float:
    """Sentence BLEU (Papineni et al. 2002): geometric mean of clipped n-gram precisions (add-one
    smoothed for n > 1) times the brevity penalty against the closest reference length."""
    if not hypothesis or not references:
        return 0.0
    log_p = 0.0
    for n in range(1, max_n + 1):
        hyp = Counter(ngrams(hypothesis, n))
        most: Counter[tuple[str, ...]] = Counter()
        for ref in references:
            most |= Counter(ngrams(ref, n))
        matched, total = sum(min(c, most[g]) for g, c in hyp.items()), sum(hyp.values())
        if n > 1:
            matched, total = matched + 1, total + 1
        if matched == 0 or total == 0:
            return 0.0
        log_p += math.log(matched / total) / max_n
    closest = min((abs(len(r) - len(hypothesis)), len(r)) for r in references)[1]
    brevity = 1.0 if len(hypothesis) > closest else math.exp(1 - closest / len(hypothesis))
    return brevity * math.exp(log_p)


def self_bleu(responses: Sequence[Tokens], max_n: int = 4) -> float:
    if len(responses) < 2:
        return 0.0
    others = [[*responses[:i], *responses[i + 1 :]] for i in range(len(responses))]
    return sum(bleu(r, o, max_n) for r, o in zip(responses, others)) / len(responses)


def diversity(texts: list[str]) -> dict[str, float]:
    """distinct-2, self-BLEU and token entropy of whitespace-split responses (one metrics
    record)."""
    words = [t.split() for t in texts]
    return {
        "distinct_2": distinct_n(words, 2),
        "self_bleu": self_bleu(words),
        "token_entropy": token_entropy(words),
    }
