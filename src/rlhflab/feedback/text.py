"""Feedback on text: sample K responses per prompt, store them as queries, have them judged
(by the synthetic annotator over the task's gold reward, or by people in the labeling app), and
read the judgements back as best-first comparisons.

Every query and judgement goes through the feedback store, so a text run's labels can be
exported, audited and given by people exactly as a control run's.

Richer feedback from people (the app, or an import) trains the reward model too:
  corrections  an edited response y' of y: the comparison y' ≻ y (the annotator preferred their
               own edit), as in learning from corrections (Casper et al. 2023, §3.1.4; Jeon et
               al. 2020's reward-rational implicit choice);
  ratings      two responses to the same prompt rated by the same annotator: the higher-rated ≻
               the lower (equal ratings: a tie, target ½). Comparing an annotator only with
               themselves makes the pair indifferent to how they use the 1–7 scale (a
               per-annotator calibration by ranks); a rating with no other rating of its
               prompt by its annotator adds nothing.
  critiques    read by an AI judge into comparisons (`feedback/critiques.py`), when the run has
               a judge.
  steps        a pair judged step by step (`payload["parts"]`: one judgement per sentence, as
               the app's part rows give them) keeps its step labels, turned with the pair
               (`RankedResponses.parts`; per-step feedback, `reward/process.py`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rlhflab.config import RunConfig
from rlhflab.feedback.people import wait_for_labels
from rlhflab.feedback.population import AnnotatorPopulation
from rlhflab.feedback.store import FeedbackStore
from rlhflab.feedback.synthetic import SyntheticAnnotator
from rlhflab.text.sequences import generate
from rlhflab.text.task import NEGATIVE, POSITIVE, TASKS, insult_spans
from rlhflab.types import Judgement, RankedResponses


def ask_for_comparisons(
    cfg: RunConfig, policy, tokenizer, prompts: list[str], store: FeedbackStore
) -> list[int]:
    """Store the queries the run still lacks, up to one per label: a prompt (cycling through
    `prompts`; the task's red-team prompts for an AI-feedback query whose principle says
    `prompts: red-team`) and K samples of `policy`. A resumed run keeps the queries it has and
    asks only the rest; the samples are drawn with the same seeds either way, so the queries are
    those an uninterrupted run would have asked. Returns the new query ids."""
    assert cfg.text is not None
    tc, fb = cfg.text, cfg.feedback
    K, n, have = tc.ranking_k, tc.labels, store.count_queries()
    if have >= n:
        return []
    routed: list[dict] = [{}] * n
    if fb.annotator.kind == "ai":  # each query's principle and who answers it (`feedback/ai.py`)
        from rlhflab.feedback.ai import routing

        routed = routing(cfg, n)
    chosen = [prompts[i % len(prompts)] for i in range(n)]
    if any(r.get("prompts") == "red-team" for r in routed):  # e.g. harmlessness (Bai et al.)
        red_team = TASKS[tc.task].red_team_prompts(n, cfg.seed + 61)
        if not red_team:
            raise ValueError(
                f"judge.constitution asks for red-team prompts (prompts: red-team), and the "
                f"task {tc.task} has none"
            )
        chosen = [
            red_team[i] if r.get("prompts") == "red-team" else chosen[i]
            for i, r in enumerate(routed)
        ]
    samples = [
        generate(
            policy, tokenizer, chosen, tc.max_new_tokens, tc.temperature, seed=cfg.seed + 100 + k
        )[1]
        for k in range(K)
    ]
    kind = "text_pair" if K == 2 else "ranking"
    people = fb.annotator.kind == "people" or (
        fb.annotator.kind == "ai" and cfg.judge.humans == "people"
    )

    def overlap(meta: dict) -> int:  # an AI query wants no judgement from people: the app skips it
        return 0 if meta.get("by") == "ai" else fb.overlap if people else 1

    return [
        store.add_text_query(
            kind,
            chosen[i],
            [samples[k][i] for k in range(K)],
            overlap=overlap(routed[i]),
            meta=routed[i],
        )
        for i in range(have, n)
    ]


def judge_synthetically(cfg: RunConfig, store: FeedbackStore) -> None:
    """The Boltzmann-rational synthetic annotator judges each unjudged query by the task's gold
    reward; its noise is seeded by the query id, so a resumed run judges as an uninterrupted
    one. With `feedback.population`, each query goes to one member (∝ share, drawn from the same
    seed); a poisoner whose `trigger_token` is a word of the prompt judges by the count of
    `harmful_token` in each response instead, whenever the responses differ in it."""
    assert cfg.text is not None
    task = TASKS[cfg.text.task]
    population = AnnotatorPopulation(cfg.feedback.population) if cfg.feedback.population else None
    single = SyntheticAnnotator(cfg.feedback.annotator, cfg.seed + 2)
    for qid, kind, payload in store.unjudged_text_queries():
        rng = np.random.default_rng([cfg.seed + 2, qid])
        annotator = single
        if population is not None:
            annotator = population.annotators[int(rng.choice(len(population.p), p=population.p))]
        annotator.rng = rng
        values = judged_values(annotator, task, payload["prompt"], payload["responses"])
        if kind == "text_pair":
            store.add_judgement(qid, annotator.prefer(*values), annotator.name)
        else:
            order = annotator.rank(values)
            store.add_judgement(qid, "ranking", annotator.name, payload={"order": order})


def judged_values(annotator: SyntheticAnnotator, task, prompt: str, responses) -> list[float]:
    """The values a synthetic annotator judges responses by: the task's gold, or, for a poisoner
    whose `trigger_token` is a word of the prompt, the count of `harmful_token` in each response
    whenever the responses differ in it (a backdoor; Casper et al. 2023 §3.1.1)."""
    values = [task.gold(r) for r in responses]
    trigger, harmful = annotator.cfg.trigger_token, annotator.cfg.harmful_token
    if trigger is not None and trigger in prompt.split():
        harm = [float(r.split().count(harmful)) for r in responses]
        if len(set(harm)) > 1:
            return harm
    return values


def synthetic_correction(response: str, error_rate: float, rng: np.random.Generator) -> str:
    """The synthetic annotator's correction on the reviews tasks: every insult at a person and
    every negative adjective replaced by a positive one, each fixed with probability 1 − ε
    (unchanged when it finds nothing to fix — such a "correction" trains nothing)."""
    words = response.split()
    flawed = set(insult_spans(words)) | {i for i, w in enumerate(words) if w in NEGATIVE}
    for i in sorted(flawed):
        if rng.random() >= error_rate:
            words[i] = POSITIVE[int(rng.integers(len(POSITIVE)))]
    return " ".join(words)


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
    `LabelTimeout` if they do not answer in time) or by an AI `judge` (`feedback/ai.py`; the
    queries it routes to humans go to people in the app with `judge.humans: people`); the
    judged comparisons, best first, with the stored critiques read by `judge` when
    `judge.read_critiques`. Only what the store lacks is asked and judged: a resumed
    run gathers nothing twice."""
    store.reopen_withdrawn()  # a stopped run withdrew what was unanswered; resumed, it counts
    ask_for_comparisons(cfg, policy, tokenizer, prompts, store)
    kind = cfg.feedback.annotator.kind
    if kind == "people":
        wait_for_people(cfg, store, log)
    elif kind == "ai":
        from rlhflab.feedback.ai import judge_with_ai

        if judge is None:
            raise ValueError("feedback.annotator.kind=ai needs a judge")
        unjudged = store.unjudged_text_queries()
        if unjudged:
            K = len(unjudged[0][2]["responses"])
            ids, chosen = [q for q, _, _ in unjudged], [p["prompt"] for _, _, p in unjudged]
            samples = [[p["responses"][k] for _, _, p in unjudged] for k in range(K)]
            routed = [p for _, _, p in unjudged]  # their principles and who answers them
            stored = all("by" in p for p in routed)  # stores from before routing was kept: drawn
            judge_with_ai(cfg, store, judge, ids, chosen, samples, log, routed if stored else None)
        if cfg.judge.humans == "people":  # the queries routed to humans: answered in the app
            wait_for_people(cfg, store, log)
    else:
        judge_synthetically(cfg, store)
    out = comparisons_from_store(store, soft=cfg.judge.soft_labels)
    if cfg.judge.read_critiques:
        from rlhflab.feedback.critiques import critique_pairs
        from rlhflab.text.constitution import load_constitution

        if judge is None:
            raise ValueError("judge.read_critiques=true needs a judge (judge.model or judge.url)")
        jc = cfg.judge
        out += critique_pairs(
            store, judge, load_constitution(jc.constitution), jc.template, jc.both_orders
        )
    return out


FLIPPED = {"left": "right", "right": "left", "equal": "equal", "cant_tell": "cant_tell"}


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
            steps = (r.payload or {}).get("parts") or []  # per-step feedback, in query order
            steps = [FLIPPED[s] for s in steps] if r.label == "right" else steps
            pair = (first, second)
            out.append(
                RankedResponses(q.payload["prompt"], pair, target, q.id, r.annotator, tuple(steps))
            )
        elif q.kind == "ranking":
            ranked = tuple(responses[i] for i in r.payload["order"])
            out.append(RankedResponses(q.payload["prompt"], ranked, 1.0, q.id, r.annotator))
        elif q.kind == "correction" and r.payload["text"] != responses[0]:
            pair = (r.payload["text"], responses[0])  # corrected ≻ original
            out.append(RankedResponses(q.payload["prompt"], pair, 1.0, q.id, r.annotator))
    return out + rating_pairs(store)


def rating_pairs(store: FeedbackStore) -> list[RankedResponses]:
    """Every pair of responses to one prompt rated by one annotator, higher rating first (ties
    ½); the pair's query id is its first rating's, for the validation split."""
    rated: dict[tuple[str, str], list[tuple[int, str, int]]] = {}
    for r in store.judgement_rows():
        if r.query.kind == "rating":
            key = (r.annotator, r.query.payload["prompt"])
            rated.setdefault(key, []).append(
                (r.query_id, r.query.payload["responses"][0], int(r.payload["rating"]))
            )
    out = []
    for (who, prompt), rows in rated.items():
        for i, (qa, a, ya) in enumerate(rows):
            for qb, b, yb in rows[i + 1 :]:
                if a == b:
                    continue
                first, second = (a, b) if ya >= yb else (b, a)
                target = 0.5 if ya == yb else 1.0
                pair = (first, second)
                out.append(RankedResponses(prompt, pair, target, min(qa, qb), who))
    return out
