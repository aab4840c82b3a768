"""Actor-critic policies for control tasks, trained by PPO or A2C on gymnasium vector envs.

PPO (Schulman et al. 2017) maximises the clipped surrogate with GAE advantages; A2C
(Mnih et al. 2016) is the same actor-critic with one unclipped policy-gradient step
per rollout — the "actor-critic" of the lecture slides. The maths lives in
`rlhflab.policy.ppo`; this module holds the networks and the updates; rollout
collection and evaluation episodes are in `rlhflab.policy.rollout`. It follows
CleanRL's ppo.py / ppo_continuous_action.py closely:
separate tanh MLPs for actor and critic, orthogonal init, state-independent
log-std for Gaussian actions, observation normalisation, per-minibatch advantage
normalisation, gradient-norm clipping. Departure: the reward the update sees is
given by the caller (the true reward or the reward model's r̂) and normalised by
a running mean/std before use.

Reward channels (`policy/rollout.py`): rollouts and evaluations record the env's returned reward
(`reward`) and every per-step `*_reward` the env reports in `info`. `true_reward`
is the gold standard: `info["true_reward"]` where the env reports it (the
misspecification envs, whose returned reward is a hackable proxy), else the
env's own reward.
"""

from __future__ import annotations

import copy
import itertools

import numpy as np
import torch
from torch import nn
from torch.distributions import kl_divergence

from rlhflab.config import EnvConfig, PolicyConfig
from rlhflab.executor import Executor, Worker
from rlhflab.policy.actor_critic import ActorCritic
from rlhflab.policy.ppo import (
    clipped_policy_loss,
    gae,
    kl_estimate,
    masked_mean,
    policy_gradient_loss,
    value_loss,
    whiten,
)
from rlhflab.policy.rollout import (
    EnvRunner,
    NumpyActor,
    Rollout,
    RolloutWorker,
    env_action,
    evaluate_returns,
    evaluate_true_return,
)
from rlhflab.stats import RunningMeanStd


class ControlPolicy:
    """Rollout collection and policy updates for one actor-critic on a vector env."""

    def __init__(
        self,
        env_cfg: EnvConfig,
        cfg: PolicyConfig,
        seed: int = 0,
        render_envs: int = 0,
        render_stride: int = 1,
        executor: Executor | None = None,
        rollout_workers: int = 0,
        budget: int | None = None,
    ):
        self.env_cfg, self.cfg, self.seed = env_cfg, cfg, seed
        self.budget = budget  # the run's env steps, over which `policy.anneal_lr` decays
        torch.manual_seed(seed)
        self.runner = EnvRunner(env_cfg, 0, env_cfg.num_envs, seed, render_envs, render_stride)
        self.np_rng = self.runner.rng  # actions while collecting rollouts
        self.action_space = self.runner.envs.single_action_space
        self.obs_dim = int(np.prod(self.runner.envs.single_observation_space.shape or ()))
        self.net = ActorCritic(self.obs_dim, self.action_space, cfg.hidden, cfg.log_std_init)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=cfg.lr, eps=1e-5)
        self.obs_rms = RunningMeanStd((self.obs_dim,))
        self.reward_rms = RunningMeanStd(())
        self.env_steps = 0
        self.workers: list[Worker] = []
        if executor is not None and rollout_workers > 0:
            self.start_workers(executor, rollout_workers, render_envs)

    def start_workers(self, executor: Executor, n: int, render_envs: int = 0) -> None:
        """Rollouts from `n` rollout workers, each stepping its own shard of the envs (env i
        is seeded `seed + i` wherever it runs); the in-process envs then only describe the
        spaces."""
        N = self.env_cfg.num_envs
        if not 1 <= n <= N:
            raise ValueError(
                f"executor.rollout_workers ({n}) must be between 1 and env.num_envs ({N})"
            )
        if render_envs:
            raise ValueError(
                "executor.rollout_workers: rendered clips for people are collected in-process; "
                "use rollout_workers=0 with feedback.annotator.kind=people"
            )
        bounds = np.linspace(0, N, n + 1).round().astype(int)
        self.workers = [
            executor.start(
                RolloutWorker,
                self.env_cfg,
                int(a),
                int(b - a),
                self.seed,
                name=f"rollout worker {k}",
            )
            for k, (a, b) in enumerate(itertools.pairwise(bounds))
        ]
        self.executor = executor

    # -- observation handling -------------------------------------------------------
    def _normalize(self, raw: np.ndarray, update: bool) -> np.ndarray:
        if not self.cfg.normalize_obs:
            return raw.astype(np.float32)
        if update:
            self.obs_rms.update(raw)
        return self.obs_rms.normalize(raw)

    def _env_action(self, action: np.ndarray) -> np.ndarray:
        return env_action(self.action_space, action)

    # -- rollouts ---------------------------------------------------------------------
    @torch.no_grad()
    def collect(self) -> Rollout:
        """n_steps of every env with the current policy; actions come from `NumpyActor`.
        In-process, observations are normalised by statistics updated at every step; rollout
        workers normalise by the statistics at the start of the rollout, updated after it with
        every observation they saw."""
        T, N = self.cfg.n_steps, self.env_cfg.num_envs
        actor = NumpyActor(self.net)
        if self.workers:
            rms = self.obs_rms if self.cfg.normalize_obs else None
            calls = [w.call("collect_frozen", actor, T, rms) for w in self.workers]
            rollout = Rollout.concat(self.executor.gather(calls))
            if rms is not None:
                self.obs_rms.update(rollout.raw_obs.reshape(-1, self.obs_dim))
        else:
            live = lambda raw, update=True: self._normalize(raw, update)  # noqa: E731
            rollout = self.runner.collect(actor, T, live)
        self.env_steps += T * N
        rollout.env_steps = self.env_steps
        return rollout

    # -- updates ----------------------------------------------------------------------
    def update(self, rollout: Rollout, rewards: np.ndarray, normalized: bool = False) -> dict:
        """One PPO (or A2C) update on `rollout`, optimising `rewards` ([T, N], true or r̂);
        `normalized`: the caller has put them on a fixed scale already (no running stats)."""
        cfg = self.cfg
        if cfg.anneal_lr and self.budget:  # linear decay to 0 (as SB3 and CleanRL offer)
            for group in self.optimizer.param_groups:
                group["lr"] = cfg.lr * max(0.0, 1.0 - self.env_steps / self.budget)
        if cfg.normalize_rewards and not normalized:
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
        # actions taken in an absorbing state change nothing: their policy-gradient terms are noise
        acting = torch.as_tensor(~flat(rollout.absorbing)).float()
        ppo = cfg.algo == "ppo"
        epochs, minibatches = (cfg.epochs, cfg.minibatches) if ppo else (1, 1)
        n = len(obs)
        size = n // minibatches
        stats: dict[str, list[float]] = {
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
        """Mean return per reward channel (see `evaluate_returns`), optionally on another env "
        "config (e.g. a test distribution)."""
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
            "rng": self.np_rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.obs_rms.load_state_dict(state["obs_rms"])
        self.reward_rms.load_state_dict(state["reward_rms"])
        self.env_steps = state["env_steps"]
        self.np_rng.bit_generator.state = state["rng"]

    def close(self) -> None:
        self.runner.close()


class FrozenPolicy:
    """π at one moment: a copy of a policy's network and observation statistics."""

    def __init__(self, policy: ControlPolicy):
        self.net = copy.deepcopy(policy.net).requires_grad_(False)
        self.obs_rms = copy.deepcopy(policy.obs_rms)
        self.normalize_obs = policy.cfg.normalize_obs

    def distribution(self, raw_obs: np.ndarray):
        obs = self.obs_rms.normalize(raw_obs) if self.normalize_obs else raw_obs
        return self.net.distribution(torch.as_tensor(np.asarray(obs, np.float32)))


@torch.no_grad()
def kl_per_step(policy, reference, raw_obs: np.ndarray) -> np.ndarray:
    """KL(π(·|o) ‖ π_ref(·|o)) at each raw observation [..., D] → [...], in nats; each
    policy reads the observation through its own normalisation statistics. The one
    definition of a control policy's KL from a reference (probe and Goodhart curves)."""
    kl = kl_divergence(policy.distribution(raw_obs), reference.distribution(raw_obs))
    return (kl if policy.net.discrete else kl.sum(-1)).numpy()
