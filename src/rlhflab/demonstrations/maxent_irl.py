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
`identifiability()` tabulates both for a set of candidate rewards.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlhflab.demonstrations.dataset import Demonstrations, Trajectory
from rlhflab.diagnostics.epic import epic_distance
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


def planned_policy(world: FeatureGridworld, R: np.ndarray) -> np.ndarray:
    """[S, A] a policy trained afresh on R: γ-discounted value iteration, uniform over ties.

    Discounted (not finite-horizon) planning is the setting in which potential shaping, and so
    EPIC's equivalence classes, leave the optimal policies unchanged (Ng et al. 1999)."""
    _, Q = value_iteration(world.mdp.with_rewards(R))
    best = (Q.max(1, keepdims=True) - 1e-7 <= Q).astype(float)
    return best / best.sum(1, keepdims=True)


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
