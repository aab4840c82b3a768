"""Rollouts of control policies: transitions collected on gymnasium vector envs (in-process or
by rollout workers), the segments queries are made of, and fixed-horizon evaluation episodes.

`EnvRunner` steps envs with a `NumpyActor` (the actor-critic's weights as numpy) and records
every reward channel the env reports; `Rollout` holds n_steps × num_envs transitions, time
first; `play_episodes` plays whole episodes side by side for evaluation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlhflab.config import EnvConfig
from rlhflab.envs.frames import downsample
from rlhflab.envs.wrappers import make_vec_env
from rlhflab.stats import RunningMeanStd
from rlhflab.types import Segment

if TYPE_CHECKING:
    from rlhflab.policy.actor_critic import ActorCritic


@dataclass
class Rollout:
    """n_steps × num_envs transitions; time is the first axis."""

    raw_obs: np.ndarray  # [T, N, D] as the env gave them (reward-model input)
    obs: np.ndarray  # [T, N, D] normalised (policy input)
    actions: np.ndarray  # [T, N] or [T, N, A]
    logp: np.ndarray
    values: np.ndarray
    next_values: np.ndarray  # V(s_{t+1}); the final observation's value at episode ends
    true_rewards: np.ndarray  # the gold reward (channel 'true_reward')
    terminated: np.ndarray
    episode_end: np.ndarray
    absorbing: np.ndarray  # [T, N] steps taken in an absorbing state, where actions change nothing
    env_steps: int  # policy env steps at the end of this rollout
    episode_returns: list[float] = field(
        default_factory=list
    )  # true returns of episodes that ended
    frames: np.ndarray | None = (
        None  # [T, R, H, W, 3] rendered frames of the first R envs, when rendering
    )
    reward_channels: dict[str, np.ndarray] = field(
        default_factory=dict
    )  # [T, N] per channel: 'reward', 'true_reward', …

    @classmethod
    def concat(cls, parts: list[Rollout]) -> Rollout:
        """The rollouts of shards of the envs, side by side (env axis), in the order given
        (always a copy: arrays a Ray worker returned are read-only)."""
        side = lambda name: np.concatenate([getattr(p, name) for p in parts], axis=1)  # noqa: E731
        arrays = (
            "raw_obs", "obs", "actions", "logp", "values", "next_values", "true_rewards",
            "terminated", "episode_end", "absorbing",
        )  # fmt: skip
        keys = sorted(set().union(*(p.reward_channels for p in parts)))
        return cls(
            **{name: side(name) for name in arrays},
            env_steps=parts[-1].env_steps,
            episode_returns=[r for p in parts for r in p.episode_returns],
            reward_channels={  # a channel a shard's env never reported: its returned reward
                k: np.concatenate(
                    [p.reward_channels.get(k, p.reward_channels["reward"]) for p in parts], 1
                )
                for k in keys
            },
        )

    def rewards(self, channel: str = "true_reward") -> np.ndarray:
        """[T, N] rewards of one channel; an error names the channels the env reports."""
        if channel == "true_reward":
            return self.true_rewards
        if channel not in self.reward_channels:
            raise ValueError(
                f"reward channel '{channel}': the env reports no info['{channel}'] (it reports "
                f"{', '.join(sorted(self.reward_channels))})"
            )
        return self.reward_channels[channel]

    def segment_windows(self, length: int) -> np.ndarray:
        """[W, 2] (t, env) starts of the windows of `length` steps that can become segments.

        A window stays inside one episode and holds at least one step before the episode
        ended: a segment entirely in the absorbing state shows nothing (a frozen clip).
        Only rendered envs give windows when frames are recorded (people see clips)."""
        T, N = self.true_rewards.shape
        if length > T:
            raise ValueError(
                f"segment_length {length} is longer than a rollout ({T} steps per env)"
            )
        ends = self.episode_end[:-1].astype(np.int64)  # [T-1, N]
        cum = np.concatenate([np.zeros((1, N), np.int64), np.cumsum(ends, 0)])  # ends before t
        starts = np.arange(T - length + 1)
        valid = cum[starts + length - 1] - cum[starts] == 0  # [S, N]
        valid &= ~self.absorbing[starts]  # the first step is live, so some step is
        if self.frames is not None:
            valid[:, self.frames.shape[1] :] = False
        return np.argwhere(valid)

    def sample_segments(
        self, n: int, length: int, rng: np.random.Generator, judge: str = "true_reward"
    ) -> list[Segment]:
        """n distinct random windows of this rollout (see `sample_segments`)."""
        return sample_segments([self], n, length, rng, judge)

    def segment(self, t: int, e: int, length: int, judge: str = "true_reward") -> Segment:
        """Env e's steps t … t+length−1 as a segment carrying the `judge` channel's rewards."""
        return Segment(
            obs=self.raw_obs[t : t + length, e].copy(),
            actions=self.actions[t : t + length, e].copy(),
            judged_rewards=self.rewards(judge)[t : t + length, e].copy(),
            env_steps=self.env_steps,
            absorbing=self.absorbing[t : t + length, e].copy(),
            frames=None if self.frames is None else self.frames[t : t + length, e],
        )


def sample_segments(
    rollouts: list[Rollout],
    n: int,
    length: int,
    rng: np.random.Generator,
    judge: str = "true_reward",
) -> list[Segment]:
    """n random windows of `length` steps from the rollouts (see `Rollout.segment_windows`),
    distinct while there are enough of them; segments carry the `judge` channel's rewards."""
    windows = [
        (i, int(t), int(e)) for i, r in enumerate(rollouts) for t, e in r.segment_windows(length)
    ]
    if not windows:
        return []
    picks = rng.choice(len(windows), size=n, replace=n > len(windows))
    return [rollouts[i].segment(t, e, length, judge) for i, t, e in (windows[p] for p in picks)]


class NumpyActor:
    """The actor-critic's weights as numpy arrays, for acting while a rollout is collected (the
    weights do not change meanwhile): a batch of a few observations runs several times faster
    than through torch. Samples π(·|o) and returns log π(a|o) and V(o), as the torch net would."""

    def __init__(self, net: ActorCritic):
        self.discrete = net.discrete
        self.actor, self.critic = _numpy_layers(net.actor), _numpy_layers(net.critic)
        self.std = None if net.discrete else net.log_std.detach().exp().numpy().astype(np.float64)

    def act(
        self, obs: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out = _numpy_mlp(self.actor, obs)
        if self.discrete:  # Gumbel-max sampling from the softmax of the logits
            logp_all = out - np.logaddexp.reduce(out, axis=-1, keepdims=True)
            action = np.argmax(logp_all + rng.gumbel(size=out.shape), axis=-1)
            logp = np.take_along_axis(logp_all, action[:, None], -1)[:, 0]
        else:
            std = self.std
            assert std is not None
            z = rng.standard_normal(out.shape)
            action = out + std * z
            logp = (-0.5 * z**2 - np.log(std) - 0.5 * np.log(2 * np.pi)).sum(-1)
        return action, logp.astype(np.float32), self.value(obs)

    def value(self, obs: np.ndarray) -> np.ndarray:
        return _numpy_mlp(self.critic, obs)[..., 0].astype(np.float32)


def _numpy_layers(seq: nn.Sequential) -> list[tuple[np.ndarray, np.ndarray]]:
    if not all(isinstance(m, (nn.Linear, nn.Tanh)) for m in seq):
        raise TypeError("NumpyActor supports tanh MLPs only")
    return [
        (m.weight.detach().numpy().T.astype(np.float64), m.bias.detach().numpy().astype(np.float64))
        for m in seq
        if isinstance(m, nn.Linear)
    ]


def _numpy_mlp(layers: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray) -> np.ndarray:
    for i, (w, b) in enumerate(layers):
        x = x @ w + b
        if i < len(layers) - 1:
            x = np.tanh(x)
    return x


@dataclass
class StepRecords:
    """A rollout as it is collected, one entry per vector-env step."""

    raw_obs: list = field(default_factory=list)
    obs: list = field(default_factory=list)
    actions: list = field(default_factory=list)
    logp: list = field(default_factory=list)
    values: list = field(default_factory=list)
    channels: list = field(default_factory=list)
    terminated: list = field(default_factory=list)
    episode_end: list = field(default_factory=list)
    absorbing: list = field(default_factory=list)
    frames: list = field(default_factory=list)
    episode_returns: list = field(default_factory=list)

    def add(self, raw_obs, obs, action, logp, value, channels, terminated, end, absorbing) -> None:
        self.raw_obs.append(raw_obs)
        self.obs.append(obs)
        self.actions.append(action)
        self.logp.append(logp)
        self.values.append(value)
        self.channels.append(channels)
        self.terminated.append(terminated)
        self.episode_end.append(end)
        self.absorbing.append(absorbing)

    def rollout(self, next_values: np.ndarray, discrete: bool) -> Rollout:
        channels = _stack_channels(self.channels)
        actions = np.stack(self.actions)
        return Rollout(
            raw_obs=np.stack(self.raw_obs).astype(np.float32),
            obs=np.stack(self.obs),
            actions=actions if discrete else actions.astype(np.float32),
            logp=np.stack(self.logp),
            values=np.stack(self.values),
            next_values=next_values,
            true_rewards=channels["true_reward"],
            terminated=np.stack(self.terminated),
            episode_end=np.stack(self.episode_end),
            absorbing=np.stack(self.absorbing),
            env_steps=0,  # set by the policy, which counts every worker's steps
            episode_returns=self.episode_returns,
            frames=np.stack(self.frames) if self.frames else None,
            reward_channels=channels,
        )


class EnvRunner:
    """Envs `first` … `first + n − 1` of the run's vector env, stepped by a given actor: the
    part of rollout collection that can run anywhere. Env i is seeded `seed + i` and the
    actions' randomness comes from a generator seeded by (seed, first), so a shard collects the
    same steps in the policy's process or a rollout worker's. The whole env (first = 0) keeps
    the generator of `seed` alone: the in-process runs of earlier versions are unchanged."""

    def __init__(
        self,
        env_cfg: EnvConfig,
        first: int,
        n: int,
        seed: int,
        render_envs: int = 0,
        render_stride: int = 1,
    ):
        self.render_envs, self.render_stride = min(render_envs, n), render_stride
        self.envs = make_vec_env(
            env_cfg.id,
            env_cfg.horizon,
            n,
            env_cfg.kwargs,
            "rgb_array" if self.render_envs else None,
        )
        self.rng = np.random.default_rng(seed if first == 0 else (seed, first))
        self.obs, _ = self.envs.reset(seed=seed + first)
        self.episode_return = np.zeros(n)

    def collect(self, actor: NumpyActor, n_steps: int, normalize) -> Rollout:
        """n_steps of every env; `normalize` maps raw observations to the policy's inputs."""
        N = len(self.episode_return)
        steps = StepRecords()
        final_values = np.full((n_steps, N), np.nan, dtype=np.float32)  # V(final obs) at ends
        space = self.envs.single_action_space
        raw = self.obs
        obs = normalize(raw)
        for t in range(n_steps):
            if self.render_envs:  # the frame shows s_t, the state the action is taken in
                steps.frames.append(self._frames())
            action, logp, value = actor.act(obs, self.rng)
            next_raw, reward, terminated, truncated, info = self.envs.step(
                env_action(space, action)
            )
            end = terminated | truncated
            absorbing = _info_flag(info, "absorbing", N)
            if end.any():  # an ended episode's true next state is its final observation
                absorbing[end] = _info_flag(info["final_info"], "absorbing", N)[end]
                ended = np.flatnonzero(end)
                final = np.stack([info["final_obs"][i] for i in ended]).astype(np.float32)
                final_values[t, ended] = actor.value(normalize(final, update=False))
            channels = step_rewards(reward, info, end)
            steps.add(raw, obs, action, logp, value, channels, terminated, end, absorbing)
            self.episode_return += channels["true_reward"]
            steps.episode_returns += self.episode_return[end].tolist()
            self.episode_return[end] = 0.0
            raw, obs = next_raw, normalize(next_raw)
        self.obs = raw
        # V(s_{t+1}) is the next step's V(s_t) (one critic pass per step), or the final obs's
        values = np.stack(steps.values)
        next_values = np.concatenate([values[1:], actor.value(obs)[None]])
        next_values = np.where(np.isnan(final_values), next_values, final_values)
        return steps.rollout(next_values, actor.discrete)

    def _frames(self) -> np.ndarray:
        return np.stack(
            [
                downsample(np.asarray(self.envs.envs[i].render()), self.render_stride)
                for i in range(self.render_envs)
            ]
        )

    def close(self) -> None:
        self.envs.close()


class RolloutWorker(EnvRunner):
    """A rollout worker (`executor.rollout_workers`): a shard of the envs in a worker's process,
    sent the actor's weights and the observation statistics for each rollout."""

    def __init__(self, env_cfg: EnvConfig, first: int, n: int, seed: int):
        torch.set_num_threads(1)
        super().__init__(env_cfg, first, n, seed)

    def collect_frozen(
        self, actor: NumpyActor, n_steps: int, obs_rms: RunningMeanStd | None
    ) -> Rollout:
        """A rollout whose observations are normalised by `obs_rms` as sent (None: raw)."""

        def normalize(raw: np.ndarray, update: bool = False) -> np.ndarray:
            return raw.astype(np.float32) if obs_rms is None else obs_rms.normalize(raw)

        return self.collect(actor, n_steps, normalize)

    def pid(self) -> int:
        return os.getpid()


def env_action(space: gym.Space, action: np.ndarray) -> np.ndarray:
    """The action the env is given: a Gaussian policy's sample clipped to the Box."""
    if isinstance(space, gym.spaces.Discrete):
        return action
    assert isinstance(space, gym.spaces.Box)
    return np.clip(action, space.low, space.high)


def _info_flag(info: dict, key: str, n: int) -> np.ndarray:
    """A boolean per-env flag from a vector env's info dict (False where absent)."""
    if key not in info:
        return np.zeros(n, dtype=bool)
    return np.asarray(info[key], dtype=bool) & np.asarray(
        info.get("_" + key, np.ones(n, bool)), dtype=bool
    )


def step_rewards(reward: np.ndarray, info: dict, end: np.ndarray) -> dict[str, np.ndarray]:
    """One vector-env step's rewards by channel: 'reward' as returned, each '*_reward' in info,
    and 'true_reward'.

    An env that finished this step reports in `info["final_info"]`; a step whose info lacks a
    channel (an absorbing state, or an env without that channel) gets the returned reward.
    """
    reward = np.asarray(reward, dtype=np.float64)
    out = {"reward": reward}
    sources = [(info, ~end)] + (
        [(info["final_info"], end)] if end.any() and "final_info" in info else []
    )
    for src, rows in sources:
        for key in src:
            if key.endswith("_reward") and not key.startswith("_"):
                mask = rows & np.asarray(src.get("_" + key, np.ones(len(reward), bool)), dtype=bool)
                out.setdefault(key, reward.copy())[mask] = np.asarray(src[key], dtype=np.float64)[
                    mask
                ]
    out.setdefault("true_reward", reward)
    return out


def _stack_channels(steps: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """[T, N] float32 per channel; a channel missing at some step takes that step's returned "
    "reward."""
    keys = sorted(set().union(*steps)) if steps else []
    return {k: np.stack([d.get(k, d["reward"]) for d in steps]).astype(np.float32) for k in keys}


@dataclass
class Episodes:
    """Fixed-horizon episodes played side by side; time is the first axis."""

    obs: np.ndarray  # [T, E, D] raw observations
    actions: np.ndarray  # [T, E] or [T, E, A]
    absorbing: np.ndarray  # [T, E] steps taken in an absorbing state
    rewards: dict[str, np.ndarray]  # [T, E] per reward channel

    def returns(self) -> dict[str, np.ndarray]:
        """[E] return of every episode, per channel."""
        return {k: v.sum(0) for k, v in self.rewards.items()}


def play_episodes(env_cfg: EnvConfig, episodes: int, act=None, seed: int = 10_000) -> Episodes:
    """Play `episodes` fixed-horizon episodes with `act` (raw obs → env actions; None =
    uniformly random).

    Every episode lasts exactly `horizon` steps, so the episodes run side by side in one vector env.
    """
    envs = make_vec_env(env_cfg.id, env_cfg.horizon, episodes, env_cfg.kwargs)
    envs.action_space.seed(seed)
    obs, _ = envs.reset(seed=seed)
    buf: dict[str, list] = {"obs": [], "actions": [], "absorbing": []}
    channels = []
    for _ in range(env_cfg.horizon):
        action = envs.action_space.sample() if act is None else act(obs)
        next_obs, reward, terminated, truncated, info = envs.step(action)
        end = terminated | truncated
        absorbing = _info_flag(info, "absorbing", episodes)
        if end.any():
            absorbing[end] = _info_flag(info["final_info"], "absorbing", episodes)[end]
        for k, v in zip(buf, (obs, action, absorbing)):
            buf[k].append(np.asarray(v))
        channels.append(step_rewards(reward, info, end))
        obs = next_obs
    envs.close()
    return Episodes(**{k: np.stack(v) for k, v in buf.items()}, rewards=_stack_channels(channels))


def evaluate_returns(
    env_cfg: EnvConfig, episodes: int, act=None, seed: int = 10_000
) -> dict[str, float]:
    """Mean return per reward channel ('reward', 'true_reward', and any other the env reports) of"
    " `act`."""
    return {
        k: float(v.mean()) for k, v in play_episodes(env_cfg, episodes, act, seed).returns().items()
    }


def evaluate_true_return(env_cfg: EnvConfig, episodes: int, act=None, seed: int = 10_000) -> float:
    """Mean true (gold) return of `act` (raw obs → env actions; None = uniformly random) over "
    "fixed-horizon episodes."""
    return evaluate_returns(env_cfg, episodes, act, seed)["true_reward"]
