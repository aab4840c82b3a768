"""A synthetic annotator: a simulated person who judges segments by their true reward.

Boltzmann-rational choice over (optionally discounted) true segment returns, as in
Christiano et al. 2017's synthetic-oracle experiments and B-Pref (Lee et al. 2021):
    V(σ) = Σ_t γ^{k−1−t}·r_t                        (γ < 1: myopic, late steps weigh more)
    P[left] = ε/2 + (1 − ε)·exp(V₁/τ) / (exp(V₁/τ) + exp(V₂/τ))
With probability ε the answer is left or right uniformly at random (the paper's
10%); |V₁ − V₂| ≤ tie threshold gives "equal"; both values below `cant_tell_below`
gives "can't tell". τ = 0 is a perfectly rational annotator. K-wise rankings are
Plackett–Luce draws with the same τ and ε.

Flawed annotators (Casper et al. 2023, §3.1; populations of them in `population.py`):
  position bias b: with probability b the answer is "left" whatever is shown;
  systematic bias w: each step's value gains w·f(o_t, a_t) — f = o[i], |o[i]| or a[i] —
      e.g. a taste for fast motion, whatever the task rewards;
  poisoning (§3.1.1): when a step of either segment lies in a trigger region
      o[i] ∈ [low, high], the annotator judges by harm instead of value,
      H(σ) = Σ_{t in region} h(a_t),  h(a) = [a = k] (discrete) or a[k] (continuous),
      whenever the two segments differ in harm — a backdoor the reward model can learn.
Process feedback (`judge_parts`): both segments cut into n aligned parts (`Segment.parts`), each
pair of parts judged like a pair of segments — a label on each part of a trajectory, which
`reward/process.py` trains beside the whole-segment preference.
Ratings (`rate`): a Likert score round(α + s·V(σ) + ξ) clipped to 1–7, α and s the annotator's
own use of the scale (`reward/ratings.py` learns them back).
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
        if self.cfg.bias != "none" and self.cfg.bias_weight:
            r = r + self.cfg.bias_weight * self.bias_feature(segment)
        weights = self.cfg.discount ** np.arange(len(r) - 1, -1, -1)
        return float(np.dot(weights, r))

    def bias_feature(self, segment: Segment) -> np.ndarray:
        """[k] f(o_t, a_t) of the systematic bias (zero at absorbing steps)."""
        cfg = self.cfg
        if cfg.bias == "action":
            x = _coordinate(segment.actions, cfg.bias_index, "bias_index")
        else:
            x = _coordinate(segment.obs, cfg.bias_index, "bias_index")
            x = np.abs(x) if cfg.bias == "abs_obs" else x
        return np.where(segment.absorbing_mask, 0.0, x)

    def in_trigger(self, segment: Segment) -> np.ndarray:
        """[k] bool: steps in the poisoning trigger region (none for an honest annotator)."""
        cfg = self.cfg
        if cfg.trigger_index is None:
            return np.zeros(len(segment), bool)
        x = _coordinate(segment.obs, cfg.trigger_index, "trigger_index")
        lo = -np.inf if cfg.trigger_low is None else cfg.trigger_low
        hi = np.inf if cfg.trigger_high is None else cfg.trigger_high
        return (x >= lo) & (x <= hi) & ~segment.absorbing_mask

    def harm(self, segment: Segment) -> float:
        """H(σ): how much of the harmful action the segment takes inside the trigger region."""
        a = np.asarray(segment.actions)
        k = self.cfg.harmful_action
        h = (a == k).astype(np.float64) if a.ndim == 1 else _coordinate(a, k, "harmful_action")
        return float(np.sum(h[self.in_trigger(segment)]))

    def boltzmann_left(self, v_left: float, v_right: float) -> float:
        """P[left] among strict answers, before the error term."""
        if self.cfg.temperature == 0:
            return 1.0 if v_left > v_right else 0.0 if v_left < v_right else 0.5
        return 1.0 / (
            1.0 + math.exp(-max(min((v_left - v_right) / self.cfg.temperature, 700), -700))
        )

    def judge(self, left: Segment, right: Segment) -> Judgement:
        if self.cfg.trigger_index is not None:
            h1, h2 = self.harm(left), self.harm(right)
            if h1 != h2:  # the trigger is present and the segments differ in harm
                return self.prefer(h1, h2)
        return self.prefer(self.value(left), self.value(right))

    def judge_parts(self, left: Segment, right: Segment, n: int) -> list[Judgement]:
        """Process feedback: a judgement of each of the n aligned parts of the two segments."""
        return [self.judge(a, b) for a, b in zip(left.parts(n), right.parts(n))]

    def prefer(self, v1: float, v2: float) -> Judgement:
        """A judgement between two things whose true values are v1 (left) and v2 (right)."""
        cfg = self.cfg
        if self.rng.random() < cfg.error_rate:
            return Judgement.LEFT if self.rng.random() < 0.5 else Judgement.RIGHT
        if cfg.left_bias and self.rng.random() < cfg.left_bias:
            return Judgement.LEFT
        if cfg.cant_tell_below is not None and max(v1, v2) < cfg.cant_tell_below:
            return Judgement.CANT_TELL
        if abs(v1 - v2) <= cfg.tie_threshold:
            return Judgement.EQUAL
        return (
            Judgement.LEFT if self.rng.random() < self.boltzmann_left(v1, v2) else Judgement.RIGHT
        )

    def rate(self, segment: Segment) -> int:
        """A Likert score of one segment: round(α + s·V(σ) + ξ), ξ ~ N(0, noise²), clipped to the
        app's 1–7 (`rating_offset`, `rating_scale`, `rating_noise`: this annotator's calibration).
        """
        return self.rate_value(self.value(segment))

    def rate_value(self, value: float) -> int:
        """A Likert score of anything whose true value is `value` (a response's gold)."""
        cfg = self.cfg
        y = cfg.rating_offset + cfg.rating_scale * value
        y += cfg.rating_noise * self.rng.standard_normal()
        return int(np.clip(np.rint(y), 1, 7))

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

    def answer(self, left: Segment, right: Segment, parts: int = 0) -> tuple[Judgement, dict]:
        """A judgement of the pair and its stored payload: with `parts` > 0, the judgement of
        each part too (process feedback, `payload["parts"]`)."""
        judgement = self.judge(left, right)
        if not parts:
            return judgement, {}
        return judgement, {"parts": [j.value for j in self.judge_parts(left, right, parts)]}

    def label(self, store, items: list[tuple[int, Segment, Segment]], parts: int = 0) -> None:
        """Judge each (query id, left, right) (and `parts` parts of it) and store the answers
        under this annotator's name."""
        store.add_judgements([(q, *self.answer(a, b, parts)) for q, a, b in items], self.name)

    def label_ratings(self, store, items: list[tuple[int, Segment]]) -> None:
        """Rate each (query id, segment) of a `clip_rating` query and store the ratings."""
        answers = [(q, "clip_rating", {"rating": self.rate(g)}) for q, g in items]
        store.add_judgements(answers, self.name)


def _coordinate(x: np.ndarray, index: int, field: str) -> np.ndarray:
    """[k] coordinate `index` of per-step features [k, d] (or [k] when d = 1)."""
    x = np.asarray(x, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x
    if index >= x.shape[1]:
        raise ValueError(f"feedback.annotator.{field}={index} but steps have {x.shape[1]} values")
    return x[:, index]
