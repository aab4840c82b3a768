"""Measurements of the policy on fresh samples, beside the loop's own metrics.

Every iteration (into the metrics record):
  rm_disagreement  mean over pairs (σ¹, σ²) of fresh rollout segments of std_m P̂_m[σ¹ ≻ σ²],
                   the spread of the ensemble members' preferences — the quantity Christiano et
                   al. 2017 §2.2.4 select queries by. It rises when the policy goes where the
                   reward model has no labels.
  kl               KL(π‖π_ref) per step on the rollout's states, in nats: the analytic KL
                   between the action distributions, absorbing states left out. π_ref is the
                   policy as initialised, with its own observation statistics
                   (`policy.control.kl_per_step`).

At checkpoints, `samples/iter_XXXX.npz`: one episode of the current (stochastic) policy and one of a
uniformly random policy — together the coverage distribution D for EPIC (Gleave et al. 2020 advise
one broader than the policy's own). At each state it holds the true reward and r̂ for the action
taken (column 0) and for a fixed set of actions D_A (columns 1…k: every action when discrete, 8
uniform draws when continuous). True rewards for actions not taken come from stepping a copy of the
env: a MuJoCo env's simulator state is saved and restored, any other env is copied; where the
env cannot be copied those columns are NaN. "True" is `info["true_reward"]` where the env
reports one (the misspecification envs, whose returned reward is the hackable proxy).

At the start and the end of training, `clips/iter_XXXX.mp4` (H.264, the labeling app's encoder;
`.gif` without ffmpeg) — the first 300 steps of one episode of the deterministic policy, every
second frame at half size (MuJoCo rendered at 240×240), frames after the episode ended marked —
and `clips/iter_XXXX.npz` with the numbers of the whole episode (obs, actions, true reward,
r̂). When the env cannot render, only the numbers are saved and the report shows them as a
table.

The probe holds the policy and reward model objects themselves, so it runs where they live.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlhflab.config import RunConfig
from rlhflab.envs.wrappers import make_env, render_size
from rlhflab.feedback.clips import make_clip, mark_episode_over
from rlhflab.policy.control import FrozenPolicy, kl_per_step
from rlhflab.reward.model import NonFiniteRewardError

CONTINUOUS_ACTION_SAMPLES = 8
FRAME_STRIDE = 2
CLIP_STEPS = 300  # a clip shows at most the first 300 steps of an episode


class Probe:
    def __init__(self, cfg: RunConfig, run, policy, reward_model):
        self.cfg, self.run, self.policy, self.reward_model = cfg, run, policy, reward_model
        self.reference = FrozenPolicy(policy)  # π_ref until `freeze_reference` at the start of RL

    def freeze_reference(self, snapshot: Path | None = None) -> None:
        """π_ref = π₀ as RL starts (its weights and observation statistics), the policy that
        `policy_0000.pt` holds for Goodhart curves; from that file when resuming."""
        self.reference = FrozenPolicy(self.policy)
        if snapshot is not None:
            state = torch.load(snapshot, weights_only=False)
            self.reference.net.load_state_dict(state["net"])
            self.reference.obs_rms.load_state_dict(state["obs_rms"])

    def measure(self, rollout, iteration: int) -> dict:
        return {
            "rm_disagreement": self.disagreement(rollout, iteration),
            "kl": self.kl_to_reference(rollout),
        }

    def disagreement(self, rollout, iteration: int) -> float | None:
        if not self.reward_model.fits:
            return None
        rng = np.random.default_rng(
            [self.cfg.seed, 4, iteration]
        )  # its own stream: query selection is unchanged
        segments = rollout.sample_segments(
            2 * self.cfg.alarms.disagreement_pairs, self.cfg.feedback.segment_length, rng
        )
        if len(segments) < 2:  # no live windows: the policy spends its time after episode ends
            return None
        pairs = list(zip(segments[::2], segments[1::2]))
        return float(np.mean(self.reward_model.disagreement(pairs)))

    def kl_to_reference(self, rollout) -> float | None:
        acting = ~rollout.absorbing
        if not acting.any():
            return None
        return float(kl_per_step(self.policy, self.reference, rollout.raw_obs[acting]).mean())

    # -- samples and clips ----------------------------------------------------------------
    def action_samples(self, space: gym.Space, seed: int) -> np.ndarray:
        if isinstance(space, gym.spaces.Discrete):
            return np.arange(space.start, space.start + space.n)
        space = copy.deepcopy(space)
        space.seed(seed)
        return np.stack([space.sample() for _ in range(CONTINUOUS_ACTION_SAMPLES)]).astype(
            np.float32
        )

    def save_samples(self, iteration: int, clip: bool = False) -> None:
        seed = self.cfg.seed + 30_000 + iteration
        with (
            torch.random.fork_rng()
        ):  # sampling actions here leaves the training run's random stream alone
            torch.manual_seed(seed)
            samples = self.action_samples(self.policy.action_space, seed)
            episodes = [
                self._episode(self.policy.act_fn(deterministic=False), seed, samples).arrays(),
                self._episode(None, seed + 1, samples).arrays(),
            ]
        actions = np.concatenate([e["actions"] for e in episodes])
        grid_actions = np.concatenate(
            [actions[:, None], np.broadcast_to(samples, (len(actions), *samples.shape))], axis=1
        )
        obs = np.concatenate([e["obs"] for e in episodes])
        absorbing = np.concatenate([e["absorbing"] for e in episodes])
        out = self.run.path / "samples"
        out.mkdir(exist_ok=True)
        np.savez_compressed(
            out / f"iter_{iteration:04d}.npz",
            obs=obs,
            actions=actions,
            action_samples=samples,
            true=np.concatenate([e["true"] for e in episodes]),
            r_hat=self._predict(
                np.repeat(obs[:, None], grid_actions.shape[1], 1),
                grid_actions,
                np.repeat(absorbing[:, None], grid_actions.shape[1], 1),
            ),
            episode=np.repeat(np.arange(len(episodes)), [len(e["obs"]) for e in episodes]),
            source=np.array(["policy", "random"]),
            absorbing=absorbing,
            gamma=self.cfg.policy.gamma,
            iteration=iteration,
            env_steps=self.policy.env_steps,
        )
        if clip:
            self.save_clip(iteration)

    def save_clip(self, iteration: int) -> None:
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # rgb_array needs no display or sound
        os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
        episode = self._episode(
            self.policy.act_fn(deterministic=True), self.cfg.seed + 40_000, None, render=True
        )
        numbers = episode.arrays()
        out = self.run.path / "clips"
        out.mkdir(exist_ok=True)
        if episode.frames:  # the labeling app's encoder: MP4 (H.264), GIF without ffmpeg
            ended = np.asarray(episode.absorbing[: len(episode.frames) * FRAME_STRIDE])
            frames = mark_episode_over(episode.frames, ended[::FRAME_STRIDE])
            clip = make_clip(frames, fps=1000 / (20 * FRAME_STRIDE))
            (out / f"iter_{iteration:04d}{clip.suffix}").write_bytes(clip.data)
        np.savez_compressed(
            out / f"iter_{iteration:04d}.npz",
            obs=numbers["obs"],
            actions=numbers["actions"],
            true=numbers["true"][:, 0],
            r_hat=self._predict(numbers["obs"], numbers["actions"], numbers["absorbing"]),
            render_error=np.array(episode.render_error),
            iteration=iteration,
            env_steps=self.policy.env_steps,
        )

    def _predict(self, obs: np.ndarray, actions: np.ndarray, absorbing: np.ndarray) -> np.ndarray:
        try:
            return self.reward_model.predict(obs, actions, absorbing.astype(bool))
        except NonFiniteRewardError:
            return np.full(obs.shape[:-1], np.nan, np.float32)

    @torch.no_grad()
    def _episode(
        self, act, seed: int, action_samples: np.ndarray | None, render: bool = False
    ) -> ProbeEpisode:
        """One fixed-horizon episode; act = None is the uniformly random policy. With
        `render`, every FRAME_STRIDE-th frame of the first CLIP_STEPS steps is kept."""
        env_cfg = self.cfg.env
        env = make_env(
            env_cfg.id,
            env_cfg.horizon,
            {**env_cfg.kwargs, **(render_size(env_cfg.id) if render else {})},
            render_mode="rgb_array" if render else None,
        )
        env.action_space.seed(seed)
        obs, _ = env.reset(seed=seed)
        episode = ProbeEpisode()
        counterfactuals = action_samples is not None
        for t in range(env_cfg.horizon):
            if render and not episode.render_error and t < CLIP_STEPS and t % FRAME_STRIDE == 0:
                episode.add_frame(env)
            action = env.action_space.sample() if act is None else act(obs[None])[0]
            others = [np.nan] * (0 if action_samples is None else len(action_samples))
            if counterfactuals and action_samples is not None:
                try:
                    others = counterfactual_rewards(env, action_samples)
                except Exception:  # noqa: BLE001 - an env that cannot be copied: taken actions only
                    counterfactuals = False
            next_obs, reward, _, _, info = env.step(action)
            episode.obs.append(obs)
            episode.actions.append(action)
            episode.true.append([info.get("true_reward", reward), *others])
            episode.absorbing.append(bool(info.get("absorbing", False)))
            obs = next_obs
        env.close()
        return episode


@dataclass
class ProbeEpisode:
    """One probe episode, step by step; `true` holds the gold reward of the action taken
    and then of each sampled action."""

    obs: list = field(default_factory=list)
    actions: list = field(default_factory=list)
    true: list = field(default_factory=list)
    absorbing: list = field(default_factory=list)
    frames: list = field(default_factory=list)
    render_error: str = ""

    def add_frame(self, env: gym.Env) -> None:
        try:
            self.frames.append(np.asarray(env.render())[::2, ::2])
        except Exception as exc:  # noqa: BLE001 - no renderer (no pygame, no GL): numbers only
            self.render_error, self.frames = f"{type(exc).__name__}: {exc}", []

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "obs": np.asarray(self.obs, np.float32),
            "actions": np.asarray(self.actions),
            "true": np.asarray(self.true, np.float32),
            "absorbing": np.asarray(self.absorbing, bool),
        }


def counterfactual_rewards(env: gym.Env, actions: np.ndarray) -> list[float]:
    """The gold reward r(s, a) of each action at the env's current state s, leaving the env
    where it was: a MuJoCo env's simulator state is saved and restored (`MjData`, and the
    env's `reward_state` if it keeps one), any other env is copied (copy.deepcopy). An
    episode that has ended (absorbing) gives 0."""
    if getattr(env, "absorbing", False):
        return [0.0] * len(actions)
    base: Any = env.unwrapped
    data = getattr(base, "data", None)
    if type(data).__module__.startswith("mujoco"):
        import mujoco

        saved, out = copy.copy(data), []
        reward_state = copy.deepcopy(getattr(base, "reward_state", None))  # kept outside MjData
        for a in actions:
            _, reward, _, _, info = base.step(a)
            out.append(float(info.get("true_reward", reward)))
            mujoco.mj_copyData(data, base.model, saved)
            if reward_state is not None:
                base.reward_state = copy.deepcopy(reward_state)
        return out
    out = []
    for a in actions:
        _, reward, _, _, info = copy.deepcopy(env).step(a)
        out.append(float(info.get("true_reward", reward)))
    return out
