"""The built-in text task: short film reviews, with a known gold reward.

A deterministic grammar generates the corpus (Step 0 pretraining), the prompts and the
demonstrations. The gold reward has two competing terms, as real preferences do:

    gold(y) = sentiment(y) + fluency(y)
    sentiment = tanh(0.75·(#positive − #negative adjectives))          ∈ (−1, 1)
    fluency   = −(1 − grammatical bigram share) − repeated-word share
                − 0.1·max(0, words − 14) − 0.5·[no final "."]          ≤ 0

A proxy reward model fitted on a limited number of noisy preferences between fluent
samples learns "positive words are good" long before it learns the fluency terms, so
a policy optimised hard against it piles on positive words — repeated, ungrammatical,
too long — and the gold reward falls while the proxy rises (Gao et al. 2022). Gold is
computed on whitespace-separated words of the decoded text, so it applies to any
tokenizer (a hub model's too).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

NOUNS = ["film", "movie", "show", "play", "series", "sequel"]
ASPECTS = [
    "plot",
    "acting",
    "music",
    "ending",
    "story",
    "cast",
    "script",
    "pacing",
    "camera",
    "sound",
    "dialogue",
    "humour",
]
POSITIVE = ["great", "good", "wonderful", "superb", "lovely", "brilliant", "moving", "clever"]
NEGATIVE = ["bad", "awful", "boring", "dull", "terrible", "weak", "clumsy", "bland"]
NEUTRAL = ["fine", "okay", "long", "short", "loud", "quiet", "simple", "strange"]
ADVERBS = ["very", "really", "quite", "rather", "so"]
JOINS = ["and", "but", "while"]


@dataclass(frozen=True)
class ReviewsTask:
    """Prompts "review of the <noun> :" and responses "the <aspect> was [adv] <adj> [join …] ."."""

    name: str = "reviews"

    @property
    def vocabulary(self) -> list[str]:
        return sorted(
            {
                *("review", "of", "the", ":", "was", "."),
                *NOUNS,
                *ASPECTS,
                *POSITIVE,
                *NEGATIVE,
                *NEUTRAL,
                *ADVERBS,
                *JOINS,
            }
        )

    def prompts(self, n: int, seed: int) -> list[str]:
        rng = np.random.default_rng(seed)
        return [f"review of the {NOUNS[i]} :" for i in rng.integers(len(NOUNS), size=n)]

    def response(self, rng: np.random.Generator, mood: float | None = None) -> str:
        """One or two clauses; `mood` is the chance an adjective is positive (else
        negative/neutral)."""
        mood = rng.uniform() if mood is None else mood
        clauses = []
        for _ in range(1 + int(rng.uniform() < 0.6)):
            u = rng.uniform()
            adj_pool = (
                POSITIVE if u < mood else NEGATIVE if u < mood + (1 - mood) * 0.7 else NEUTRAL
            )
            adv = [ADVERBS[rng.integers(len(ADVERBS))]] if rng.uniform() < 0.4 else []
            clauses.append(
                " ".join(
                    [
                        "the",
                        ASPECTS[rng.integers(len(ASPECTS))],
                        "was",
                        *adv,
                        adj_pool[rng.integers(len(adj_pool))],
                    ]
                )
            )
        join = f" {JOINS[rng.integers(len(JOINS))]} "
        return join.join(clauses) + " ."

    def corpus(self, n: int, seed: int) -> list[tuple[str, str]]:
        """(prompt, response) pairs for pretraining and demonstrations."""
        rng = np.random.default_rng(seed)
        prompts = self.prompts(n, seed + 1)
        return [(p, self.response(rng)) for p in prompts]

    # -- the gold reward -------------------------------------------------------------------
    def gold(self, response: str) -> float:
        words = response.split()
        if not words:
            return -2.0
        return sentiment(words) + fluency(words)


def sentiment(words: list[str]) -> float:
    """tanh(0.75·(#positive − #negative)): the gold reward's first term."""
    pos = sum(w in POSITIVE for w in words)
    neg = sum(w in NEGATIVE for w in words)
    return math.tanh(0.75 * (pos - neg))


def fluency(words: list[str]) -> float:
    """−(1 − grammatical bigram share) − repeated-word share − length and full-stop penalties:
    the gold reward's second term (≤ 0)."""
    if not words:
        return -2.0
    pairs = list(itertools.pairwise(words))
    grammatical = sum(_allowed(a, b) for a, b in pairs) / len(pairs) if pairs else 0.0
    content = [w for w in words if w not in ("the", "was", ".")]
    repeated = 1 - len(set(content)) / len(content) if content else 0.0
    return -(1 - grammatical) - repeated - 0.1 * max(0, len(words) - 14) - 0.5 * (words[-1] != ".")


_ADJ = set(POSITIVE + NEGATIVE + NEUTRAL)
_NEXT = {
    "the": set(ASPECTS),
    "was": set(ADVERBS) | _ADJ,
    **{a: {"was"} for a in ASPECTS},
    **{a: _ADJ for a in ADVERBS},
    **{a: set(JOINS) | {"."} for a in _ADJ},
    **{j: {"the"} for j in JOINS},
}


def _allowed(a: str, b: str) -> bool:
    return b in _NEXT.get(a, ())


TASKS = {"reviews": ReviewsTask()}
