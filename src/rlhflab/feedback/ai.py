"""The AI annotator: RLAIF labels from a judge under a constitution (Bai et al. 2022b §4, Lee et
al. 2023).

Each query (a prompt and K responses) draws a principle from the constitution (probability ∝
weight). It goes to humans when the principle says `by: human` or with probability
`judge.human_share` — the mixing rule: Bai et al. took harmlessness labels from the AI and
helpfulness labels from people — and to the AI judge otherwise. The draw is made when the query
is stored and kept in its payload (`routing`: principle, its question, `by`), so a resumed run
routes as an uninterrupted one. Humans are the synthetic annotator, or (`judge.humans: people`)
people in the labeling app, who are shown the principle's question; a query for the AI is stored
with overlap 0 (the app offers only queries short of their overlap), so people never see it.
The judge compares every pair (i, j) of the K responses in both orders
(`rlhflab.text.judge.verdicts`):

    P(i ≻ j) = ½·[P_A(i, j) + 1 − P_A(j, i)]

A pair becomes a `text_pair` judgement (left if P > ½, right if P < ½, equal at ½) whose
payload keeps the soft label `p_left`; K > 2 responses are ranked by Σ_j P(i ≻ j) (Borda).
Every AI label records the judge, the principle and the prompt the judge read (first order);
every label records its principle (a person's, through its query's payload).

Measured and logged once (`phase: ai_feedback`): the judge's position bias
½·E[P_A(x, y) + P_A(y, x)] − ½, how often its choice survives swapping the order, and, over
pairs whose gold values differ, its agreement with the gold reward and with the synthetic
annotator (the "human" it replaces; Casper et al. cite 10–46 % AI–human disagreement, Lee et al.
report 78 % AI–human agreement). A judge asked one principle is also scored against that
principle's own rule where the task has one (`judge_world.RULES`: harmless → fewer insults), on
the pairs the rule tells apart, in both orders and in the first order alone:
`ai_principle_agreement`. The whole gold mixes principles; a harmlessness judge is right or wrong
only where the two responses differ in insults. `judge_report` measures the same on any sample
pairs (the bench's test of a judge on policy samples).
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
from rlhflab.text.judge_world import RULES
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


def routing(cfg: RunConfig, n: int) -> list[dict]:
    """The principle each of a run's `n` queries is asked under, its question, who answers it
    (`by`: ai or human) and on which prompts (`prompts`: task or red-team): the payload a query is
    stored with. Drawn in query order from the run's seed, so the first n of a longer run's
    queries are routed the same."""
    principles, human = route(cfg, load_constitution(cfg.judge.constitution), n)
    return [
        {"principle": p.id, "question": p.text, "by": "human" if h else "ai", "prompts": p.prompts}
        for p, h in zip(principles, human)
    ]


def _routed(cfg: RunConfig, ids: list[int], routed: list[dict] | None):
    """Principles and human flags: as stored with the queries (`routing`), else drawn now."""
    constitution = load_constitution(cfg.judge.constitution)
    if routed is None:
        return route(cfg, constitution, len(ids))
    by_id = {p.id: p for p in constitution}
    missing = next((r["principle"] for r in routed if r["principle"] not in by_id), None)
    if missing is not None:
        raise ValueError(
            f"stored queries were asked under principle {missing!r}, which "
            f"judge.constitution ({cfg.judge.constitution}) no longer has"
        )
    return [by_id[r["principle"]] for r in routed], [r["by"] == "human" for r in routed]


def judge_with_ai(
    cfg: RunConfig,
    store: FeedbackStore,
    judge,
    ids: list[int],
    prompts: list[str],
    samples: list[list[str]],
    log: Callable[[dict], None],
    routed: list[dict] | None = None,
) -> dict:
    """Judge the stored queries `ids` (prompts[i] with samples[k][i]), each routed as `routed`
    says (their stored `routing`; None: drawn here); returns the measurements. With
    `judge.humans: people` the queries routed to humans are left to people in the app."""
    assert cfg.text is not None
    principles, human = _routed(cfg, ids, routed)
    people = cfg.judge.humans == "people"
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
    for i in (i for i in range(len(ids)) if human[i] and not people):
        values = [task.gold(samples[k][i]) for k in range(K)]
        meta = {"principle": principles[i].id}
        if K == 2:
            store.add_judgement(ids[i], person.prefer(*values), person.name, payload=meta)
        else:
            store.add_judgement(
                ids[i], "ranking", person.name, payload=meta | {"order": person.rank(values)}
            )
    gold = [(task.gold(it[2]), task.gold(it[3])) for it in items]
    asked = [principles[ai[n // len(pairs)]].id for n in range(len(items))]
    rules = [rule_values(k, *it[2:]) for k, it in zip(asked, items)]
    record = {"phase": "ai_feedback", "ai_labels": len(ai), "human_labels": len(ids) - len(ai)}
    if people:
        record["humans"] = "people (the labeling app)"
    record |= measure(found, gold, SyntheticAnnotator(cfg.feedback.annotator, cfg.seed + 4), rules)
    log(record)
    return record


def rule_values(principle_id: str, x: str, y: str) -> tuple[float, float] | None:
    """The principle's own rule on x and y, if the task knows one (else None)."""
    rule = RULES.get(principle_id)
    return None if rule is None else (rule(x.split()), rule(y.split()))


def judge_report(
    judge, template: str, principle: Principle, task: str, pairs: list[tuple[str, str, str]], person
) -> dict:
    """The judge asked `principle` on (prompt, x, y) pairs in both orders, measured as in a run:
    position bias, order consistency, agreement with gold, the person and the principle's rule."""
    items = [(principle.text, q, x, y) for q, x, y in pairs]
    found = verdicts(judge, template, items, both_orders=True)
    gold = [(TASKS[task].gold(x), TASKS[task].gold(y)) for _, x, y in pairs]
    rules = [rule_values(principle.id, x, y) for _, x, y in pairs]
    return {"pairs": len(pairs)} | measure(found, gold, person, rules)


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


def agrees(p: float, first_better: bool) -> float:
    """1 if P(x ≻ y) picks the better response, 0 if the worse, ½ if neither (P = ½ up to
    rounding: asked both orders, a judge that always says "A" picks nothing)."""
    if abs(p - 0.5) < 1e-9:
        return 0.5
    return float((p > 0.5) == first_better)


def measure(
    found: list[Verdict],
    gold: list[tuple[float, float]],
    person,
    rules: list[tuple[float, float] | None] | None = None,
) -> dict:
    """Position bias, order consistency, and agreement with gold and with the synthetic person
    (pairs whose gold values differ) and with the principle's rule (pairs it tells apart)."""
    if not found:
        return {}
    out: dict = {}
    ruled = [(v, r[0] > r[1]) for v, r in zip(found, rules or []) if r is not None and r[0] != r[1]]
    if ruled:
        out["principle_pairs"] = len(ruled)
        out["ai_principle_agreement"] = float(np.mean([agrees(v.p, g) for v, g in ruled]))
        out["ai_principle_agreement_first_order"] = float(
            np.mean([agrees(v.p_first_xy, g) for v, g in ruled])
        )
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
        out["ai_gold_agreement"] = float(np.mean([agrees(v.p, g) for v, g, _ in strict]))
        out["ai_human_agreement"] = float(
            np.mean([agrees(v.p, h == "left") for v, _, h in strict if h in ("left", "right")])
        )
        out["human_gold_agreement"] = float(
            np.mean([g == (h == "left") for _, g, h in strict if h in ("left", "right")])
        )
    return out
