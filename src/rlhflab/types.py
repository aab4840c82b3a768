"""The shared vocabulary of rlhflab: segments, queries and judgements.

A *segment* σ = ((o₀, a₀), …, (o_{k-1}, a_{k-1})) is a short piece of a trajectory
(Christiano et al. 2017, §2.1). A *query* shows two segments to an annotator, and a
*judgement* says which one they prefer — or that they are equal, or that the
annotator cannot tell.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import numpy as np


class Judgement(str, Enum):
    """An annotator's answer to a pairwise query."""

    LEFT = "left"
    RIGHT = "right"
    EQUAL = "equal"
    CANT_TELL = "cant_tell"

    @property
    def target(self) -> float | None:
        """Probability mass on the left segment: 1, 0, ½ for equal, None (unusable) for can't
        tell."""
        return {"left": 1.0, "right": 0.0, "equal": 0.5, "cant_tell": None}[self.value]


@dataclass(frozen=True)
class Segment:
    """A piece of one trajectory: observations, actions, and the rewards the annotator judges."""

    obs: np.ndarray  # [k, obs_dim] float32
    actions: np.ndarray  # [k] int64 (discrete) or [k, act_dim] float32 (continuous)
    # [k] float32: the reward channel the annotator judges (the gold reward unless
    # feedback.annotator.judge says otherwise); never shown to the reward model
    judged_rewards: np.ndarray
    env_steps: int = 0  # policy env steps when the segment was collected
    # [k] bool: steps taken after the episode ended (the absorbing state of a fixed-horizon
    # episode, Kostrikov et al. 2019), where observation and action carry no information
    absorbing: np.ndarray | None = field(default=None, compare=False)
    frames: np.ndarray | None = field(
        default=None, repr=False, compare=False
    )  # [k, H, W, 3] rendered, for people

    def __len__(self) -> int:
        return len(self.judged_rewards)

    @property
    def absorbing_mask(self) -> np.ndarray:
        """[k] bool, all False where the segment records no absorbing steps."""
        if self.absorbing is None:
            return np.zeros(len(self), dtype=bool)
        return np.asarray(self.absorbing, dtype=bool)

    @property
    def judged_return(self) -> float:
        return float(np.sum(self.judged_rewards))

    def parts(self, n: int) -> list[Segment]:
        """The segment cut into n contiguous parts of near-equal length (`part_of_step`): the
        pieces an annotator judges one by one in process feedback (`reward/process.py`)."""
        part = part_of_step(len(self), n)
        return [
            Segment(
                self.obs[part == i],
                self.actions[part == i],
                self.judged_rewards[part == i],
                self.env_steps,
                None if self.absorbing is None else self.absorbing_mask[part == i],
            )
            for i in range(n)
        ]


def part_of_step(length: int, n: int) -> np.ndarray:
    """[length] the part 0..n−1 each step of a segment belongs to (contiguous, near-equal)."""
    if not 1 <= n <= length:
        raise ValueError(f"feedback parts: {n} parts of a {length}-step segment")
    return np.repeat(np.arange(n), [len(c) for c in np.array_split(np.arange(length), n)])


@dataclass(frozen=True)
class Query:
    """A pair of equal-length segments waiting for (or carrying) a judgement."""

    left: Segment
    right: Segment
    id: int | None = None


@dataclass(frozen=True)
class RankedResponses:
    """A judged text query: a prompt and its responses, best first; `target` < 1 only for a tied
    pair (½). `query_id` is the store's query (several judgements of one query share it), which
    decides the validation split; `annotator` who judged it (per-annotator β and flags)."""

    prompt: str
    responses: tuple[str, ...]
    target: float = 1.0
    query_id: int | None = None
    annotator: str | None = None
    # per-step feedback on a pair: a judgement of each aligned step (`reward/process.
    # response_steps`: sentence) of the two responses, "left" meaning the first's step is better
    parts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Comparison:
    """A judged query, ready for reward-model fitting."""

    query_id: int
    left: Segment
    right: Segment
    judgement: Judgement
    annotator: str = "synthetic"
    extra: dict = field(default_factory=dict)
    judgement_id: int = 0
