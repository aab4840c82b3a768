"""A reward per group of annotators, aggregated by a social-choice rule (`reward.aggregation`).

When groups of people want different things (Casper et al. 2023, §3.2.1), one reward fitted to
everyone's comparisons serves the majority: the minority's labels look like noise against
it. And from anonymous pairwise comparisons the groups cannot even be recovered (Zhao, Piech &
Xia 2016; docs/annotators.md). With group membership known (here from `feedback.population`:
each member's `group`), a reward model r̂_g is fitted to group g's comparisons alone — the same
`RewardEnsemble` and `fit_reward` as the pooled model — and the policy optimises an
aggregate. Bradley–Terry fixes each r̂_g only up to an offset and a scale, so each is first
standardised over the steps of every labelled segment (the behaviour all groups have judged),
z_g = (r̂_g − μ_g)/s_g, and then, per step,
    utilitarian  r = Σ_g w_g·z_g,   w_g the group's share of the labels (each answer counts once);
    maximin      r = min_g z_g      (Rawls: the worst-off group's reward).
Departure: maximin is taken per step, an approximation of max_π min_g J_g(π) (the policy's
expected standardised return under the worst group), which PPO cannot optimise directly; per
step it favours behaviour no group dislikes. `pooled` (the default) is the single reward.
"""

from __future__ import annotations

from collections import Counter

import gymnasium as gym
import numpy as np
import torch

from rlhflab.config import PopulationMember, RewardConfig
from rlhflab.reward.model import RewardEnsemble
from rlhflab.reward.reliability import AnnotatorEstimate, fit_reward
from rlhflab.types import Comparison, Segment


def groups_of(members: list[PopulationMember]) -> dict[str, str]:
    """Annotator name → group, from the population."""
    return {m.name: m.group for m in members}


class GroupRewards:
    """One `RewardEnsemble` per group, combined by `reward.aggregation`; used by the control loop
    wherever it uses the pooled reward model (predict, disagreement, fits, checkpoints)."""

    def __init__(
        self,
        group_of: dict[str, str],
        obs_dim: int,
        action_space: gym.Space,
        cfg: RewardConfig,
        seed: int = 0,
    ):
        names = sorted(set(group_of.values()))
        if len(names) < 2:
            raise ValueError(
                f"reward.aggregation={cfg.aggregation} needs a population of at least two "
                f"groups (feedback.population[*].group); found {names}"
            )
        self.cfg, self.group_of = cfg, group_of
        self.models = {
            g: RewardEnsemble(obs_dim, action_space, cfg, seed + 7919 * i)
            for i, g in enumerate(names)
        }
        self.scale = {g: (0.0, 1.0) for g in names}  # μ_g, s_g over the labelled steps
        self.weight = {g: 1.0 / len(names) for g in names}

    @property
    def fits(self) -> int:
        return min(m.fits for m in self.models.values())

    def fit(
        self, comparisons: list[Comparison], estimate: bool = False
    ) -> tuple[dict, list[AnnotatorEstimate]]:
        """Fit each group's model on its own comparisons (unknown annotators are refused), then
        the standardisation and the utilitarian weights. Metrics: each group's under
        `<metric>/<group>`, and their label-weighted mean under the pooled names."""
        unknown = sorted({c.annotator for c in comparisons} - set(self.group_of))
        if unknown:
            raise ValueError(
                f"reward.aggregation: annotators {unknown} belong to no group of "
                "feedback.population"
            )
        by_group: dict[str, list[Comparison]] = {g: [] for g in self.models}
        for c in comparisons:
            by_group[self.group_of[c.annotator]].append(c)
        metrics: dict = {}
        estimates: list[AnnotatorEstimate] = []
        counts = Counter({g: len(cs) for g, cs in by_group.items()})
        for g, model in self.models.items():
            if not by_group[g]:
                continue
            m, e = fit_reward(model, by_group[g], self.cfg, estimate)
            estimates += e
            for k, v in m.items():
                metrics[f"{k}/{g}"] = v
                if isinstance(v, (int, float)) and np.isfinite(v):
                    metrics[k] = metrics.get(k, 0.0) + v * counts[g] / counts.total()
        self.weight = {g: counts[g] / max(1, counts.total()) for g in self.models}
        self.standardise([s for c in comparisons for s in (c.left, c.right)])
        return metrics, estimates

    def standardise(self, segments: list[Segment]) -> None:
        """μ_g, s_g of each fitted group's r̂_g over the steps of the labelled segments."""
        if not segments:
            return
        obs = np.concatenate([s.obs for s in segments])
        actions = np.concatenate([s.actions for s in segments])
        absorbing = np.concatenate([s.absorbing_mask for s in segments])
        for g, model in self.models.items():
            if model.fits:
                r = model.predict(obs, actions, absorbing)[~absorbing]
                self.scale[g] = (float(r.mean()), float(r.std()) + 1e-8)

    def group_rewards(
        self, obs: np.ndarray, actions: np.ndarray, absorbing: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """z_g per step for every group (0 for a group not fitted yet)."""
        out = {}
        for g, model in self.models.items():
            if model.fits:
                mu, s = self.scale[g]
                out[g] = (model.predict(obs, actions, absorbing) - mu) / s
            else:
                out[g] = np.zeros(np.shape(obs)[:-1], np.float32)
        return out

    def predict(
        self, obs: np.ndarray, actions: np.ndarray, absorbing: np.ndarray | None = None
    ) -> np.ndarray:
        """The aggregate reward per step: Σ_g w_g·z_g (utilitarian) or min_g z_g (maximin)."""
        z = self.group_rewards(obs, actions, absorbing)
        if self.cfg.aggregation == "maximin":
            return np.min(np.stack(list(z.values())), axis=0).astype(np.float32)
        return sum(self.weight[g] * z[g] for g in z).astype(np.float32)  # type: ignore[union-attr]

    @torch.no_grad()
    def disagreement(self, pairs: list[tuple[Segment, Segment]]) -> np.ndarray:
        """Each group's ensemble disagreement, averaged over the groups."""
        return np.mean([m.disagreement(pairs) for m in self.models.values()], axis=0)

    def member_preferences(self, pairs: list[tuple[Segment, Segment]]) -> np.ndarray:
        """[Σ M_g, n] the members of every group: P̂[left ≻ right]."""
        return np.concatenate([m.member_preferences(pairs) for m in self.models.values()])

    def state_dict(self) -> dict:
        return {
            "groups": {g: m.state_dict() for g, m in self.models.items()},
            "scale": self.scale,
            "weight": self.weight,
        }

    def load_state_dict(self, state: dict) -> None:
        for g, m in self.models.items():
            m.load_state_dict(state["groups"][g])
        self.scale, self.weight = dict(state["scale"]), dict(state["weight"])
