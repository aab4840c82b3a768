"""Constitutional AI's supervised stage, SL-CAI (Bai et al. 2022b, "Constitutional AI:
Harmlessness from AI Feedback", §3).

For each red-team prompt x, the policy answers, y ~ π(· | x); a critic reads the answer and,
under a principle of the constitution, writes a critique c and then a revision y′:

    c, y′ ~ π_critic(· | T(x, y, principle))        T = `text.sl_cai.template`

and the policy is fine-tuned on the revisions with SFT's loss, mixed with as many of the
helpful demonstrations (Bai et al. mixed in helpful samples so the model stays helpful):

    L_SL-CAI = −Σ_{(x, y′)} log π(y′ | x) / Σ |y′|   over revisions and demonstrations

RL-CAI is then RLAIF from this policy: a preference model on the AI judge's labels, and PPO or
DPO (`feedback.annotator.kind: ai`, the harmlessness principle in `judge.constitution`).

The critic is the policy itself (`critic: policy`, Bai et al.'s setting), the Step-0 model
(`critic: base`) or, as a clearly labelled stand-in, the task's own gold critique and revision
(`critic: scripted`, `text/task.py: critique, revise`). The continuation after the template is
read as "<critique> revision : <revision>"; one that lacks "revision :" or whose revision is
empty is not trained on, and counted.

Departures: Bai et al. critique and revise in several rounds with a freshly drawn principle per
round, each step a separate few-shot prompt to a 52B model; here one round, one generation
(critique, then revision conditioned on it), by a tiny model that learned the format from the
critique examples of its pretraining corpus (`reviews-insults`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlhflab.text.models import context_length, format_prompt
from rlhflab.text.sequences import generate
from rlhflab.text.task import CRITIQUE, REVISION, ReviewsTask, critique, insult_spans, revise


@dataclass
class Revision:
    prompt: str
    response: str
    critique: str
    revision: str | None  # None: the critic's continuation did not hold a revision


def critique_and_revise(
    critic,
    tokenizer,
    prompts: list[str],
    responses: list[str],
    template: str,
    principle: str,
    temperature: float,
    seed: int,
) -> list[Revision]:
    """One critique and revision per response, sampled from `critic` (a causal LM)."""
    asks = [
        template.format(prompt=p, response=r, principle=principle)
        for p, r in zip(prompts, responses)
    ]
    longest = max(len(tokenizer(format_prompt(tokenizer, a))["input_ids"]) for a in asks)
    room = context_length(critic) - longest
    if room < 4:
        raise ValueError(f"the critique prompt leaves {room} tokens of the critic's context")
    _, texts, _ = generate(critic, tokenizer, asks, room, temperature, seed=seed)
    out = []
    for p, r, text in zip(prompts, responses, texts):
        said, found, revision = text.partition(REVISION)
        revision = revision.strip()
        out.append(Revision(p, r, said.strip(), revision if found and revision else None))
    return out


def scripted_revisions(task: ReviewsTask, prompts, responses, seed: int) -> list[Revision]:
    """The stand-in critic: the task's gold critique and revision (not a model)."""
    rng = np.random.default_rng(seed)
    out = []
    for p, r in zip(prompts, responses):
        words = r.split()
        out.append(Revision(p, r, " ".join(critique(words)), " ".join(revise(words, rng))))
    return out


def measure(task: ReviewsTask, revisions: list[Revision]) -> dict:
    """How well the critic did against the gold detector: critique accuracy (it says "insults"
    exactly when the response holds an insult), and the undesirable rate and gold of the
    revisions against the responses they revise."""
    done = [(v.response, v.revision) for v in revisions if v.revision is not None]
    flagged = [
        ("insults" in v.critique.split()) == bool(insult_spans(v.response.split()))
        for v in revisions
    ]
    bad = [v for v in revisions if task.undesirable(v.response)]

    def mean(values: list) -> float | None:
        return float(np.mean(values)) if values else None

    return {
        "revisions": len(done),
        "unparsed": len(revisions) - len(done),
        "critique_accuracy": mean(flagged),
        "critique_recall": mean(["insults" in v.critique.split() for v in bad]),
        "responses_undesirable": mean([task.undesirable(v.response) > 0 for v in revisions]),
        "revisions_undesirable": mean([task.undesirable(y) > 0 for _, y in done]),
        "responses_gold": mean([task.gold(x) for x, _ in done]),
        "revisions_gold": mean([task.gold(y) for _, y in done]),
        "critique_examples": [
            f"{v.response} {CRITIQUE} {v.critique} {REVISION} {v.revision}" for v in revisions[:5]
        ],
    }
