"""Maximum-entropy inverse RL with known dynamics (Ziebart, Maas, Bagnell & Dey 2008).

Trajectories are exponentially more likely the more reward they collect,
    P(τ | θ) ∝ exp Σ_t r_θ(s_t),   r_θ(s) = θ·φ(s),
and θ maximises the demonstrations' log-likelihood, whose gradient is the gap between the
demonstrated and the expected feature counts:
    ∇_θ L = E_D[Σ_t φ(s_t)] − Σ_t Σ_s D_t(s)·φ(s).
D_t comes from two passes over the known model (Ziebart's Algorithm 1, finite horizon T):
    backward  Q_t(s, a) = Σ_s' P(s'|s, a)·[R(s, a, s') + V_{t+1}(s')],  V_t = log Σ_a exp Q_t,
              π_t(a|s) = exp(Q_t(s, a) − V_t(s))
    forward   D_0 = p₀,  D_{t+1}(s') = Σ_{s, a} D_t(s)·π_t(a|s)·P(s'|s, a).
Departure: Ziebart's backward pass is the deterministic-MDP approximation; this is the
soft value iteration of Ziebart's 2010 thesis (causal entropy), exact for stochastic dynamics.

Identifiability (Ng & Russell 2000; Skalse et al. 2023): many rewards explain the same
demonstrations — potential shaping R + γΦ(s') − Φ(s) leaves every optimal policy unchanged, the
zero reward makes every policy optimal — so a learned reward is compared with the truth by EPIC,
which is zero across shaping and scale, and by the true return of a policy planned on it afresh.
`diagnostics/identifiability.py` tabulates both for a set of candidate rewards.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlhflab.demonstrations.dataset import Demonstrations, Trajectory
from rlhflab.envs.gridworld import FeatureGridworld
from rlhflab.envs.tabular import value_iteration


def _logsumexp(q: np.ndarray) -> np.ndarray:
    m = q.max(-1, keepdims=True)
    return (m + np.log(np.exp(q - m).sum(-1, keepdims=True)))[..., 0]


def soft_policies(P: np.ndarray, R: np.ndarray, horizon: int) -> np.ndarray:
    """[T, S, A] the time-indexed maximum-entropy policy for reward R [S, A, S'] (backward pass)."""
    V = np.zeros(P.shape[0])
    out = []
    for _ in range(horizon):
        Q = np.einsum("sat,sat->sa", P, R + V[None, None, :])
        V = _logsumexp(Q)
        out.append(np.exp(Q - V[:, None]))
    return np.array(out[::-1])


def optimal_policies(P: np.ndarray, R: np.ndarray, horizon: int, tol: float = 1e-9) -> np.ndarray:
    """[T, S, A] the finite-horizon optimal policy, uniform over ties (backward induction)."""
    V = np.zeros(P.shape[0])
    out = []
    for _ in range(horizon):
        Q = np.einsum("sat,sat->sa", P, R + V[None, None, :])
        best = (Q.max(1, keepdims=True) - tol <= Q).astype(float)
        out.append(best / best.sum(1, keepdims=True))
        V = Q.max(1)
    return np.array(out[::-1])


def visitation(P: np.ndarray, policies: np.ndarray, initial: np.ndarray) -> np.ndarray:
    """[T, S] state-visitation distribution D_t (forward pass)."""
    D = [initial]
    for pi in policies[:-1]:
        D.append(np.einsum("s,sa,sat->t", D[-1], pi, P))
    return np.array(D)


def expected_return(world: FeatureGridworld, policies: np.ndarray) -> float:
    """Exact expected true return of a time-indexed policy over the world's horizon."""
    D = visitation(world.mdp.transitions, policies, world.initial)
    return float((D * world.state_reward[None]).sum())


def sample_demonstrations(
    world: FeatureGridworld, n: int, seed: int = 0, policies: np.ndarray | None = None
) -> Demonstrations:
    """n trajectories of the maximum-entropy expert (the model MaxEnt IRL assumes), obs one-hot."""
    rng = np.random.default_rng(seed)
    P, S = world.mdp.transitions, len(world.initial)
    pi = soft_policies(P, world.mdp.rewards, world.horizon) if policies is None else policies
    trajs = []
    for _ in range(n):
        s = rng.choice(S, p=world.initial)
        states, acts = [s], []
        for t in range(world.horizon):
            a = rng.choice(pi.shape[2], p=pi[t, s])
            s = rng.choice(S, p=P[s, a])
            states.append(s)
            acts.append(a)
        rews = world.state_reward[states[:-1]].astype(np.float32)
        trajs.append(
            Trajectory(np.eye(S, dtype=np.float32)[states], np.array(acts), None, False, rews)
        )
    return Demonstrations(trajs, "rlhflab/Gridworld-v0", "maxent-expert")


def states_of(demos: Demonstrations) -> np.ndarray:
    """[n, T+1] state indices of one-hot gridworld observations."""
    return np.array([t.obs.argmax(1) for t in demos.trajectories])


@dataclass
class MaxEntResult:
    theta: np.ndarray
    state_reward: np.ndarray  # [S] θ·φ(s)
    gradient_norm: float  # ‖∇L‖ at the end: the feature-count gap


def maxent_irl(
    world: FeatureGridworld,
    demos: Demonstrations,
    iterations: int = 300,
    lr: float = 0.5,
    features: np.ndarray | None = None,
) -> MaxEntResult:
    """Fit θ by gradient ascent on the demonstrations' MaxEnt log-likelihood."""
    phi = world.features if features is None else features
    P, T = world.mdp.transitions, world.horizon
    states = states_of(demos)[:, :T]
    demo_counts = phi[states].sum(1).mean(0)  # E_D[Σ_t φ(s_t)]
    theta = np.zeros(phi.shape[1])
    grad = demo_counts
    for _ in range(iterations):
        r = phi @ theta
        R = np.broadcast_to(r[:, None, None], P.shape)
        D = visitation(P, soft_policies(P, R, T), world.initial)
        grad = demo_counts - (D.sum(0) @ phi)
        theta = theta + lr * grad / T
    return MaxEntResult(theta, phi @ theta, float(np.linalg.norm(grad)))


def as_sas(world: FeatureGridworld, state_reward: np.ndarray) -> np.ndarray:
    """A state reward r(s) as R(s, a, s') = r(s)."""
    return np.broadcast_to(state_reward[:, None, None], world.mdp.transitions.shape).copy()


def planned_policy(world: FeatureGridworld, R: np.ndarray) -> np.ndarray:
    """[S, A] a policy trained afresh on R: γ-discounted value iteration, uniform over ties.

    Discounted (not finite-horizon) planning is the setting in which potential shaping, and so
    EPIC's equivalence classes, leave the optimal policies unchanged (Ng et al. 1999)."""
    _, Q = value_iteration(world.mdp.with_rewards(R))
    best = (Q.max(1, keepdims=True) - 1e-7 <= Q).astype(float)
    return best / best.sum(1, keepdims=True)
