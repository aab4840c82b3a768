"""Assisted evaluation: simulated annotators with limited attention, shown an AI critique
(Saunders et al. 2022, "Self-critiquing models for assisting human evaluators"; scalable
oversight, Bowman et al. 2022).

The built-in task's gold reward is a sentiment term plus flaws, each at a place in the response
(`flaws`): an ungrammatical word pair, a repeated word, a word past the 14th, a missing final
".". Summed over the whole response they give the gold reward exactly:

    gold(y) = tanh(0.75·(#pos − #neg)) − Σ_{flaws f} penalty_f

A *limited-attention annotator* reads only a random share `attention` of each response's
words. It sees the sentiment of the adjectives it read and the flaws at the places it read, and
picks the response with the higher perceived value (Boltzmann, temperature τ; ties at random).

A *critique* points at places in a response and claims a flaw there. The annotator believes each
claim unchecked with probability `trust`, or else checks it by reading that word — seeing the
real flaw if there is one, and no flaw if there is none. Two critics:

    helpful — points at every real flaw of each response (what a good critic model would say);
    wrong   — says nothing of the real flaws, and claims a flaw of `penalty` at the best words
              (the positive adjectives) of the better response — a critic that is wrong on
              purpose, to measure how far it misleads.

`assisted_accuracy` measures agreement with gold on pairs whose gold values differ.
Departure: the critic is scripted from the task's own flaw list, not a language model —
the quantity measured is how an annotator's accuracy moves with a critique of known quality.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from rlhflab.text.task import NEGATIVE, POSITIVE, _allowed


@dataclass(frozen=True)
class Flaw:
    position: int  # index of the word the flaw sits at
    penalty: float


def flaws(words: list[str]) -> list[Flaw]:
    """The fluency flaws of a response, each at a word; their penalties sum to −fluency."""
    out = []
    pairs = list(itertools.pairwise(words))
    if pairs:
        out += [Flaw(i + 1, 1 / len(pairs)) for i, (a, b) in enumerate(pairs) if not _allowed(a, b)]
    else:
        out.append(Flaw(0, 1.0))  # one word: no grammatical pair at all
    content = [(i, w) for i, w in enumerate(words) if w not in ("the", "was", ".")]
    seen: set[str] = set()
    for i, w in content:
        if w in seen:
            out.append(Flaw(i, 1 / len(content)))
        seen.add(w)
    out += [Flaw(i, 0.1) for i in range(14, len(words))]
    if words[-1] != ".":
        out.append(Flaw(len(words) - 1, 0.5))
    return out


def perceived(words: list[str], read: set[int], claimed: list[Flaw], trust: float, rng) -> float:
    """The value an annotator who read the words at `read` gives a response after a critique
    claiming the flaws `claimed`: each claim it believes unchecked with probability `trust`, or
    else checks by reading that word (seeing whatever real flaw is there, and no other)."""
    real, read = flaws(words), set(read)
    believed = 0.0
    counted = {j for j, f in enumerate(real) if f.position in read}
    for f in claimed:
        if rng.random() < trust:
            if f in real:
                counted.add(real.index(f))
            else:
                believed += f.penalty  # a flaw that is not there, believed
        else:
            read.add(f.position)
            counted |= {j for j, g in enumerate(real) if g.position == f.position}
    pos = sum(words[i] in POSITIVE for i in read)
    neg = sum(words[i] in NEGATIVE for i in read)
    return math.tanh(0.75 * (pos - neg)) - sum(real[j].penalty for j in counted) - believed


def critique(kind: str, words: list[str], better: bool, penalty: float) -> list[Flaw]:
    """What a critic claims about a response (`better`: it is the pair's better one by gold)."""
    if kind == "none":
        return []
    if kind == "helpful":
        return flaws(words)
    if kind == "wrong":
        return [Flaw(i, penalty) for i, w in enumerate(words) if w in POSITIVE] if better else []
    raise ValueError(f"unknown critic '{kind}' (use none, helpful, wrong)")


def assisted_accuracy(
    pairs: list[tuple[str, str]],
    attention: float,
    critic: str,
    temperature: float = 0.1,
    trust: float = 0.5,
    penalty: float = 1.0,
    seed: int = 0,
) -> float:
    """Agreement with gold of a limited-attention annotator shown `critic`'s critique, over the
    pairs whose gold values differ."""
    from rlhflab.text.task import TASKS

    gold, rng = TASKS["reviews"].gold, np.random.default_rng(seed)
    right = []
    for x, y in pairs:
        gx, gy = gold(x), gold(y)
        if gx == gy:
            continue
        values = []
        for text, better in ((x, gx > gy), (y, gy > gx)):
            words = text.split()
            read = {i for i in range(len(words)) if rng.random() < attention}
            claimed = critique(critic, words, better, penalty)
            values.append(perceived(words, read, claimed, trust, rng))
        d = values[0] - values[1]
        p = 0.5 if d == 0 else 1 / (1 + math.exp(-max(min(d / temperature, 700), -700)))
        right.append((rng.random() < p) == (gx > gy))
    return float(np.mean(right)) if right else float("nan")
