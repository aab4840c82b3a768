import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from rlhflab.envs.wrappers import UnsupportedEnvError, make_env


def test_fixed_horizon_turns_termination_into_an_absorbing_state():
    env = make_env("CartPole-v1", horizon=60)
    obs, _ = env.reset(seed=0)
    steps, absorbing_since, rewards = 0, None, []
    while True:
        obs, r, terminated, truncated, info = env.step(
            0
        )  # always push left: falls within ~10 steps
        steps += 1
        rewards.append(r)
        assert not terminated  # termination never leaks
        if info["absorbing"] and absorbing_since is None:
            absorbing_since, absorbing_obs = steps, obs
        if absorbing_since is not None:
            np.testing.assert_array_equal(obs, absorbing_obs)
        if truncated:
            break
    assert steps == 60
    assert 2 < absorbing_since < 30
    assert (
        sum(rewards) == absorbing_since - 1
    )  # true reward only while alive; 0 in the absorbing state


class DictObsEnv(gym.Env):
    observation_space = spaces.Dict({"pos": spaces.Box(-1, 1, (2,)), "flag": spaces.Discrete(3)})
    action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 1.0, False, False, {}


class MultiDiscreteActionEnv(DictObsEnv):
    action_space = spaces.MultiDiscrete([2, 2])


gym.register("Test/DictObs-v0", entry_point=DictObsEnv)
gym.register("Test/MultiDiscreteAction-v0", entry_point=MultiDiscreteActionEnv)


def test_dict_observations_are_flattened():
    env = make_env("Test/DictObs-v0", horizon=5)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (5,)  # 2 continuous + one-hot of 3


def test_unsupported_action_space_is_refused_with_a_message():
    with pytest.raises(UnsupportedEnvError, match="MultiDiscrete"):
        make_env("Test/MultiDiscreteAction-v0", horizon=5)
