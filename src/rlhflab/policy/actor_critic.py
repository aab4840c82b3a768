"""The actor-critic network of a control policy: a policy head π(a|s) — a categorical over
logits for discrete actions, a diagonal Gaussian N(μ(s), diag σ²) with a learned state-free
log σ for continuous ones — and a value head V(s), as separate MLPs (the PPO paper's set-up,
Schulman et al. 2017). Used by the rollouts (`policy/rollout.py`) to act and by the updates
(`policy/control.py`) to learn."""

from __future__ import annotations

import gymnasium as gym
import torch
from torch import nn
from torch.distributions import Categorical, Normal

from rlhflab.envs.wrappers import action_dim
from rlhflab.nets import mlp


class ActorCritic(nn.Module):
    def __init__(
        self, obs_dim: int, action_space: gym.Space, hidden: int = 64, log_std_init: float = 0.0
    ):
        super().__init__()
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        self.critic = mlp(obs_dim, hidden, 1, out_gain=1.0)
        self.actor = mlp(obs_dim, hidden, action_dim(action_space), out_gain=0.01)
        if not self.discrete:
            self.log_std = nn.Parameter(torch.full((action_dim(action_space),), log_std_init))

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(obs).squeeze(-1)

    def distribution(self, obs: torch.Tensor):
        out = self.actor(obs)
        if self.discrete:
            return Categorical(logits=out, validate_args=False)
        return Normal(out, self.log_std.exp().expand_as(out), validate_args=False)

    def log_prob_entropy(
        self, obs: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        dist = self.distribution(obs)
        logp, ent = dist.log_prob(actions), dist.entropy()
        return (logp, ent) if self.discrete else (logp.sum(-1), ent.sum(-1))

    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        dist = self.distribution(obs)
        if deterministic:
            return dist.probs.argmax(-1) if self.discrete else dist.mean
        return dist.sample()
