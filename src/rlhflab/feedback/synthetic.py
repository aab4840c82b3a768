"""A synthetic annotator: a simulated person who judges segments by their true reward.

Boltzmann-rational choice over (optionally discounted) true segment returns, as in
Christiano et al. 2017's synthetic-oracle experiments and B-Pref (Lee et al. 2021):
    V(σ) = Σ_t γ^{k−1−t}·r_t                        (γ < 1: myopic, late steps weigh more)
    P[left] = ε/2 + (1 − ε)·exp(V₁/τ) / (exp(V₁/τ) + exp(V₂/τ))
With probability ε the answer is left or right uniformly at random (the paper's
10%); |V₁ − V₂| ≤ tie threshold gives "equal"; both values below `cant_tell_below`
gives "can't tell". τ = 0 is a perfectly rational annotator. K-wise rankings are
Plackett–Luce draws with the same τ and ε.
"""

from __future__ import annotations

import math

import numpy as np

from rlhflab.config import AnnotatorConfig
from rlhflab.types import Judgement, Segment


class SyntheticAnnotator:
    name = "synthetic"

    def __init__(self, cfg: AnnotatorConfig, seed: int = 0):
        self.cfg = cfg
        self.rng = np.random.default_rng(seed)

    def value(self, segment: Segment) -> float:
        r = np.asarray(segment.judged_rewards, dtype=np.float64)
        weights = self.cfg.discount ** np.arange(len(r) - 1, -1, -1)
        return float(np.dot(weights, r))

    def boltzmann_left(self, v_left: float, v_right: float) -> float:
        """P[left] among strict answers, before the error term."""
        if self.cfg.temperature == 0:
            return 1.0 if v_left > v_right else 0.0 if v_left < v_right else 0.5
        return 1.0 / (
            1.0 + math.exp(-max(min((v_left - v_right) / self.cfg.temperature, 700), -700))
        )

    def judge(self, left: Segment, right: Segment) -> Judgement:
        return self.prefer(self.value(left), self.value(right))

    def prefer(self, v1: float, v2: float) -> Judgement:
        """A judgement between two things whose true values are v1 (left) and v2 (right)."""
        cfg = self.cfg
        if self.rng.random() < cfg.error_rate:
            return Judgement.LEFT if self.rng.random() < 0.5 else Judgement.RIGHT
        if cfg.cant_tell_below is not None and max(v1, v2) < cfg.cant_tell_below:
            return Judgement.CANT_TELL
        if abs(v1 - v2) <= cfg.tie_threshold:
            return Judgement.EQUAL
        return (
            Judgement.LEFT if self.rng.random() < self.boltzmann_left(v1, v2) else Judgement.RIGHT
        )

    def rank(self, values: list[float]) -> list[int]:
        """A K-wise ranking (indices, best first): with probability ε a uniformly random order, else
        a
        Plackett–Luce draw — repeatedly pick the best of the rest with P ∝ exp(v/τ)."""
        rest = list(range(len(values)))
        if self.rng.random() < self.cfg.error_rate:
            return [int(i) for i in self.rng.permutation(rest)]
        order = []
        while rest:
            v = np.array([values[i] for i in rest])
            if self.cfg.temperature == 0:
                pick = int(np.argmax(v))
            else:
                p = np.exp((v - v.max()) / self.cfg.temperature)
                pick = int(self.rng.choice(len(rest), p=p / p.sum()))
            order.append(rest.pop(pick))
        return order

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
