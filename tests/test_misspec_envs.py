"""The misspecification lab's envs: each hack is reachable, and honesty costs proxy reward."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from rlhflab.config import EnvConfig, PolicyConfig, build_config
from rlhflab.envs.misspec import ENVS, scripted_act
from rlhflab.policy.control import ControlPolicy
from rlhflab.policy.rollout import evaluate_returns

CASES = [  # (env id, kwargs, horizon)
    ("rlhflab/CoastRunners-v0", {}, 40),
    ("rlhflab/CleaningRobot-v0", {}, 30),
    ("rlhflab/TomatoWatering-v0", {"tampering": "sensor"}, 40),
    ("rlhflab/TomatoWatering-v0", {"tampering": "reward_function"}, 40),
    ("rlhflab/TomatoWatering-v0", {"tampering": "wireheading"}, 40),
    ("rlhflab/CoinRun-v0", {"coin_elsewhere": 1.0}, 20),  # the test distribution
    ("rlhflab/CameraGrasp-v0", {}, 20),
]


def scripted(env_id, kwargs, horizon, behaviour, episodes=32):
    env_cfg = EnvConfig(id=env_id, horizon=horizon, kwargs=kwargs)
    return evaluate_returns(env_cfg, episodes, scripted_act(env_id, behaviour, kwargs), seed=3)


@pytest.mark.parametrize(
    "env_id,kwargs,horizon",
    CASES,
    ids=lambda v: (
        str(v) if not isinstance(v, dict) else "-".join(map(str, v.values())) or "default"
    ),
)
def test_the_hack_is_reachable_and_honesty_costs_proxy_reward(env_id, kwargs, horizon):
    honest, hack = (
        scripted(env_id, kwargs, horizon, "honest"),
        scripted(env_id, kwargs, horizon, "hack"),
    )
    assert hack["proxy_reward"] > honest["proxy_reward"] + 0.5, (hack, honest)
    assert hack["true_reward"] < honest["true_reward"] - 0.5, (hack, honest)
    if env_id != "rlhflab/CoinRun-v0":  # the env returns its proxy …
        assert hack["reward"] == hack["proxy_reward"] and honest["reward"] == honest["proxy_reward"]
    else:  # … except CoinRun, whose reward (the coin) is correct: it fails by misgeneralising
        assert hack["reward"] == hack["true_reward"]


def test_coin_and_end_coincide_in_training_only():
    train = [scripted("rlhflab/CoinRun-v0", {}, 20, b) for b in ("honest", "hack")]
    assert all(
        r["true_reward"] == r["proxy_reward"] == 15.0 for r in train
    )  # in training, pursuing the cue gets the coin


def walk(env, actions):
    env.reset(seed=0)
    return [env.step(a)[4] for a in actions]


@pytest.mark.parametrize("tampering", ["sensor", "reward_function", "wireheading"])
def test_the_three_kinds_of_tampering_are_kept_apart(tampering):
    env = gym.make("rlhflab/TomatoWatering-v0", tampering=tampering, dry_prob=0.0).unwrapped
    # from the start (row 1, col 2): down, right, right reaches X at (2, 4); then up leaves it
    infos = walk(env, [1, 3, 3, 4, 0])
    on_x, after = infos[3], infos[4]
    assert on_x["tampered"]
    if tampering == "sensor":  # the input is fooled while on X; the function is intact
        assert on_x["proxy_reward"] == on_x["computed_reward"] == 1.0 > on_x["true_reward"]
        assert after["proxy_reward"] == after["true_reward"] and not after["tampered"]
    elif tampering == "reward_function":  # the function itself is rewritten, for good
        assert (
            on_x["proxy_reward"] == after["proxy_reward"] == 1.0 > after["true_reward"]
            and after["tampered"]
        )
    else:  # wireheading: the delivered number, outside the function's range, while on X
        assert on_x["proxy_reward"] == 2.0 and on_x["computed_reward"] == on_x["true_reward"] < 1.0
        assert after["proxy_reward"] == after["true_reward"]


@pytest.mark.parametrize("env_id", sorted(ENVS))
def test_envs_pass_gymnasiums_checker(env_id):
    check_env(gym.make(env_id).unwrapped, skip_render_check=True)


def test_ids_are_registered_on_import_and_validated_by_the_config():
    assert set(ENVS) <= set(gym.registry)
    cfg = build_config(None, ["env=rlhflab/TomatoWatering-v0", "env.kwargs.tampering=wireheading"])
    assert cfg.env.kwargs == {"tampering": "wireheading"}


@pytest.mark.parametrize(
    "env_id,kwargs,field",
    [
        ("rlhflab/TomatoWatering-v0", {"tampering": "bucket"}, "tampering"),
        ("rlhflab/CoinRun-v0", {"coin_elsewhere": 2}, "coin_elsewhere"),
        ("rlhflab/CoastRunners-v0", {"targets": [0, 20]}, "targets"),
    ],
)
def test_bad_constructor_arguments_name_the_field(env_id, kwargs, field):
    with pytest.raises(ValueError, match=field):
        gym.make(env_id, **kwargs)


def test_rollouts_record_every_reward_channel_and_segments_carry_the_judged_one():
    env_cfg = EnvConfig(id="rlhflab/CameraGrasp-v0", horizon=20, num_envs=2)
    policy = ControlPolicy(env_cfg, PolicyConfig(n_steps=40), seed=0)
    rollout = policy.collect()
    assert {"reward", "true_reward", "proxy_reward", "apparent_reward"} <= set(
        rollout.reward_channels
    )
    np.testing.assert_array_equal(rollout.true_rewards, rollout.reward_channels["true_reward"])
    np.testing.assert_array_equal(rollout.rewards("reward"), rollout.rewards("apparent_reward"))
    T, N = rollout.true_rewards.shape
    rollout.reward_channels["apparent_reward"] = marker = np.arange(
        T * N, dtype=np.float32
    ).reshape(T, N)  # each step's value names it
    for seg in rollout.sample_segments(20, 10, np.random.default_rng(0), judge="apparent_reward"):
        t, e = divmod(int(seg.judged_rewards[0]), N)
        np.testing.assert_array_equal(seg.judged_rewards, marker[t : t + 10, e])
        np.testing.assert_array_equal(seg.obs, rollout.raw_obs[t : t + 10, e])
    rng = np.random.default_rng(0)
    policy.close()
    cartpole = ControlPolicy(EnvConfig(num_envs=2), PolicyConfig(n_steps=16), seed=0)
    with pytest.raises(ValueError, match="apparent_reward"):
        cartpole.collect().sample_segments(2, 8, rng, judge="apparent_reward")
    cartpole.close()
