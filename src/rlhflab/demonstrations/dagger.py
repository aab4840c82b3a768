"""DAgger, dataset aggregation (Ross, Gordon & Bagnell 2011, Algorithm 3.1).

    D ← expert demonstrations;  π̂₁ ← BC(D)
    for i = 1 … N:
        π_i = β_i·π* + (1 − β_i)·π̂_i          (per step: the expert acts with probability β_i)
        run π_i; ask the expert π*(s) for every state s it visited
        D ← D ∪ {(s, π*(s))};  π̂_{i+1} ← BC(D)

with β_i = β^(i−1) (β₁ = 1 … here β₁ = β, since π̂₁ already exists). Training on the states the
learner itself reaches removes BC's compounding error: the regret bound is linear in the horizon.
Departures: the paper returns the best π̂_i on validation; this returns the last, and reports
every iteration's true return so the choice is visible. Each π̂_{i+1} continues training from
π̂_i (warm start) on the aggregate dataset.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from rlhflab.demonstrations.bc import ClonedPolicy, fit
from rlhflab.demonstrations.dataset import Demonstrations
from rlhflab.demonstrations.experts import Act, record


def mixture(expert: Act, learner: Act, beta: float, rng: np.random.Generator) -> Act:
    """π = β·π* + (1 − β)·π̂: each step, the expert's action with probability β."""

    def act(obs: np.ndarray) -> np.ndarray:
        chosen = learner(obs)
        use_expert = rng.random(len(obs)) < beta
        if use_expert.any():
            chosen = np.where(
                use_expert.reshape(-1, *([1] * (chosen.ndim - 1))), expert(obs), chosen
            )
        return chosen

    return act


@dataclass
class DAggerResult:
    policy: ClonedPolicy
    obs: np.ndarray  # the aggregate dataset
    acts: np.ndarray
    history: list[dict] = field(default_factory=list)  # per iteration: size, returns


def dagger(
    policy: ClonedPolicy,
    demos: Demonstrations,
    expert: Act,
    env_id: str,
    horizon: int,
    iterations: int = 5,
    episodes: int = 5,
    beta: float = 0.5,
    epochs: int = 50,
    seed: int = 0,
    env_kwargs: dict | None = None,
    on_iteration: Callable[[dict], None] | None = None,
) -> DAggerResult:
    """DAgger from `demos`: each iteration adds expert labels of the states the mixture visited."""
    rng = np.random.default_rng(seed)
    obs, acts, _ = demos.transitions()
    fit(policy, obs, acts, epochs=epochs, seed=seed)
    history = []
    for i in range(1, iterations + 1):
        act = mixture(expert, policy.act, beta**i, rng)
        visited = record(env_id, horizon, episodes, act, seed + 1000 * i, env_kwargs)
        new_obs = np.concatenate([t.obs[:-1] for t in visited.trajectories]).astype(np.float32)
        obs = np.concatenate([obs, new_obs])
        acts = np.concatenate([acts, expert(new_obs)])
        fit(policy, obs, acts, epochs=epochs, seed=seed + i, normalize=False)
        record_ = {
            "iteration": i,
            "beta": beta**i,
            "dataset": len(obs),
            "rollout_return": float(np.mean(visited.returns())),
        }
        history.append(record_)
        if on_iteration:
            on_iteration(record_)
    return DAggerResult(policy, obs, acts, history)
