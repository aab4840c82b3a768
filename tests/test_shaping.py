"""Reward shaping: potential-based shaping keeps the optimal policy (Ng et al. 1999); naive shaping
can loop."""

import gymnasium as gym
import numpy as np
import pytest

from rlhflab.envs.shaping import NaiveShaping, PotentialShaping, naive_shaping, potential_shaping
from rlhflab.envs.tabular import TabularMDP, optimal_actions, race_mdp, value_iteration

TARGETS = np.array([0.0, 0.5, 0.5, 0.0, 0.0, 0.0])  # "points for hitting targets" A and B


def policy(mdp):
    return optimal_actions(value_iteration(mdp)[1], mdp.terminal)


def test_naive_target_bonus_makes_circling_optimal_in_the_race():
    race = race_mdp()
    assert all(a == {0} for a in policy(race)[:-1])  # forward everywhere
    shaped = policy(naive_shaping(race, TARGETS))
    assert shaped[2] == {1} and shaped[1] == {0}  # at B turn back to A, at A go to B: a reward loop
    V, _ = value_iteration(naive_shaping(race, TARGETS))
    assert V[2] == pytest.approx(0.5 / (1 - 0.9))  # the loop pays b every step, forever


def test_the_same_bonus_as_a_potential_keeps_the_optimal_policy():
    race = race_mdp()
    assert policy(potential_shaping(race, TARGETS)) == policy(race)


def random_mdp(rng, S=7, A=3, gamma=0.9):
    P = rng.dirichlet(np.ones(S) * 0.3, size=(S, A))
    terminal = np.zeros(S, dtype=bool)
    terminal[-1] = True
    return TabularMDP(P, rng.normal(size=(S, A, S)), gamma, terminal)


@pytest.mark.parametrize("seed", range(5))
def test_potential_shaping_shifts_q_by_minus_phi_for_any_potential(seed):
    rng = np.random.default_rng(seed)
    mdp = random_mdp(rng)
    phi = rng.normal(scale=5.0, size=7)
    _, Q = value_iteration(mdp)
    _, Q_shaped = value_iteration(potential_shaping(mdp, phi))
    phi[mdp.terminal] = 0.0
    live = ~mdp.terminal
    np.testing.assert_allclose(
        Q_shaped[live], (Q - phi[:, None])[live], atol=1e-7
    )  # Ng et al.'s Q' = Q − Φ
    assert optimal_actions(Q_shaped, mdp.terminal) == optimal_actions(Q, mdp.terminal)


def test_bad_mdps_are_refused_with_the_field_named():
    race = race_mdp()
    with pytest.raises(ValueError, match="gamma"):
        TabularMDP(race.transitions, race.rewards, 1.0, race.terminal)
    with pytest.raises(ValueError, match="transitions"):
        TabularMDP(race.transitions * 2, race.rewards, 0.9, race.terminal)


class Walk(gym.Env):
    """Position on a line, reward 1 per step, terminates at position 3."""

    observation_space = gym.spaces.Box(-100, 100, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        self.pos = 0
        return np.array([self.pos], np.float32), {}

    def step(self, action):
        self.pos += 1 if action == 1 else -1
        return np.array([self.pos], np.float32), 1.0, self.pos == 3, False, {}


@pytest.mark.parametrize("gamma", [1.0, 0.9])
def test_potential_wrapper_telescopes_and_keeps_the_true_reward(gamma):
    env = PotentialShaping(Walk(), potential=lambda obs: 10.0 * obs[0], gamma=gamma)
    env.reset()
    positions, shaped = [0], []
    for a in [1, 0, 1, 1]:  # 1, 0, 1, 2 — not terminated
        obs, r, terminated, _, info = env.step(a)
        assert info["true_reward"] == 1.0 and info["proxy_reward"] == r and not terminated
        positions.append(int(obs[0]))
        shaped.append(r)
    discounted = sum(gamma**t * r for t, r in enumerate(shaped))
    undiscounted = sum(gamma**t * 1.0 for t in range(4))
    assert discounted == pytest.approx(
        undiscounted + gamma**4 * 10.0 * positions[-1] - 10.0 * positions[0]
    )
    _, r, terminated, _, _ = env.step(1)  # reaches 3 and terminates: Φ(terminal) = 0
    assert terminated and r == pytest.approx(1.0 - 10.0 * 2)


def test_naive_wrapper_adds_its_bonus():
    env = NaiveShaping(
        Walk(), bonus=lambda obs, action, next_obs: 0.5 if next_obs[0] > obs[0] else 0.0
    )
    env.reset()
    rewards = [env.step(a)[1] for a in [1, 0, 1, 0]]
    assert rewards == [1.5, 1.0, 1.5, 1.0]  # back and forth earns the bonus again and again
