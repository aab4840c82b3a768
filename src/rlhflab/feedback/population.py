"""A population of synthetic annotators: each its own temperature, error rate, myopia, position
bias, systematic bias, poisoning trigger and group (`feedback.population`).

Real feedback comes from many people who err, disagree and sometimes cheat (Casper et al. 2023,
§3.1–3.2); one Boltzmann-rational annotator models all of them as the same noise. Here each
query goes to `feedback.population_overlap` distinct members, drawn without replacement with
probability ∝ their `share`, and each member is a `SyntheticAnnotator` (the same code that
plays the single annotator) storing its answers under its own name, so the reward model,
the agreement statistics and the report can tell them apart.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from rlhflab.config import AnnotatorConfig, FeedbackConfig, PopulationMember
from rlhflab.feedback.synthetic import SyntheticAnnotator
from rlhflab.types import Comparison, Judgement, Segment


class AnnotatorPopulation:
    """Several named synthetic annotators sharing the queries by share."""

    name = "population"

    def __init__(self, members: list[PopulationMember], overlap: int = 1, seed: int = 0):
        if not members:
            raise ValueError("feedback.population: a population needs at least one member")
        self.members = members
        self.overlap = overlap
        self.rng = np.random.default_rng(seed)
        self.annotators = []
        for i, m in enumerate(members):
            a = SyntheticAnnotator(_annotator_config(m), seed + 1000 * (i + 1))
            a.name = m.name
            self.annotators.append(a)
        share = np.array([m.share for m in members], dtype=np.float64)
        self.p = share / share.sum()

    def who(self) -> list[SyntheticAnnotator]:
        """The members who answer the next query: `overlap` of them, ∝ share, no repeats."""
        picks = self.rng.choice(len(self.members), size=self.overlap, replace=False, p=self.p)
        return [self.annotators[int(i)] for i in picks]

    def label(self, store, items: list[tuple[int, Segment, Segment]], parts: int = 0) -> None:
        """Each query judged by its members (with `parts`: each part too); answers stored under
        each member's name."""
        by_name: dict[str, list[tuple]] = defaultdict(list)
        for qid, left, right in items:
            for a in self.who():
                by_name[a.name].append((qid, *a.answer(left, right, parts)))
        for name, answers in by_name.items():
            store.add_judgements(answers, name)

    def label_ratings(self, store, items: list[tuple[int, Segment]]) -> None:
        """Each `clip_rating` query rated by its members, stored under each member's name."""
        by_name: dict[str, list[tuple]] = defaultdict(list)
        for qid, segment in items:
            for a in self.who():
                by_name[a.name].append((qid, "clip_rating", {"rating": a.rate(segment)}))
        for name, answers in by_name.items():
            store.add_judgements(answers, name)

    def state_dict(self) -> dict:
        return {
            "rng": self.rng.bit_generator.state,
            "members": [a.state_dict() for a in self.annotators],
        }

    def load_state_dict(self, state: dict) -> None:
        if "members" not in state:  # a checkpoint of a single annotator: nothing to restore
            return
        self.rng.bit_generator.state = state["rng"]
        for a, s in zip(self.annotators, state["members"]):
            a.load_state_dict(s)


def _annotator_config(m: PopulationMember) -> AnnotatorConfig:
    fields = set(AnnotatorConfig.model_fields)
    return AnnotatorConfig(**m.model_dump(include=fields))


def make_annotator(fb: FeedbackConfig, seed: int) -> SyntheticAnnotator | AnnotatorPopulation:
    """The synthetic annotator(s) of a run: the population when one is configured."""
    if fb.population:
        return AnnotatorPopulation(fb.population, fb.population_overlap, seed)
    return SyntheticAnnotator(fb.annotator, seed)


class _Answers:
    """The feedback store's `add_judgements`, in memory."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, Judgement, str, dict]] = []

    def add_judgements(self, answers, annotator: str) -> None:
        self.rows += [(q, Judgement(j), annotator, p[0] if p else {}) for q, j, *p in answers]


def judge_pairs(
    annotator: SyntheticAnnotator | AnnotatorPopulation,
    pairs: list[tuple[Segment, Segment]],
    parts: int = 0,
) -> list[Comparison]:
    """The pairs judged without a store (benchmarks, tests): comparisons with query id = index;
    with `parts` > 0 the same annotator also judges each of that many parts of the pair
    (process feedback, `extra["parts"]`, read by `reward/process.py`)."""
    answers = _Answers()
    annotator.label(answers, [(i, a, b) for i, (a, b) in enumerate(pairs)], parts)
    return [Comparison(q, *pairs[q], j, name, payload) for q, j, name, payload in answers.rows]
