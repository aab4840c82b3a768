"""The control loop's representation of absorbing steps, its segments and queries, and the probe's
measurements (gold reward, counterfactuals, KL to π₀)."""

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlhflab.config import EnvConfig, PolicyConfig, RewardConfig, build_config
from rlhflab.diagnostics.probe import Probe, counterfactual_rewards
from rlhflab.envs.wrappers import make_env
from rlhflab.feedback.selection import candidate_pairs
from rlhflab.policy.control import ControlPolicy, FrozenPolicy, kl_per_step
from rlhflab.reward.model import RewardEnsemble
from rlhflab.runs import RunDir
from rlhflab.types import Segment


@pytest.fixture(scope="module")
def cartpole_rollout():
    """A random CartPole policy at a 200-step horizon: most of each episode is absorbing."""
    policy = ControlPolicy(EnvConfig(id="CartPole-v1", horizon=200, num_envs=4), PolicyConfig())
    rollout = policy.collect()
    policy.close()
    assert rollout.absorbing.mean() > 0.3  # the case that matters
    return rollout


def test_an_absorbing_step_is_one_input_whatever_its_observation_and_action(cartpole_rollout):
    """Kostrikov et al.: r̂(absorbing) is one learned value, not r̂(final obs, random action)."""
    model = RewardEnsemble(4, gym.spaces.Discrete(2), RewardConfig(use_actions=True), seed=0)
    model.feature_rms.update(np.random.default_rng(0).normal(size=(100, 6)))
    obs = np.random.default_rng(1).normal(size=(50, 4)).astype(np.float32)
    actions = np.random.default_rng(2).integers(2, size=50)
    absorbing = np.ones(50, bool)
    r = model.predict(obs, actions, absorbing)
    np.testing.assert_allclose(r, r[0], rtol=1e-6)  # one value for every absorbing step
    live = model.predict(obs, actions, ~absorbing)
    assert np.std(live) > 1e-4  # live steps still read observation and action
    x = model.features(obs, actions, absorbing)
    assert torch.all(x[:, :-1] == 0) and torch.all(x[:, -1] == 1)


def test_segments_start_live_are_distinct_and_carry_their_absorbing_steps(cartpole_rollout):
    rng = np.random.default_rng(0)
    windows = cartpole_rollout.segment_windows(25)
    segments = cartpole_rollout.sample_segments(len(windows), 25, rng)
    starts = {(s.env_steps, s.obs.tobytes()) for s in segments}
    assert len(starts) == len(windows)  # without replacement: every window once
    for s in segments:
        assert not s.absorbing_mask[0]  # never a clip wholly after the episode ended
        assert s.judged_rewards[s.absorbing_mask].sum() == 0  # absorbing steps earn nothing
    assert any(s.absorbing_mask.any() for s in segments)  # falls are shown, then marked


def test_candidate_pairs_never_pair_a_segment_with_itself_or_its_copy():
    rng = np.random.default_rng(0)
    seg = Segment(np.zeros((5, 2), np.float32), np.zeros(5, np.int64), np.zeros(5, np.float32))
    other = Segment(np.ones((5, 2), np.float32), np.zeros(5, np.int64), np.zeros(5, np.float32))
    pairs = candidate_pairs([seg, copy.deepcopy(seg), other, copy.deepcopy(other)], 20, rng)
    assert pairs and all(not np.array_equal(a.obs, b.obs) for a, b in pairs)
    with pytest.raises(ValueError, match="identical"):
        candidate_pairs([seg, copy.deepcopy(seg)], 3, rng)


def test_the_probe_measures_gold_not_the_hackable_proxy(tmp_path):
    """On a misspecification env the returned reward is the proxy: samples hold "
    "info['true_reward']."""
    cfg = build_config(
        None,
        [
            "env=rlhflab/CoastRunners-v0",
            "env.horizon=40",
            "policy.n_steps=40",
            "feedback.segment_length=10",
        ],
    )
    policy = ControlPolicy(cfg.env, cfg.policy, seed=0)
    model = RewardEnsemble(policy.obs_dim, policy.action_space, cfg.reward)
    Probe(cfg, RunDir(tmp_path), policy, model).save_samples(0)
    with np.load(tmp_path / "samples" / "iter_0000.npz") as s:
        obs, actions, true, episode = s["obs"], s["actions"], s["true"], s["episode"]
    env = make_env(cfg.env.id, cfg.env.horizon, cfg.env.kwargs)
    env.reset(seed=cfg.seed + 30_000 + 1)  # the random policy's episode
    gold, proxy = [], []
    for a in actions[episode == 1]:
        _, reward, _, _, info = env.step(a)
        gold.append(info.get("true_reward", 0.0))
        proxy.append(reward)
    np.testing.assert_allclose(true[episode == 1, 0], gold, atol=1e-6)
    assert not np.allclose(gold, proxy)  # the test can tell the two apart
    # counterfactual columns: the gold reward of every action at the same state
    assert np.all(np.isfinite(true)) and true.shape[1] == 1 + policy.action_space.n
    assert len(obs) == len(actions) == 2 * cfg.env.horizon


def test_mujoco_counterfactuals_restore_the_simulator_exactly():
    """r(s, a) for actions not taken equals what the env gives when a is taken (a replay from
    the same seed); copy.deepcopy of a MuJoCo env is several milliseconds and not exact."""
    pytest.importorskip("mujoco")
    rng = np.random.default_rng(0)
    history = rng.uniform(-1, 1, size=(5, 6))
    actions = rng.uniform(-1, 1, size=(4, 6))

    def at_state():
        env = make_env("HalfCheetah-v5", 50)
        env.reset(seed=0)
        for a in history:
            env.step(a)
        return env

    env = at_state()
    before = env.unwrapped.data.qpos.copy()
    got = counterfactual_rewards(env, actions)
    np.testing.assert_array_equal(env.unwrapped.data.qpos, before)  # left where it was
    replayed = [float(at_state().step(a)[1]) for a in actions]
    np.testing.assert_allclose(got, replayed, rtol=1e-9)


def test_kl_to_the_initial_policy_reads_each_policy_through_its_own_statistics():
    policy = ControlPolicy(EnvConfig(id="Pendulum-v1", num_envs=2), PolicyConfig(n_steps=64))
    with torch.no_grad():
        policy.net.actor[-1].weight.mul_(100)  # an actor whose output depends on its input
    reference = FrozenPolicy(policy)
    rollout = policy.collect()  # updates the live policy's observation statistics only
    assert np.allclose(kl_per_step(reference, reference, rollout.raw_obs), 0.0)
    with torch.no_grad():  # the same net: any KL comes from the statistics
        now = policy._normalize(rollout.raw_obs.reshape(-1, 3), update=False)
        mean = policy.net.distribution(torch.as_tensor(now))
        mean0 = reference.net.distribution(torch.as_tensor(rollout.raw_obs.reshape(-1, 3)))
        expected = torch.distributions.kl_divergence(mean, mean0).sum(-1).mean()
    got = kl_per_step(policy, reference, rollout.raw_obs).mean()
    assert got > 1e-4 and got == pytest.approx(float(expected), rel=1e-4)
    policy.close()


def test_a_mujoco_env_without_a_preset_gets_the_family_settings():
    walker = build_config(None, ["env=Walker2d-v5"])
    assert walker.task == "walker2d-v5-preferences"
    assert walker.env.horizon == 1000  # the env's own time limit
    assert walker.policy.log_std_init == -1.0 and walker.env_steps == 307_200
    assert build_config(None, ["env=Walker2d-v5", "policy.log_std_init=0"]).policy.log_std_init == 0
    # an env with a preset of its own keeps it; a classic-control env has no family
    assert build_config(None, ["env=Pendulum-v1"]).policy.gamma == 0.9
    assert build_config(None, ["env=Acrobot-v1"]).policy.log_std_init == 0.0


def test_mujoco_frames_render_without_shadows_or_reflections():
    pytest.importorskip("mujoco")
    env = make_env("HalfCheetah-v5", 10, {"width": 64, "height": 64}, render_mode="rgb_array")
    env.reset(seed=0)
    model = env.unwrapped.model
    assert not model.light_castshadow.any() and not model.mat_reflectance.any()
    frame = np.asarray(env.render())
    assert frame.shape == (64, 64, 3) and frame.std() > 10  # a picture, not a blank buffer
    env.close()
