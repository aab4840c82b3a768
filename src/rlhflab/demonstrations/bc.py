"""Behavioural cloning: supervised learning of the expert's actions (Pomerleau 1989; Bain &
Sammut 1995), the first method of the seed chapter's §6.5.2.

    θ* = argmax_θ  Σ_{(s, a) ∈ D}  log π_θ(a | s)

over the demonstrations D. For discrete actions π_θ is a softmax and the loss the cross-entropy;
for continuous actions π_θ is a Gaussian of fixed variance around an MLP's output, so the loss
is the squared error ‖μ_θ(s) − a‖². The cloned policy acts greedily (argmax, or the mean).

Its limitation (Ross & Bagnell 2010): the learner is trained on the expert's state distribution
but tested on its own. A mistake with probability ε per step takes it to states the expert never
showed, where it errs more, so the cost gap grows as O(εT²) with the horizon T instead of the
O(εT) of a learner trained on its own states. `bench/demonstrations.py` measures this.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlhflab.demonstrations.dataset import Demonstrations
from rlhflab.envs.wrappers import action_dim


def mlp(inp: int, hidden: int, out: int, layers: int = 2) -> nn.Sequential:
    mods: list[nn.Module] = []
    width = inp
    for _ in range(layers):
        mods += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    return nn.Sequential(*mods, nn.Linear(width, out))


class ObsNormalized(nn.Module):
    """A module whose observations are normalised by the data's mean and standard deviation,
    held in the buffers `obs_mean` and `obs_std` (saved with the module)."""

    def register_normalizer(self, obs_dim: int) -> None:
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_std", torch.ones(obs_dim))

    def fit_normalizer(self, obs: np.ndarray) -> None:
        self.obs_mean = torch.as_tensor(obs.mean(0), dtype=torch.float32)
        self.obs_std = torch.as_tensor(np.maximum(obs.std(0), 1e-3), dtype=torch.float32)

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs - self.obs_mean) / self.obs_std


class ClonedPolicy(ObsNormalized):
    """A policy network with the dataset's observation normalisation fixed inside it."""

    def __init__(self, net: nn.Module, action_space: gym.Space, obs_dim: int):
        super().__init__()
        self.net = net
        self.action_space: Any = action_space  # Discrete (start) or Box (low, high)
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        self.register_normalizer(obs_dim)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(obs))

    def loss(self, obs: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
        out = self(obs)
        if self.discrete:
            return nn.functional.cross_entropy(out, acts.long())
        return ((out - acts) ** 2).sum(-1).mean()

    @torch.no_grad()
    def act(self, raw_obs: np.ndarray) -> np.ndarray:
        """Raw observations [E, D] → env actions (argmax, or the mean clipped to the box)."""
        out = self(torch.as_tensor(np.asarray(raw_obs, np.float32)))
        if self.discrete:
            return out.argmax(-1).numpy() + int(self.action_space.start)
        return np.clip(out.numpy(), self.action_space.low, self.action_space.high)

    @torch.no_grad()
    def accuracy(self, obs: np.ndarray, acts: np.ndarray) -> float:
        """Share of exact action matches (discrete) or of actions within 0.1 (continuous)."""
        pred = self.act(obs)
        if self.discrete:
            return float(np.mean(pred == acts))
        return float(np.mean(np.all(np.abs(pred - acts) < 0.1, axis=-1)))


def make_policy(obs_dim: int, action_space: gym.Space, hidden: int = 64) -> ClonedPolicy:
    return ClonedPolicy(mlp(obs_dim, hidden, action_dim(action_space)), action_space, obs_dim)


@dataclass
class BCResult:
    policy: ClonedPolicy
    loss: float
    train_accuracy: float


def fit(
    policy: ClonedPolicy,
    obs: np.ndarray,
    acts: np.ndarray,
    epochs: int = 50,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
    normalize: bool = True,
) -> BCResult:
    """Minimise the BC loss over (obs, acts) with Adam (the normaliser fit to `obs` first,
    unless `normalize=False` keeps the one it has)."""
    torch.manual_seed(seed)
    if normalize:
        policy.fit_normalizer(obs)
    x = torch.as_tensor(np.asarray(obs, np.float32))
    y = torch.as_tensor(acts if policy.discrete else np.asarray(acts, np.float32))
    if policy.discrete:
        y = y.long() - int(policy.action_space.start)
    opt = torch.optim.Adam(policy.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    loss = torch.tensor(0.0)
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), batch_size):
            idx = perm[start : start + batch_size]
            loss = policy.loss(x[idx], y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return BCResult(policy, float(loss.detach()), policy.accuracy(obs, acts))


def behavioural_cloning(
    demos: Demonstrations,
    action_space: gym.Space,
    hidden: int = 64,
    epochs: int = 50,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
) -> BCResult:
    """BC on every (s, a) of `demos` with a fresh MLP policy."""
    obs, acts, _ = demos.transitions()
    torch.manual_seed(seed)
    policy = make_policy(obs.shape[1], action_space, hidden)
    return fit(policy, obs, acts, epochs, lr, batch_size, seed)
