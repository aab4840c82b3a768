"""Reward-ensemble members fitted in parallel (`executor.reward_shards`).

The members of the bootstrapped ensemble (Christiano et al. 2017, §2.2.3; Lakshminarayanan et
al. 2017) are independent: member m minimises the Bradley–Terry loss
    L_m = −Σ_{(σ¹,σ²,μ) ∈ B_m} μ·log P̂_m[σ¹ ≻ σ²] + (1 − μ)·log P̂_m[σ² ≻ σ¹]
on its own bootstrap B_m and early-stops on its own out-of-bag comparisons, so the members can
be fitted in different processes. The M members are split into S shards; each shard is a
`RewardEnsemble` of its members, loaded with its slice of the ensemble's state (weights, Adam
moments, the queries each member trained on), fitted by `RewardEnsemble.fit` as one task of
the executor, and merged back. Nothing of the fit itself is rewritten here.

Departure from the unsharded fit: each shard draws its bootstraps and minibatches from its own
generator (seeded, at every fit, from the ensemble's), and stops early when all of its own
members have, so a sharded fit gives the same ensemble on every backend, but not the same as
`reward_shards=1`.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from rlhflab.config import RewardConfig
from rlhflab.executor import Executor
from rlhflab.reward.background import _without_frames
from rlhflab.reward.model import RewardEnsemble, is_validation
from rlhflab.types import Comparison


class ShardedRewardEnsemble(RewardEnsemble):
    """A `RewardEnsemble` whose `fit` runs its members in `shards` tasks of `executor`."""

    def __init__(
        self,
        obs_dim: int,
        action_space: gym.Space,
        cfg: RewardConfig,
        seed: int,
        executor: Executor,
        shards: int,
    ):
        if not 1 <= shards <= cfg.ensemble:
            raise ValueError(
                f"executor.reward_shards ({shards}) must be between 1 and reward.ensemble "
                f"({cfg.ensemble})"
            )
        super().__init__(obs_dim, action_space, cfg, seed)
        self.obs_dim, self.executor, self.shards = obs_dim, executor, shards

    def fit(self, comparisons: list[Comparison]) -> dict:
        """Fit every shard of members as a task; merge; the ensemble's validation metrics."""
        members = np.array_split(np.arange(len(self.trained_on)), self.shards)
        seeds = self.rng.integers(2**63, size=self.shards)
        state = self.state_dict()
        jobs = [
            (self.obs_dim, self.action_space, self.cfg, _shard(state, idx, int(s)), self.cold)
            for idx, s in zip(members, seeds)
        ]
        usable = [c for c in comparisons if c.judgement.target is not None]
        # the reward model reads steps, never people's clip frames: they stay in this process
        lean = [_without_frames(c) for c in usable]
        results = self.executor.map(_fit_shard, [(*job, lean) for job in jobs])
        self.load_state_dict(_merge(state, [s for s, _ in results]))
        self.cold = False
        if not all(metrics for _, metrics in results):  # nothing to train on yet
            return {}
        if self.cfg.validation == "held_out":
            held = np.array([is_validation(c.query_id, self.cfg.val_fraction) for c in usable])
        else:
            held = np.zeros(len(usable), bool)
        return {
            "rm_fits": self.fits,
            "rm_labels": len(usable),
            **self._metrics(self._pairs(usable), held),
        }


def _fit_shard(job: tuple) -> tuple[dict, dict]:
    """A task: fit one shard of members from its state; its new state and metrics."""
    obs_dim, space, cfg, state, cold, comparisons = job
    torch.set_num_threads(1)
    members = len(state["trained_on"])
    shard = RewardEnsemble(obs_dim, space, cfg.model_copy(update={"ensemble": members}))
    shard.load_state_dict(state)
    shard.cold = cold
    metrics = shard.fit(comparisons)
    return shard.state_dict(), metrics


def _member_slice(value, idx: np.ndarray, dim: int = 0):
    return value[torch.as_tensor(idx)] if dim == 0 else value[:, torch.as_tensor(idx)]


def _shard(state: dict, idx: np.ndarray, seed: int) -> dict:
    """The ensemble's state restricted to members idx, with its own generator."""
    optimizer = state["optimizer"]
    return {
        **state,
        "net": {k: _member_slice(v, idx) for k, v in state["net"].items()},
        "optimizer": {
            "param_groups": optimizer["param_groups"],
            "state": {
                p: {k: v if k == "step" else _member_slice(v, idx) for k, v in moments.items()}
                for p, moments in optimizer["state"].items()
            },
        },
        "trained_on": [state["trained_on"][i] for i in idx],
        "member_scale": _member_slice(state["member_scale"], idx, dim=1),
        "rng": np.random.default_rng(seed).bit_generator.state,
    }


def _merge(state: dict, shards: list[dict]) -> dict:
    """The ensemble's state from its shards' (in member order); its own generator kept. Every
    shard saw the same comparisons, so their feature statistics and fit counts agree."""
    first = shards[0]
    moments = first["optimizer"]["state"]
    return {
        **first,
        "net": {k: torch.cat([s["net"][k] for s in shards]) for k in first["net"]},
        "optimizer": {
            "param_groups": first["optimizer"]["param_groups"],
            "state": {
                p: {
                    k: v
                    if k == "step"
                    else torch.cat([s["optimizer"]["state"][p][k] for s in shards])
                    for k, v in moments[p].items()
                }
                for p in moments
            },
        },
        "trained_on": [q for s in shards for q in s["trained_on"]],
        "member_scale": torch.cat([s["member_scale"] for s in shards], dim=1),
        "rng": state["rng"],
        "annotator_scale": state["annotator_scale"],
    }
