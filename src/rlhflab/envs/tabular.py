"""Small tabular MDPs, solved exactly by value iteration (Sutton & Barto 2018, §4.4).

    Q(s, a) = Σ_s' P(s'|s, a)·[R(s, a, s') + γ·V(s')],    V(s) = max_a Q(s, a)
iterated until max |ΔV| < tol; a terminal state has V = 0 (the episode ends on
entering it). With γ < 1 the iteration is a contraction and converges to the optimum.

`race_mdp()` is CoastRunners (`rlhflab/CoastRunners-v0`) in six states, the example
on which naive reward shaping changes the optimal policy and potential-based shaping
does not (`rlhflab.envs.shaping`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class TabularMDP:
    transitions: np.ndarray  # [S, A, S'] P(s'|s, a)
    rewards: np.ndarray  # [S, A, S'] R(s, a, s')
    gamma: float
    terminal: np.ndarray  # [S] bool: entering ends the episode (V = 0)
    states: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()

    def __post_init__(self):
        S, A, S2 = self.transitions.shape
        if S != S2 or self.rewards.shape != (S, A, S) or self.terminal.shape != (S,):
            raise ValueError(
                f"transitions and rewards must be [S, A, S] and terminal [S]; got "
                f"{self.transitions.shape}, {self.rewards.shape}, {self.terminal.shape}"
            )
        if not np.allclose(self.transitions.sum(-1), 1.0):
            raise ValueError("transitions: each P(·|s, a) must sum to 1")
        if not 0 <= self.gamma < 1:
            raise ValueError(f"gamma must be in [0, 1), got {self.gamma}")

    def with_rewards(self, rewards: np.ndarray) -> TabularMDP:
        return replace(self, rewards=np.asarray(rewards, dtype=np.float64))


def value_iteration(
    mdp: TabularMDP, tol: float = 1e-10, max_iter: int = 100_000
) -> tuple[np.ndarray, np.ndarray]:
    """The optimal values V* [S] and action values Q* [S, A]."""
    V = np.zeros(len(mdp.terminal))
    for _ in range(max_iter):
        Q = np.einsum("sat,sat->sa", mdp.transitions, mdp.rewards + mdp.gamma * V[None, None, :])
        new = np.where(mdp.terminal, 0.0, Q.max(1))
        if np.max(np.abs(new - V)) < tol:
            return new, Q
        V = new
    raise RuntimeError(f"value iteration did not converge in {max_iter} iterations")


def optimal_actions(
    Q: np.ndarray, terminal: np.ndarray | None = None, tol: float = 1e-7
) -> list[frozenset[int]]:
    """The set of optimal actions in each state (ties kept; empty for terminal states)."""
    sets = [frozenset(np.flatnonzero(q >= q.max() - tol).tolist()) for q in Q]
    return [frozenset() if terminal is not None and terminal[s] else a for s, a in enumerate(sets)]


def race_mdp(gamma: float = 0.9) -> TabularMDP:
    """A boat race in six states: start, target A, target B, two more stretches, finish.

    Actions: forward, back (deterministic). The true reward is 1 for reaching the finish
    (terminal); the optimal policy drives forward everywhere.
    """
    states = ("start", "target A", "target B", "straight 1", "straight 2", "finish")
    S, A = len(states), 2
    P = np.zeros((S, A, S))
    for s in range(S):
        P[s, 0, min(s + 1, S - 1)] = 1.0
        P[s, 1, max(s - 1, 0)] = 1.0
    R = np.zeros((S, A, S))
    R[:, :, S - 1] = 1.0
    R[S - 1] = 0.0
    terminal = np.zeros(S, dtype=bool)
    terminal[S - 1] = True
    return TabularMDP(P, R, gamma, terminal, states, ("forward", "back"))
