"""Identifiability of inverse RL: rewards that explain the same demonstrations, compared.

Many rewards explain one set of demonstrations (Ng & Russell 2000; Skalse et al. 2023): the true
reward, a potential-shaped copy R + γΦ(s') − Φ(s) (the same optimal policies), the zero reward
(every policy optimal), an indicator of the demonstrated states, and what MaxEnt IRL learned.
For each, `identifiability` reports the EPIC distance to the true reward (Gleave et al. 2020:
zero across shaping and positive scale), the share of demonstrated actions that are optimal
under it, and the true return of a policy planned afresh on it (normalised: uniformly random 0,
optimal for the true reward 1).
"""

from __future__ import annotations

import numpy as np

from rlhflab.demonstrations.dataset import Demonstrations
from rlhflab.demonstrations.maxent_irl import as_sas, expected_return, planned_policy, states_of
from rlhflab.diagnostics.epic import epic_distance
from rlhflab.envs.gridworld import FeatureGridworld


def epic_to_truth(world: FeatureGridworld, R: np.ndarray) -> float:
    """EPIC distance of R [S, A, S'] to the true reward over every possible transition."""
    s, a, s2 = np.nonzero(world.mdp.transitions > 0)
    S, A = world.mdp.transitions.shape[:2]
    true = world.mdp.rewards
    return epic_distance(
        lambda x, u, y: true[x, u, y],
        lambda x, u, y: R[x, u, y],
        s,
        a,
        s2,
        np.arange(S),
        np.arange(A),
        world.mdp.gamma,
    )


def demonstrated_optimal(world: FeatureGridworld, R: np.ndarray, demos: Demonstrations) -> float:
    """Share of demonstrated (s, a) whose action is optimal under R."""
    pi = planned_policy(world, R)
    states = states_of(demos)[:, :-1]
    acts = np.array([t.acts for t in demos.trajectories])
    return float(np.mean(pi[states, acts] > 0))


def identifiability(
    world: FeatureGridworld, demos: Demonstrations, rewards: dict[str, np.ndarray]
) -> list[dict]:
    """Per candidate reward R [S, A, S']: EPIC to the truth, the share of demonstrated actions
    optimal under R, and the true return of the policy planned afresh on R (normalised:
    uniformly random 0, optimal for the true reward 1)."""
    P, T = world.mdp.transitions, world.horizon
    over_time = lambda pi: np.broadcast_to(pi, (T, *pi.shape))  # noqa: E731
    lo = expected_return(world, over_time(np.full(P.shape[:2], 1.0 / P.shape[1])))
    hi = expected_return(world, over_time(planned_policy(world, world.mdp.rewards)))
    rows = []
    for name, R in rewards.items():
        ret = expected_return(world, over_time(planned_policy(world, R)))
        rows.append(
            {
                "reward": name,
                "epic": epic_to_truth(world, R),
                "demos_optimal": demonstrated_optimal(world, R, demos),
                "true_return": ret,
                "normalised": (ret - lo) / (hi - lo),
            }
        )
    return rows


def candidate_rewards(
    world: FeatureGridworld, demos: Demonstrations, learned: np.ndarray, seed: int = 0
) -> dict[str, np.ndarray]:
    """Rewards that explain the demonstrations, besides the truth: MaxEnt's, a shaped truth,
    the zero reward, and the demonstrated-state indicator (1 where the demos went most)."""
    rng = np.random.default_rng(seed)
    S = len(world.initial)
    phi = rng.normal(0, 3, S)
    shaped = world.mdp.rewards + world.mdp.gamma * phi[None, None, :] - phi[:, None, None]
    counts = np.bincount(states_of(demos).ravel(), minlength=S)
    visited = (counts > np.median(counts)).astype(float)
    return {
        "true": world.mdp.rewards,
        "maxent_irl": as_sas(world, learned),
        "true_shaped": shaped,
        "zero": np.zeros_like(world.mdp.rewards),
        "demonstrated_states": as_sas(world, visited),
    }
