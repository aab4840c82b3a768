"""Several objectives, a reward model each, combined by a fixed weighting or under a constraint
(helpful and harmless; Casper et al. 2023, §3.2.1 and §4.2; Bai et al. 2022a's two datasets).

One comparison per pair asks the annotator to fold everything they care about into one bit, and
the reward learned from it fixes one trade-off that nobody chose. A vector label instead says,
per pair, which response is better on each objective k (more helpful; more harmless); a
Bradley–Terry reward model r̂_k is fitted to each objective's labels alone (`reward/text.py`'s
ensemble, or any scorer). Each r̂_k is fixed only up to offset and scale, so it is first
standardised over reference responses (the base policy's samples), z_k = (r̂_k − μ_k)/s_k, and
the policy optimises

  weighted     r = Σ_k w_k·z_k                    (a fixed trade-off, chosen in the open), or
  constrained  max_π E_π[z_help]  s.t.  E_π[z_harmless] ≥ b
               through its Lagrangian r_λ = z_help + λ·z_harmless, λ ≥ 0, with λ by projected
               dual ascent on each batch of the policy's choices
                   λ ← max(0, λ + η·(b − mean z_harmless))
               (Safe RLHF, Dai et al. 2023; Moskovitz et al. 2023's constrained RLHF): λ grows
               while the constraint is violated and decays to 0 when it holds with slack.

The same combination serves PPO on control tasks (`objectives_loop.train_objectives`): there z_k is
r̂_k per step, standardised over the steps of the untrained policy's rollouts, and λ is updated
once per PPO iteration on the rollout's mean z_constrained, so the policy optimises the
Lagrangian reward of the current λ while λ moves (primal–dual, as Safe RLHF's PPO-Lagrangian).

The bound b is in standard deviations of the reference responses' harmlessness reward (b = 0:
as harmless as an average base sample). Departure from Safe RLHF: their cost model is also
trained to classify each response as safe or unsafe, which gives the constraint an absolute
zero; here both rewards come from comparisons only, so the bound is relative to the reference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

# text: (prompts, responses) → [N]; control: (obs, actions, absorbing) → r̂ per step [T, N]
Scorer = Callable[..., torch.Tensor]


class ObjectiveRewards:
    """A reward model per objective, standardised over a reference batch (the base policy's
    responses, or its steps)."""

    def __init__(self, scorers: dict[str, Scorer], *reference):
        if len(scorers) < 2:
            raise ValueError(f"objectives: at least two are needed, got {sorted(scorers)}")
        self.scorers = scorers
        ref = {k: f(*reference).float() for k, f in scorers.items()}
        self.stats = {k: (float(v.mean()), float(v.std().clamp_min(1e-6))) for k, v in ref.items()}

    def __call__(self, *batch) -> dict[str, torch.Tensor]:
        """z_k of each element of the batch, per objective (the scorers' shape)."""
        out = {}
        for k, f in self.scorers.items():
            mean, std = self.stats[k]
            out[k] = (f(*batch).float() - mean) / std
        return out


def weighted(z: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """r = Σ_k w_k·z_k (objectives without a weight count 0)."""
    unknown = set(weights) - set(z)
    if unknown:
        raise ValueError(f"objectives: weights for unknown objectives {sorted(unknown)}")
    return sum((w * z[k] for k, w in weights.items()), torch.zeros_like(next(iter(z.values()))))


@dataclass
class LagrangeMultiplier:
    """λ of the constraint E[z_constraint] ≥ bound, by projected dual ascent with step `lr`."""

    bound: float = 0.0
    lr: float = 0.5
    value: float = 0.0
    steps: int = 0
    total: float = 0.0  # Σ of the iterates, for their average

    @property
    def average(self) -> float:
        """The mean of the iterates λ_1 … λ_t: where dual ascent settles (one iterate swings
        between 0 and the bound's price from batch to batch)."""
        return self.total / self.steps if self.steps else self.value

    def reward(self, primary: torch.Tensor, constrained: torch.Tensor) -> torch.Tensor:
        """The Lagrangian reward r_λ = z_primary + λ·z_constrained."""
        return primary + self.value * constrained

    def update(self, achieved: float) -> float:
        """λ ← max(0, λ + η·(b − achieved)) after a batch whose mean z_constrained was
        `achieved`; returns the new λ."""
        self.value = max(0.0, self.value + self.lr * (self.bound - achieved))
        self.steps, self.total = self.steps + 1, self.total + self.value
        return self.value


def constrained_choice(
    primary: torch.Tensor, constrained: torch.Tensor, multiplier: LagrangeMultiplier, batch: int = 0
) -> torch.Tensor:
    """Best of n under the Lagrangian: for scores [P, n] (P prompts, n candidates each) the index
    of each prompt's choice. With `batch` > 0, λ is updated by dual ascent after every `batch`
    prompts on the mean z_constrained of that batch's choices; with 0 it stays fixed."""
    chosen = torch.empty(len(primary), dtype=torch.long)
    step = batch or len(primary)
    for s in range(0, len(primary), step):
        rows = slice(s, s + step)
        chosen[rows] = multiplier.reward(primary[rows], constrained[rows]).argmax(1)
        if batch:
            picked = constrained[rows].gather(1, chosen[rows, None])
            multiplier.update(float(picked.mean()))
    return chosen
