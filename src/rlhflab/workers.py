"""The plain-Python worker interfaces the RLHF loop calls.

The loop (`rlhflab.loop`) talks only to these four roles. Locally they are ordinary
objects (`ControlPolicy`, `RewardEnsemble`, `SyntheticAnnotator`); a distributed
executor can put any of them in another process or on another machine (a Ray actor
with the same methods) without changing the loop.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from rlhflab.types import Comparison, Judgement, Segment


class RolloutWorker(Protocol):
    env_steps: int

    def collect(self): ...  # -> a rollout with raw_obs, actions, true_rewards, sample_segments()


class PolicyWorker(Protocol):
    def update(self, rollout, rewards: np.ndarray) -> dict: ...

    def evaluate(self, episodes: int, deterministic: bool = True) -> float: ...


class RewardWorker(Protocol):
    def fit(self, comparisons: list[Comparison]) -> dict: ...

    def predict(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray: ...

    def disagreement(self, pairs: list[tuple[Segment, Segment]]) -> np.ndarray: ...


class Annotator(Protocol):
    name: str

    def judge(self, left: Segment, right: Segment) -> Judgement: ...
