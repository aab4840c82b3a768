"""Feedback on text: sample K responses per prompt, store them as queries, have them judged
(by the synthetic annotator over the task's gold reward, or by people in the labeling app), and
read the judgements back as best-first comparisons.

Every query and judgement goes through the feedback store, so a text run's labels can be
exported, audited and given by people exactly as a control run's.
"""

from __future__ import annotations

from collections.abc import Callable

from rlhflab.config import RunConfig
from rlhflab.feedback.people import wait_for_labels
from rlhflab.feedback.store import FeedbackStore
from rlhflab.feedback.synthetic import SyntheticAnnotator
from rlhflab.text.sequences import generate
from rlhflab.text.task import TASKS
from rlhflab.types import Judgement, RankedResponses


def ask_for_comparisons(
    cfg: RunConfig, policy, tokenizer, prompts: list[str], store: FeedbackStore
) -> tuple[list[int], list[str], list[list[str]]]:
    """Store one query per label: a prompt (cycling through `prompts`) and K samples of `policy`.
    Returns the query ids, their prompts and the samples ([K][n])."""
    assert cfg.text is not None
    tc, fb = cfg.text, cfg.feedback
    K, n = tc.ranking_k, tc.labels
    chosen = [prompts[i % len(prompts)] for i in range(n)]
    samples = [
        generate(
            policy, tokenizer, chosen, tc.max_new_tokens, tc.temperature, seed=cfg.seed + 100 + k
        )[1]
        for k in range(K)
    ]
    kind = "text_pair" if K == 2 else "ranking"
    overlap = fb.overlap if fb.annotator.kind == "people" else 1
    ids = [
        store.add_text_query(kind, p, [samples[k][i] for k in range(K)], overlap=overlap)
        for i, p in enumerate(chosen)
    ]
    return ids, chosen, samples


def judge_synthetically(
    cfg: RunConfig, store: FeedbackStore, ids: list[int], samples: list[list[str]]
) -> None:
    """The Boltzmann-rational synthetic annotator judges each query by the task's gold reward."""
    assert cfg.text is not None
    task, K = TASKS[cfg.text.task], cfg.text.ranking_k
    annotator = SyntheticAnnotator(cfg.feedback.annotator, cfg.seed + 2)
    for i, qid in enumerate(ids):
        values = [task.gold(samples[k][i]) for k in range(K)]
        if K == 2:
            store.add_judgement(qid, annotator.prefer(*values), annotator.name)
        else:
            order = annotator.rank(values)
            store.add_judgement(qid, "ranking", annotator.name, payload={"order": order})


def wait_for_people(cfg: RunConfig, store: FeedbackStore, log: Callable[[dict], None]) -> None:
    """Block until people have given the run's labels (LabelTimeout after feedback.wait_timeout)."""
    assert cfg.text is not None

    def waiting(have: int, need: int) -> None:
        log({"phase": "waiting", "labels": have, "waiting_for": need})

    wait_for_labels(store, cfg.text.labels, cfg.feedback.wait_timeout, waiting)


def gather_comparisons(
    cfg: RunConfig,
    policy,
    tokenizer,
    prompts: list[str],
    store: FeedbackStore,
    log: Callable[[dict], None],
    judge=None,
) -> list[RankedResponses]:
    """Queries of K samples of `policy`, judged by the synthetic annotator, by people (then
    `LabelTimeout` if they do not answer in time) or by an AI `judge` (`feedback/ai.py`); the
    judged comparisons, best first."""
    ids, chosen, samples = ask_for_comparisons(cfg, policy, tokenizer, prompts, store)
    kind = cfg.feedback.annotator.kind
    if kind == "people":
        wait_for_people(cfg, store, log)
    elif kind == "ai":
        from rlhflab.feedback.ai import judge_with_ai

        if judge is None:
            raise ValueError("feedback.annotator.kind=ai needs a judge")
        judge_with_ai(cfg, store, judge, ids, chosen, samples, log)
    else:
        judge_synthetically(cfg, store, ids, samples)
    return comparisons_from_store(store, soft=cfg.judge.soft_labels)


def comparisons_from_store(store: FeedbackStore, soft: bool = True) -> list[RankedResponses]:
    """Text judgements as best-first comparisons (can't-tell answers are dropped). With `soft`,
    an AI judgement's P(left ≻ right) (`p_left`) is the pair's target: P(first ≻ second) ≥ ½."""
    out = []
    for r in store.judgement_rows():
        q = r.query
        responses = q.payload.get("responses", [])
        if q.kind == "text_pair" and r.label != Judgement.CANT_TELL.value:
            first, second = (responses[1], responses[0]) if r.label == "right" else responses[:2]
            target = 0.5 if r.label == "equal" else 1.0
            p_left = (r.payload or {}).get("p_left")
            if soft and p_left is not None and r.label != "equal":
                target = max(p_left, 1.0 - p_left)
            out.append(RankedResponses(q.payload["prompt"], (first, second), target))
        elif q.kind == "ranking":
            ranked = tuple(responses[i] for i in r.payload["order"])
            out.append(RankedResponses(q.payload["prompt"], ranked))
    return out
