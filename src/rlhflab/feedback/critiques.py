"""Critiques read by a judge into preferences: free-text feedback as reward-model training signal
(Casper et al. 2023 §3.2.2: richer feedback than one bit; Saunders et al. 2022, "Self-critiquing
models", use critiques to help evaluation).

A critique is written on one response (a `critique` query: the prompt and the response; the
answer's payload `{"text": …}`, from the labeling app or `rlhflab feedback import … critiques`).
Two critiqued responses x, y to the same prompt are shown to an AI judge through its usual
interface (`rlhflab.text.judge.verdicts`), the critique standing where the response would, under
each principle k the critique speaks to, both orders:

    P(x ≻ y) = Σ_k w_k·P_k(x ≻ y) / Σ_k w_k,    P_k = ½·[P_A(c_x, c_y | k) + 1 − P_A(c_y, c_x | k)]

and the pair (x, y), better first, is a comparison with the soft target max(P, 1 − P) — it goes
to the reward model beside comparisons, corrections and ratings (`feedback/text.py`). The judge
reads only the critiques: what the annotator wrote down is what it learns. A pair whose
verdict is exactly ½ (nothing to tell them apart) adds nothing.

`synthetic_critique` is the synthetic annotator's critique on the built-in reviews task: it
quotes the clauses it finds fault with — an insult at a person, a negative adjective — each
noticed with probability 1 − ε (the annotator's error rate), in the task's own words, so a judge
of the task (`judge_world.ScriptedJudge`, a simulated judge) can read it; "no problems" when it
finds none. Departure: a person's critique is free prose a real LM judge would read; this one is
a list of quotes.
"""

from __future__ import annotations

import itertools

import numpy as np

from rlhflab.feedback.store import FeedbackStore
from rlhflab.text.constitution import Principle
from rlhflab.text.judge import verdicts
from rlhflab.text.task import NEGATIVE, insult_spans
from rlhflab.types import RankedResponses

NOTHING = "no problems"


def synthetic_critique(response: str, error_rate: float, rng: np.random.Generator) -> str:
    """The clauses of `response` with an insult at a person or a negative adjective, each quoted
    with probability 1 − `error_rate`; `NOTHING` when none is quoted."""
    words = response.split()
    insults = set(insult_spans(words))
    quotes: list[str] = []
    clause: list[tuple[int, str]] = []
    for i, w in enumerate([*words, "."]):
        if w in (".", "and", "but", "while"):
            flawed = any(j in insults or v in NEGATIVE for j, v in clause)
            if flawed and rng.random() >= error_rate:
                quotes.append(" ".join(v for _, v in clause) + " .")
            clause = []
        else:
            clause.append((i, w))
    return " ".join(quotes) if quotes else NOTHING


def critiques_by_prompt(store: FeedbackStore) -> dict[str, list[tuple[int, str, str, str]]]:
    """Stored critiques grouped by prompt: (query id, response, critique, annotator)."""
    out: dict[str, list[tuple[int, str, str, str]]] = {}
    for r in store.judgement_rows():
        if r.query.kind == "critique":
            p = r.query.payload
            row = (r.query_id, p["responses"][0], r.payload["text"], r.annotator)
            out.setdefault(p["prompt"], []).append(row)
    return out


def critique_pairs(
    store: FeedbackStore,
    judge,
    principles: list[Principle],
    template: str,
    both_orders: bool = True,
) -> list[RankedResponses]:
    """Every pair of distinct critiqued responses to one prompt, read by `judge` under
    `principles` (weights w_k) into a soft-labelled comparison, better first; the pair's query
    id is its first critique's (validation split), its annotator the critic's (or "a+b")."""
    groups = critiques_by_prompt(store)
    pairs = [
        (prompt, a, b)
        for prompt, rows in groups.items()
        for a, b in itertools.combinations(rows, 2)
        if a[1] != b[1]
    ]
    if not pairs:
        return []
    items = [(k.text, prompt, a[2], b[2]) for prompt, a, b in pairs for k in principles]
    found = verdicts(judge, template, items, both_orders)
    w = np.array([k.weight for k in principles], dtype=np.float64)
    p = np.array([v.p for v in found]).reshape(len(pairs), len(principles)) @ (w / w.sum())
    out = []
    for (prompt, a, b), pa in zip(pairs, p):
        if pa == 0.5:
            continue
        first, second = (a, b) if pa > 0.5 else (b, a)
        who = a[3] if a[3] == b[3] else f"{a[3]}+{b[3]}"
        target = float(max(pa, 1.0 - pa))
        out.append(RankedResponses(prompt, (first[1], second[1]), target, min(a[0], b[0]), who))
    return out
