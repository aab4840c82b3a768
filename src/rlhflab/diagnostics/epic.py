"""EPIC: the Equivalent-Policy Invariant Comparison distance between two reward functions
(Gleave, Dennis, Legg, Russell, Leike 2020, "Quantifying differences in reward functions").

Two rewards that differ only by potential shaping and positive rescaling, R' = λ·R + γΦ(s') − Φ(s)
with λ > 0, have the same optimal policies in every MDP with those dynamics. EPIC is zero between
them. It first *canonicalises* each reward, removing the shaping:
    C(R)(s, a, s') = R(s, a, s') + E[γ·R(s', A, S') − R(s, A, S') − γ·R(S, A, S')],
    S, S' ~ D_S and A ~ D_A independent;
and then takes the Pearson distance of the canonical rewards over a coverage distribution of
transitions (s, a, s') ~ D:
    D_EPIC(R_A, R_B) = D_ρ(C(R_A), C(R_B)),   D_ρ(U, V) = √((1 − ρ(U, V)) / 2)  ∈ [0, 1].
The Pearson correlation removes the scale λ and any constant.

Here the expectations are sample means: (A, S') ranges over every pair of the given action and
state samples, and S over the same state samples as S', so a potential's contributions cancel
exactly. A reward is any vectorised function reward(s, a, s') over a leading batch axis; states
and actions may be arrays of features or integer indices into tables of precomputed rewards
(how the report evaluates the rewards a run saved in `samples/`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Reward = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _expected_from(
    reward: Reward, states: np.ndarray, action_samples: np.ndarray, state_samples: np.ndarray
) -> np.ndarray:
    """E_{A, S'}[R(s, A, S')] for every s in `states`, over all pairs of action and state
    samples."""
    k, m = len(action_samples), len(state_samples)
    a = np.repeat(action_samples, m, axis=0)  # [k·m]: every A with every S'
    s2 = _tile(state_samples, k)
    out = np.empty(len(states))
    block = max(1, _BATCH // (k * m))  # states per call of the reward
    for i in range(0, len(states), block):
        s = states[i : i + block]
        b = len(s)
        r = reward(np.repeat(s, k * m, axis=0), _tile(a, b), _tile(s2, b))
        out[i : i + b] = np.asarray(r, float).reshape(b, k * m).mean(1)
    return out


_BATCH = 1 << 20  # (s, A, S') triples per call of the reward


def _tile(x: np.ndarray, times: int) -> np.ndarray:
    return np.tile(x, (times,) + (1,) * (x.ndim - 1))


def canonicalize(
    reward: Reward,
    s: np.ndarray,
    a: np.ndarray,
    s_next: np.ndarray,
    state_samples: np.ndarray,
    action_samples: np.ndarray,
    gamma: float,
) -> np.ndarray:
    """C(R)(s, a, s') for each transition (s[i], a[i], s_next[i])."""
    at_next = _expected_from(reward, s_next, action_samples, state_samples)
    at_s = _expected_from(reward, s, action_samples, state_samples)
    overall = float(np.mean(_expected_from(reward, state_samples, action_samples, state_samples)))
    return np.asarray(reward(s, a, s_next), float) + gamma * at_next - at_s - gamma * overall


def pearson_distance(u: np.ndarray, v: np.ndarray) -> float:
    """√((1 − ρ)/2); NaN when either is constant (no correlation is defined)."""
    u, v = np.asarray(u, float), np.asarray(v, float)
    if np.std(u) < 1e-12 or np.std(v) < 1e-12:
        return float("nan")
    rho = float(np.corrcoef(u, v)[0, 1])
    return float(np.sqrt(max(0.0, (1.0 - rho) / 2.0)))


def epic_distance(
    reward_a: Reward,
    reward_b: Reward,
    s: np.ndarray,
    a: np.ndarray,
    s_next: np.ndarray,
    state_samples: np.ndarray,
    action_samples: np.ndarray,
    gamma: float,
) -> float:
    """D_EPIC between two rewards over the coverage transitions (s, a, s_next)."""
    canon = [
        canonicalize(r, s, a, s_next, state_samples, action_samples, gamma)
        for r in (reward_a, reward_b)
    ]
    return pearson_distance(*canon)
