"""The AI annotator: RLAIF labels from a judge under a constitution (Bai et al. 2022b §4, Lee et
al. 2023).

Each query (a prompt and K responses) draws a principle from the constitution (probability ∝
weight). It goes to the synthetic human annotator when the principle says `by: human` or with
probability `judge.human_share` — the mixing rule: Bai et al. took harmlessness labels from the
AI and helpfulness labels from people — and to the AI judge otherwise. The judge compares every
pair (i, j) of the K responses in both orders (`rlhflab.text.judge.verdicts`):

    P(i ≻ j) = ½·[P_A(i, j) + 1 − P_A(j, i)]

A pair becomes a `text_pair` judgement (left if P > ½, right if P < ½, equal at ½) whose
payload keeps the soft label `p_left`; K > 2 responses are ranked by Σ_j P(i ≻ j) (Borda).
Every AI label records the judge, the principle and the prompt the judge read (first order);
every label records its principle.

Measured and logged once (`phase: ai_feedback`): the judge's position bias
½·E[P_A(x, y) + P_A(y, x)] − ½, how often its choice survives swapping the order, and, over
pairs whose gold values differ, its agreement with the gold reward and with the synthetic
annotator (the "human" it replaces; Casper et al. cite 10–46 % AI–human disagreement, Lee et al.
report 78 % AI–human agreement).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np

from rlhflab.config import RunConfig
from rlhflab.feedback.store import FeedbackStore
from rlhflab.feedback.synthetic import SyntheticAnnotator
from rlhflab.text.constitution import Principle, load_constitution
from rlhflab.text.judge import Verdict, render, verdicts
from rlhflab.text.task import TASKS

AI_ANNOTATOR = "ai"


def route(
    cfg: RunConfig, principles: list[Principle], n: int
) -> tuple[list[Principle], list[bool]]:
    """Each query's principle, and whether it goes to the (synthetic) human annotator."""
    rng = np.random.default_rng(cfg.seed + 3)
    w = np.array([p.weight for p in principles])
    picks = [principles[int(k)] for k in rng.choice(len(principles), size=n, p=w / w.sum())]
    human = [p.by == "human" or rng.random() < cfg.judge.human_share for p in picks]
    return picks, human


def judge_with_ai(
    cfg: RunConfig,
    store: FeedbackStore,
    judge,
    ids: list[int],
    prompts: list[str],
    samples: list[list[str]],
    log: Callable[[dict], None],
) -> dict:
    """Judge the stored queries `ids` (prompts[i] with samples[k][i]); returns the measurements."""
    assert cfg.text is not None
    principles, human = route(cfg, load_constitution(cfg.judge.constitution), len(ids))
    task, K = TASKS[cfg.text.task], len(samples)
    person = SyntheticAnnotator(cfg.feedback.annotator, cfg.seed + 2)
    ai = [i for i in range(len(ids)) if not human[i]]
    pairs = list(itertools.combinations(range(K), 2))
    items = [
        (principles[i].text, prompts[i], samples[a][i], samples[b][i]) for i in ai for a, b in pairs
    ]
    found = verdicts(judge, cfg.judge.template, items, cfg.judge.both_orders)
    for n, i in enumerate(ai):
        mine = found[n * len(pairs) : (n + 1) * len(pairs)]
        _store_ai(cfg, store, judge.name, ids[i], principles[i], items[n * len(pairs)], mine, K)
    for i in (i for i in range(len(ids)) if human[i]):
        values = [task.gold(samples[k][i]) for k in range(K)]
        meta = {"principle": principles[i].id}
        if K == 2:
            store.add_judgement(ids[i], person.prefer(*values), person.name, payload=meta)
        else:
            store.add_judgement(
                ids[i], "ranking", person.name, payload=meta | {"order": person.rank(values)}
            )
    gold = [(task.gold(it[2]), task.gold(it[3])) for it in items]
    record = {"phase": "ai_feedback", "ai_labels": len(ai), "human_labels": len(ids) - len(ai)}
    record |= measure(found, gold, SyntheticAnnotator(cfg.feedback.annotator, cfg.seed + 4))
    log(record)
    return record


def _store_ai(cfg, store, judge_name, qid, principle, first_item, found: list[Verdict], K: int):
    meta = {
        "judge": judge_name,
        "principle": principle.id,
        "judge_prompt": render(cfg.judge.template, *first_item),
    }
    if K == 2:
        v = found[0]
        label = "left" if v.p > 0.5 else "right" if v.p < 0.5 else "equal"
        meta |= {"p_left": v.p, "p_first": [v.p_first_xy, _num(v.p_first_yx)]}
        store.add_judgement(qid, label, AI_ANNOTATOR, payload=meta)
        return
    wins = np.zeros(K)
    for (a, b), v in zip(itertools.combinations(range(K), 2), found):
        wins[a] += v.p
        wins[b] += 1 - v.p
    order = [int(k) for k in np.argsort(-wins, kind="stable")]
    store.add_judgement(
        qid, "ranking", AI_ANNOTATOR, payload=meta | {"order": order, "wins": wins.tolist()}
    )


def _num(x: float) -> float | None:
    return None if x != x else x  # NaN (one order only) is not JSON


def measure(found: list[Verdict], gold: list[tuple[float, float]], person) -> dict:
    """Position bias, order consistency, and agreement with gold and with the synthetic person
    (pairs whose gold values differ)."""
    if not found:
        return {}
    out: dict = {}
    both = [v for v in found if v.p_first_yx == v.p_first_yx]
    if both:
        out["position_bias"] = float(np.mean([v.position_bias for v in both]))
        out["order_consistency"] = float(
            np.mean([(v.p_first_xy > 0.5) == (v.p_first_yx < 0.5) for v in both])
        )
    strict = [
        (v, gx > gy, person.prefer(gx, gy).value) for v, (gx, gy) in zip(found, gold) if gx != gy
    ]
    if strict:
        out["ai_gold_agreement"] = float(np.mean([(v.p > 0.5) == g for v, g, _ in strict]))
        out["ai_human_agreement"] = float(
            np.mean([(v.p > 0.5) == (h == "left") for v, _, h in strict if h in ("left", "right")])
        )
        out["human_gold_agreement"] = float(
            np.mean([g == (h == "left") for _, g, h in strict if h in ("left", "right")])
        )
    return out
