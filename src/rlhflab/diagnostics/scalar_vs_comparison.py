"""Comparisons pick the median-better option, ratings the mean-better: Casper et al.'s example.

Casper et al. (2023, §3.1.4): "option A is always worth 1; option B is worth 10 on 40% of
examples and 0 otherwise". Each example is one context in which both options are shown; B's
worth is realised per example, and the reward model does not see which example it is (it
scores the option alone). Then, for an annotator who judges the realised worth,

  comparisons  P[A ≻ B] = p·P_τ(1 ≻ 10) + (1 − p)·P_τ(1 ≻ 0),  P_τ(u ≻ v) = σ((u − v)/τ)
               — for a careful annotator (τ → 0) this is 1 − p = 0.6 > ½: A wins most
               comparisons, so a Bradley–Terry reward fitted to them ranks A above B,
               R̂(A) − R̂(B) = logit P[A ≻ B] > 0 (the median of B's worth, 0, is below 1);
  ratings      E[rating | A] = 1 < E[rating | B] = p·10 + (1 − p)·0 = 4: a regression of the
               reward on ratings ranks B above A (the mean-better option).

The crossover: P[A ≻ B] falls with τ (a noisy annotator's answer follows the mean difference,
σ(x/τ) ≈ ½ + x/4τ), and at P = ½ comparisons stop picking A; `crossover_temperature` finds it
(τ* ≈ 0.62 for the numbers above). So the example holds for careful annotators; a Boltzmann
annotator with τ = 1 already prefers B in 56% of comparisons. `study` shows both sides with
synthetic annotators (`SyntheticAnnotator.judge` and `.rate`) and through the reward model
(the control `RewardEnsemble` fitted by Bradley–Terry on comparisons, and by the rating
regression of `reward/ratings.py` on Likert ratings).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

from rlhflab.config import AnnotatorConfig, RewardConfig
from rlhflab.feedback.synthetic import SyntheticAnnotator
from rlhflab.reward.model import RewardEnsemble
from rlhflab.reward.ratings import Rating, fit_ratings
from rlhflab.types import Comparison, Segment


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(min(x, 700.0), -700.0)))


@dataclass(frozen=True)
class CasperExample:
    """Option A always worth `a`; option B worth `high` with probability `p_high`, else `low`."""

    a: float = 1.0
    high: float = 10.0
    low: float = 0.0
    p_high: float = 0.4

    def mean_worth(self) -> tuple[float, float]:
        """(E[worth A], E[worth B]): what ratings estimate."""
        return self.a, self.p_high * self.high + (1 - self.p_high) * self.low

    def p_a_preferred(self, temperature: float = 0.0) -> float:
        """P[A ≻ B] in closed form for a Boltzmann annotator with temperature τ (0: careful)."""

        def p(u: float, v: float) -> float:
            if temperature == 0:
                return 1.0 if u > v else 0.0 if u < v else 0.5
            return _sigmoid((u - v) / temperature)

        return self.p_high * p(self.a, self.high) + (1 - self.p_high) * p(self.a, self.low)

    def crossover_temperature(self) -> float:
        """τ* where P[A ≻ B] = ½ (bisection on a log scale; P falls with τ here)."""
        lo, hi = 1e-3, 1e3
        if (self.p_a_preferred(lo) - 0.5) * (self.p_a_preferred(hi) - 0.5) > 0:
            return math.nan  # no crossover: both rules agree at every τ
        for _ in range(80):
            mid = math.sqrt(lo * hi)
            if (self.p_a_preferred(mid) - 0.5) * (self.p_a_preferred(lo) - 0.5) > 0:
                lo = mid
            else:
                hi = mid
        return math.sqrt(lo * hi)

    def option(self, which: int, worth: float) -> Segment:
        """A one-step segment showing option A (0) or B (1): the reward model sees which option
        (one-hot), the annotator judges its realised worth."""
        obs = np.zeros((1, 2), np.float32)
        obs[0, which] = 1.0
        return Segment(obs, np.zeros(1, np.int64), np.array([worth], np.float32))

    def examples(self, n: int, rng: np.random.Generator) -> list[tuple[Segment, Segment]]:
        """n examples: (A, B) with B's worth drawn, shown in random left/right order."""
        out = []
        for _ in range(n):
            b = self.high if rng.random() < self.p_high else self.low
            pair = (self.option(0, self.a), self.option(1, b))
            out.append(pair if rng.random() < 0.5 else pair[::-1])
        return out


def _a_minus_b(ensemble: RewardEnsemble, ex: CasperExample) -> float:
    """R̂(A) − R̂(B) of the ensemble mean."""
    with torch.no_grad():
        r = ensemble.segment_returns([ex.option(0, 0.0), ex.option(1, 0.0)]).mean(0)
    return float(r[0] - r[1])


def study(
    temperature: float,
    examples: int = 400,
    seed: int = 0,
    rater: AnnotatorConfig | None = None,
    ex: CasperExample | None = None,
) -> dict:
    """Casper's example at annotator temperature τ: closed form, synthetic annotators (share of
    comparisons won by A, mean Likert rating of each option), and the reward models (Bradley–
    Terry on the comparisons, rating regression on the ratings): which option each ranks first.
    The rater scores with `rater`'s calibration (default: α = 1, s = 0.6, noise 0.5, so worth
    0, 1, 10 give about 1, 2, 7)."""
    ex = ex or CasperExample()
    rng = np.random.default_rng([seed, 14])  # not the annotators' streams (seed + 1, + 2)
    pairs = ex.examples(examples, rng)
    judge = SyntheticAnnotator(AnnotatorConfig(temperature=temperature, error_rate=0.0), seed + 1)
    comparisons = [Comparison(i, a, b, judge.judge(a, b)) for i, (a, b) in enumerate(pairs)]
    a_won = [
        (c.judgement.target == 1.0) == (c.left.obs[0, 0] == 1.0)
        for c in comparisons
        if c.judgement.target in (0.0, 1.0)
    ]
    rater_cfg = rater or AnnotatorConfig(rating_offset=1.0, rating_scale=0.6, rating_noise=0.5)
    rater_annotator = SyntheticAnnotator(rater_cfg, seed + 2)
    ratings = [Rating(s, rater_annotator.rate(s)) for pair in pairs for s in pair]
    mean_rating = [
        float(np.mean([r.rating for r in ratings if r.segment.obs[0, k] == 1.0])) for k in (0, 1)
    ]
    cfg = RewardConfig(ensemble=3, hidden=16)
    space = gym.spaces.Discrete(1)
    bt = RewardEnsemble(2, space, cfg, seed)
    bt.fit(comparisons)
    regression = RewardEnsemble(2, space, cfg, seed)
    fit_ratings(regression, ratings)
    mean_a, mean_b = ex.mean_worth()
    return {
        "temperature": temperature,
        "closed_p_a": ex.p_a_preferred(temperature),
        "closed_mean": [mean_a, mean_b],
        "synthetic_p_a": float(np.mean(a_won)),
        "synthetic_mean_rating": mean_rating,
        "bt_a_minus_b": _a_minus_b(bt, ex),
        "ratings_a_minus_b": _a_minus_b(regression, ex),
    }
