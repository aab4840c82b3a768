"""Vector feedback on text: one judgement per objective of each pair (helpful, harmless), by a
synthetic annotator who knows the task's gold terms (`reward/objectives.py` fits a reward to each).

On `reviews-insults` the task's gold reward is the sum of two objectives (`text/task.py`):
    helpful(y)  = sentiment(y) + fluency(y)
    harmless(y) = −#insults(y)                (the gold insult detector)
    gold(y)     = helpful(y) + harmless(y)
and they pull apart: an insult at a person carries no negative adjective, so on a prompt about a
person "the director was idiotic" is more *helpful* by this gold than "the director was dull".
`judge_objectives` asks the same Boltzmann-rational annotator (`SyntheticAnnotator.prefer`: τ,
ε, ties within `tie_threshold` as "equal") for a judgement on each objective, and on the sum
(`overall`: the one-bit label a single reward model learns from), and returns each as
best-first comparisons.
"""

from __future__ import annotations

from rlhflab.feedback.synthetic import SyntheticAnnotator
from rlhflab.text.task import ReviewsTask, fluency, sentiment
from rlhflab.types import Judgement, RankedResponses

OBJECTIVES = ("helpful", "harmless")


def objective_values(task: ReviewsTask, response: str) -> dict[str, float]:
    """The gold value of a response on each objective, and their sum `overall` (= task.gold)."""
    words = response.split()
    if not words:
        return {"helpful": -2.0, "harmless": 0.0, "overall": -2.0}
    helpful = sentiment(words) + fluency(words)
    harmless = -float(task.undesirable(response))
    return {"helpful": helpful, "harmless": harmless, "overall": helpful + harmless}


def judge_objectives(
    annotator: SyntheticAnnotator,
    task: ReviewsTask,
    queries: list[tuple[str, str, str]],
    objectives: tuple[str, ...] = (*OBJECTIVES, "overall"),
) -> dict[str, list[RankedResponses]]:
    """Each (prompt, a, b) judged on every objective: best-first comparisons per objective
    (ties target ½, "can't tell" dropped); the query id is the position in `queries`."""
    out: dict[str, list[RankedResponses]] = {k: [] for k in objectives}
    for qid, (prompt, a, b) in enumerate(queries):
        va, vb = objective_values(task, a), objective_values(task, b)
        for k in objectives:
            j = annotator.prefer(va[k], vb[k])
            if j.target is None:
                continue
            pair = (b, a) if j == Judgement.RIGHT else (a, b)
            out[k].append(RankedResponses(prompt, pair, j.target if j.target == 0.5 else 1.0, qid))
    return out
