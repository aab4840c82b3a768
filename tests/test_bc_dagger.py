"""Behavioural cloning and DAgger on scripted experts."""

import itertools

import gymnasium as gym
import numpy as np

from rlhflab.config import EnvConfig
from rlhflab.demonstrations.bc import behavioural_cloning, make_policy
from rlhflab.demonstrations.dagger import dagger, mixture
from rlhflab.demonstrations.experts import cartpole_expert, maze_expert, record
from rlhflab.policy.rollout import evaluate_true_return

CARTPOLE = gym.spaces.Discrete(2)


def test_bc_fits_a_deterministic_expert_exactly_on_seen_states():
    demos = record("rlhflab/Maze-v0", 20, 6, maze_expert, seed=0, kwargs={"layouts": [0, 3]})
    result = behavioural_cloning(demos, gym.spaces.Discrete(4), epochs=150, seed=0)
    obs, acts, _ = demos.transitions()
    assert result.train_accuracy == 1.0
    np.testing.assert_array_equal(result.policy.act(obs), acts)


def test_bc_on_cartpole_matches_the_expert_on_its_own_states():
    demos = record("CartPole-v1", 200, 5, cartpole_expert, seed=0)
    result = behavioural_cloning(demos, CARTPOLE, epochs=50, seed=0)
    assert result.train_accuracy > 0.97
    env = EnvConfig(id="CartPole-v1", horizon=200)
    assert evaluate_true_return(env, 8, result.policy.act) > 150


def test_mixture_uses_the_expert_with_probability_beta():
    rng = np.random.default_rng(0)
    act = mixture(
        lambda o: np.ones(len(o), np.int64), lambda o: np.zeros(len(o), np.int64), 0.3, rng
    )
    assert abs(act(np.zeros((20_000, 4))).mean() - 0.3) < 0.02


def test_dagger_grows_the_dataset_with_expert_labels_on_learner_states():
    demos = record("CartPole-v1", 50, 2, cartpole_expert, seed=0)
    policy = make_policy(4, CARTPOLE)
    result = dagger(policy, demos, cartpole_expert, "CartPole-v1", 300, iterations=2, episodes=2)
    sizes = [demos.steps] + [h["dataset"] for h in result.history]
    assert all(b > a for a, b in itertools.pairwise(sizes))
    new = result.obs[demos.steps :]
    np.testing.assert_array_equal(result.acts[demos.steps :], cartpole_expert(new))
    # the learner went where the expert's 50-step demonstrations never did
    assert np.abs(new[:, 0]).max() > np.abs(demos.transitions()[0][:, 0]).max()


def test_dagger_closes_bcs_long_horizon_gap():
    """BC on two 50-step demonstrations drifts over 1000 steps; DAgger's labels fix it."""
    demos = record("CartPole-v1", 50, 2, cartpole_expert, seed=0)
    long = EnvConfig(id="CartPole-v1", horizon=1000)
    bc = behavioural_cloning(demos, CARTPOLE, epochs=50, seed=0).policy
    policy = make_policy(4, CARTPOLE)
    dg = dagger(policy, demos, cartpole_expert, "CartPole-v1", 1000, iterations=3, episodes=2)
    bc_return = evaluate_true_return(long, 8, bc.act)
    dagger_return = evaluate_true_return(long, 8, dg.policy.act)
    assert dagger_return > 900 and dagger_return > bc_return + 200
