"""Actor-critic policies for control tasks, trained by PPO or A2C on gymnasium vector envs.

PPO (Schulman et al. 2017) maximises the clipped surrogate with GAE advantages; A2C
(Mnih et al. 2016) is the same actor-critic with one unclipped policy-gradient step
per rollout — the "actor-critic" of the lecture slides. The maths lives in
`rlhflab.policy.ppo`; this module holds the networks, rollout collection, updates
and evaluation. It follows CleanRL's ppo.py / ppo_continuous_action.py closely:
separate tanh MLPs for actor and critic, orthogonal init, state-independent
log-std for Gaussian actions, observation normalisation, per-minibatch advantage
normalisation, gradient-norm clipping. Departure: the reward the update sees is
given by the caller (the true reward or the reward model's r̂) and normalised by
a running mean/std before use.

Reward channels: rollouts and evaluations record the env's returned reward
(`reward`) and every per-step `*_reward` the env reports in `info`. `true_reward`
is the gold standard: `info["true_reward"]` where the env reports it (the
misspecification envs, whose returned reward is a hackable proxy), else the
env's own reward.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical, Normal

from rlhflab.config import EnvConfig, PolicyConfig
from rlhflab.envs.frames import downsample
from rlhflab.envs.wrappers import action_dim, make_vec_env
from rlhflab.nets import mlp
from rlhflab.policy.ppo import (
    clipped_policy_loss,
    gae,
    kl_estimate,
    masked_mean,
    policy_gradient_loss,
    value_loss,
    whiten,
)
from rlhflab.stats import RunningMeanStd
from rlhflab.types import Segment


class ActorCritic(nn.Module):
    def __init__(self, obs_dim: int, action_space: gym.Space, hidden: int = 64):
        super().__init__()
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        self.critic = mlp(obs_dim, hidden, 1, out_gain=1.0)
        self.actor = mlp(obs_dim, hidden, action_dim(action_space), out_gain=0.01)
        if not self.discrete:
            self.log_std = nn.Parameter(torch.zeros(action_dim(action_space)))

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(obs).squeeze(-1)

    def distribution(self, obs: torch.Tensor):
        out = self.actor(obs)
        if self.discrete:
            return Categorical(logits=out)
        return Normal(out, self.log_std.exp().expand_as(out))

    def log_prob_entropy(
        self, obs: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        dist = self.distribution(obs)
        logp, ent = dist.log_prob(actions), dist.entropy()
        return (logp, ent) if self.discrete else (logp.sum(-1), ent.sum(-1))

    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        dist = self.distribution(obs)
        if deterministic:
            return dist.probs.argmax(-1) if self.discrete else dist.mean
        return dist.sample()


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

    def rewards(self, channel: str = "true_reward") -> np.ndarray:
        """[T, N] rewards of one channel; an error names the channels the env reports."""
        if channel == "true_reward":
            return self.true_rewards
        if channel not in self.reward_channels:
            raise ValueError(
                f"reward channel '{channel}': the env reports no info['{channel}'] (it reports {', '.join(sorted(self.reward_channels))})"
            )
        return self.reward_channels[channel]

    def sample_segments(
        self, n: int, length: int, rng: np.random.Generator, judge: str = "true_reward"
    ) -> list[Segment]:
        """n random windows of `length` steps that stay inside one episode; segments carry the `judge` channel's rewards."""
        judged = self.rewards(judge)
        T, N = self.true_rewards.shape
        if length > T:
            raise ValueError(
                f"segment_length {length} is longer than a rollout ({T} steps per env)"
            )
        # a window [t, t+length) is valid when no episode ends before its last step
        ends = self.episode_end[:-1].astype(np.int64)  # [T-1, N]
        cum = np.concatenate(
            [np.zeros((1, N), np.int64), np.cumsum(ends, 0)]
        )  # ends strictly before t
        starts = np.arange(T - length + 1)
        valid = cum[starts + length - 1] - cum[starts] == 0  # [S, N]
        if self.frames is not None:  # only rendered envs can be shown to people
            valid[:, self.frames.shape[1] :] = False
        choices = np.argwhere(valid)
        picks = choices[rng.integers(len(choices), size=n)]
        return [
            Segment(
                obs=self.raw_obs[t : t + length, e].copy(),
                actions=self.actions[t : t + length, e].copy(),
                judged_rewards=judged[t : t + length, e].copy(),
                env_steps=self.env_steps,
                frames=None if self.frames is None else self.frames[t : t + length, e],
            )
            for t, e in picks
        ]


class ControlPolicy:
    """Rollout collection and policy updates for one actor-critic on a vector env."""

    def __init__(
        self,
        env_cfg: EnvConfig,
        cfg: PolicyConfig,
        seed: int = 0,
        render_envs: int = 0,
        render_stride: int = 1,
    ):
        self.env_cfg, self.cfg, self.seed = env_cfg, cfg, seed
        self.render_envs, self.render_stride = min(render_envs, env_cfg.num_envs), render_stride
        torch.manual_seed(seed)
        self.envs = make_vec_env(
            env_cfg.id,
            env_cfg.horizon,
            env_cfg.num_envs,
            env_cfg.kwargs,
            "rgb_array" if self.render_envs else None,
        )
        self.action_space = self.envs.single_action_space
        self.obs_dim = int(np.prod(self.envs.single_observation_space.shape))
        self.net = ActorCritic(self.obs_dim, self.action_space, cfg.hidden)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=cfg.lr, eps=1e-5)
        self.obs_rms = RunningMeanStd((self.obs_dim,))
        self.reward_rms = RunningMeanStd(())
        self.env_steps = 0
        self._obs, _ = self.envs.reset(seed=seed)
        self._episode_return = np.zeros(env_cfg.num_envs)

    # -- observation handling -------------------------------------------------------
    def _normalize(self, raw: np.ndarray, update: bool) -> np.ndarray:
        if not self.cfg.normalize_obs:
            return raw.astype(np.float32)
        if update:
            self.obs_rms.update(raw)
        return self.obs_rms.normalize(raw)

    def _env_action(self, action: np.ndarray) -> np.ndarray:
        if self.net.discrete:
            return action
        return np.clip(action, self.action_space.low, self.action_space.high)

    # -- rollouts ---------------------------------------------------------------------
    @torch.no_grad()
    def collect(self) -> Rollout:
        T, N = self.cfg.n_steps, self.env_cfg.num_envs
        buf = {
            k: []
            for k in (
                "raw_obs",
                "obs",
                "actions",
                "logp",
                "values",
                "true_rewards",
                "terminated",
                "episode_end",
                "absorbing",
            )
        }
        final_values = np.full(
            (T, N), np.nan, dtype=np.float32
        )  # V(final observation) where an episode ended
        episode_returns, frames, channels = [], [], []
        raw = self._obs
        obs = self._normalize(raw, update=True)
        for _ in range(T):
            if self.render_envs:  # the frame shows s_t, the state the action is taken in
                frames.append(
                    np.stack(
                        [
                            downsample(self.envs.envs[i].render(), self.render_stride)
                            for i in range(self.render_envs)
                        ]
                    )
                )
            obs_t = torch.as_tensor(obs)
            dist = self.net.distribution(obs_t)
            action = dist.sample()
            logp = dist.log_prob(action) if self.net.discrete else dist.log_prob(action).sum(-1)
            value = self.net.value(obs_t)
            a = action.numpy()
            next_raw, reward, terminated, truncated, info = self.envs.step(self._env_action(a))
            next_obs = self._normalize(next_raw, update=True)
            end = terminated | truncated
            absorbing = _info_flag(info, "absorbing", N)
            if end.any():
                absorbing[end] = _info_flag(info["final_info"], "absorbing", N)[end]
            if end.any():  # the true next state of an ended episode is its final observation, not the reset one
                ended = np.flatnonzero(end)
                final = np.stack([info["final_obs"][i] for i in ended]).astype(np.float32)
                final_values[len(buf["values"]), ended] = self.net.value(
                    torch.as_tensor(self._normalize(final, update=False))
                ).numpy()
            channels.append(step_rewards(reward, info, end))
            for k, v in zip(
                buf,
                (
                    raw,
                    obs,
                    a,
                    logp.numpy(),
                    value.numpy(),
                    channels[-1]["true_reward"],
                    terminated,
                    end,
                    absorbing,
                ),
            ):
                buf[k].append(v)
            self._episode_return += channels[-1]["true_reward"]
            for i in np.flatnonzero(end):
                episode_returns.append(float(self._episode_return[i]))
                self._episode_return[i] = 0.0
            raw, obs = next_raw, next_obs
        self._obs = raw
        self.env_steps += T * N
        arrays = {k: np.asarray(np.stack(v)) for k, v in buf.items()}
        # V(s_{t+1}) is the next step's V(s_t) (one critic pass per step), or the final observation's value
        bootstrap = self.net.value(torch.as_tensor(obs)).numpy()[None]
        next_values = np.concatenate([arrays["values"][1:], bootstrap])
        arrays["next_values"] = np.where(np.isnan(final_values), next_values, final_values)
        arrays["raw_obs"] = arrays["raw_obs"].astype(np.float32)
        arrays["true_rewards"] = arrays["true_rewards"].astype(np.float32)
        return Rollout(
            **arrays,
            env_steps=self.env_steps,
            episode_returns=episode_returns,
            frames=np.stack(frames) if frames else None,
            reward_channels=_stack_channels(channels),
        )

    # -- updates ----------------------------------------------------------------------
    def update(self, rollout: Rollout, rewards: np.ndarray) -> dict:
        """One PPO (or A2C) update on `rollout`, optimising `rewards` ([T, N], true or r̂)."""
        cfg = self.cfg
        if cfg.normalize_rewards:
            self.reward_rms.update(rewards)
            rewards = self.reward_rms.normalize(rewards)
        t = lambda x: torch.as_tensor(np.asarray(x, dtype=np.float32))  # noqa: E731
        adv, ret = gae(
            t(rewards),
            t(rollout.values),
            t(rollout.next_values),
            t(rollout.terminated),
            t(rollout.episode_end),
            cfg.gamma,
            cfg.gae_lambda,
        )
        flat = lambda x: x.reshape(-1, *x.shape[2:])  # noqa: E731
        obs, logp_old, v_old = t(flat(rollout.obs)), t(flat(rollout.logp)), t(flat(rollout.values))
        actions = torch.as_tensor(flat(rollout.actions))
        if not self.net.discrete:
            actions = actions.float()
        adv, ret = adv.reshape(-1), ret.reshape(-1)
        # actions taken in an absorbing state change nothing: their policy-gradient terms are pure noise
        acting = torch.as_tensor(~flat(rollout.absorbing)).float()
        ppo = cfg.algo == "ppo"
        epochs, minibatches = (cfg.epochs, cfg.minibatches) if ppo else (1, 1)
        n = len(obs)
        size = n // minibatches
        stats = {
            "policy_loss": [],
            "value_loss": [],
            "entropy": [],
            "approx_kl": [],
            "clip_frac": [],
        }
        for _ in range(epochs):
            perm = torch.randperm(n)
            for start in range(0, size * minibatches, size):
                idx = perm[start : start + size]
                logp, entropy = self.net.log_prob_entropy(obs[idx], actions[idx])
                mask = acting[idx]
                mb_adv = whiten(adv[idx], mask)
                if ppo:
                    pg, clip_frac = clipped_policy_loss(logp, logp_old[idx], mb_adv, cfg.clip, mask)
                else:
                    pg, clip_frac = policy_gradient_loss(logp, mb_adv, mask), torch.tensor(0.0)
                vl = value_loss(self.net.value(obs[idx]), v_old[idx], ret[idx], cfg.clip_value)
                loss = pg + cfg.vf_coef * vl - cfg.ent_coef * masked_mean(entropy, mask)
                self.optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(self.net.parameters(), cfg.max_grad_norm)
                self.optimizer.step()
                with torch.no_grad():
                    kl = masked_mean(
                        kl_estimate(logp_old[idx], logp, "k3"), mask
                    )  # KL(π_old‖π) from samples of π_old
                for k, v in zip(stats, (pg, vl, masked_mean(entropy, mask), kl, clip_frac)):
                    stats[k].append(float(v.detach()))
        return {k: float(np.mean(v)) for k, v in stats.items()}

    # -- evaluation -------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, episodes: int, deterministic: bool = True, seed: int = 10_000) -> float:
        """Mean true return over `episodes` fixed-horizon episodes."""
        return evaluate_true_return(self.env_cfg, episodes, self.act_fn(deterministic), seed)

    @torch.no_grad()
    def evaluate_returns(
        self,
        episodes: int,
        deterministic: bool = True,
        seed: int = 10_000,
        env_cfg: EnvConfig | None = None,
    ) -> dict[str, float]:
        """Mean return per reward channel (see `evaluate_returns`), optionally on another env config (e.g. a test distribution)."""
        return evaluate_returns(env_cfg or self.env_cfg, episodes, self.act_fn(deterministic), seed)

    def distribution(self, raw_obs: np.ndarray):
        """π(·|o) for raw observations (normalised by this policy's running statistics)."""
        return self.net.distribution(torch.as_tensor(self._normalize(raw_obs, update=False)))

    def act_fn(self, deterministic: bool = True):
        def act(raw_obs: np.ndarray) -> np.ndarray:
            obs = self._normalize(raw_obs, update=False)
            return self._env_action(self.net.act(torch.as_tensor(obs), deterministic).numpy())

        return act

    # -- checkpoints ------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "net": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "obs_rms": self.obs_rms.state_dict(),
            "reward_rms": self.reward_rms.state_dict(),
            "env_steps": self.env_steps,
        }

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.obs_rms.load_state_dict(state["obs_rms"])
        self.reward_rms.load_state_dict(state["reward_rms"])
        self.env_steps = state["env_steps"]

    def close(self) -> None:
        self.envs.close()


def _info_flag(info: dict, key: str, n: int) -> np.ndarray:
    """A boolean per-env flag from a vector env's info dict (False where absent)."""
    if key not in info:
        return np.zeros(n, dtype=bool)
    return np.asarray(info[key], dtype=bool) & np.asarray(
        info.get("_" + key, np.ones(n, bool)), dtype=bool
    )


def step_rewards(reward: np.ndarray, info: dict, end: np.ndarray) -> dict[str, np.ndarray]:
    """One vector-env step's rewards by channel: 'reward' as returned, each '*_reward' in info, and 'true_reward'.

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
    """[T, N] float32 per channel; a channel missing at some step takes that step's returned reward."""
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
    """Play `episodes` fixed-horizon episodes with `act` (raw obs → env actions; None = uniformly random).

    Every episode lasts exactly `horizon` steps, so the episodes run side by side in one vector env.
    """
    envs = make_vec_env(env_cfg.id, env_cfg.horizon, episodes, env_cfg.kwargs)
    envs.action_space.seed(seed)
    obs, _ = envs.reset(seed=seed)
    buf = {"obs": [], "actions": [], "absorbing": []}
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
    """Mean return per reward channel ('reward', 'true_reward', and any other the env reports) of `act`."""
    return {
        k: float(v.mean()) for k, v in play_episodes(env_cfg, episodes, act, seed).returns().items()
    }


def evaluate_true_return(env_cfg: EnvConfig, episodes: int, act=None, seed: int = 10_000) -> float:
    """Mean true (gold) return of `act` (raw obs → env actions; None = uniformly random) over fixed-horizon episodes."""
    return evaluate_returns(env_cfg, episodes, act, seed)["true_reward"]
