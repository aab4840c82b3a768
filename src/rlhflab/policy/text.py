"""PPO for language models (InstructGPT Step 3; Ziegler et al. 2019; Stiennon et al. 2020).

Each response is an episode whose actions are its tokens. The reward is a per-token KL
penalty against the frozen reference policy, with the reward model's score (plus an
EOS penalty for responses that never end) added at the final token:
    r_t = −β·KL_t  +  [t = last]·(r̂(x, y) + eos_penalty·[no EOS])
    KL_t = k1: log π(y_t|·) − log π_ref(y_t|·)   or   k3 (see rlhflab.policy.ppo)
Advantages are GAE over tokens (γ = 1, λ = 0.95 by default), whitened over the batch's
response tokens; the policy and value losses are the clipped ones of rlhflab.policy.ppo,
shared with control PPO. β is fixed or follows Ziegler et al.'s adaptive controller.
Log-probabilities use the sampling temperature. With LoRA the reference is the policy
with its adapter disabled; otherwise a frozen copy.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from rlhflab.config import TextPPOConfig
from rlhflab.policy.ppo import (
    AdaptiveKLController,
    FixedKLController,
    clipped_policy_loss,
    gae,
    kl_estimate,
    masked_mean,
    value_loss,
    whiten,
)
from rlhflab.text.models import ValueHead, hidden_size
from rlhflab.text.sequences import SeqBatch, generate, token_logprobs


def per_token_rewards(
    scores: torch.Tensor,
    logp: torch.Tensor,
    logp_ref: torch.Tensor,
    batch: SeqBatch,
    beta: float,
    estimator: str = "k1",
) -> tuple[torch.Tensor, torch.Tensor]:
    """([B, T] rewards, [B, T] per-token KL): −β·KL on every response token, the score on the last
    one."""
    mask = batch.response_mask
    kl = kl_estimate(logp, logp_ref, estimator) * mask
    rewards = -beta * kl
    rewards[torch.arange(len(scores)), batch.last_response_index] += scores
    return rewards, kl


def token_advantages(
    rewards: torch.Tensor, values: torch.Tensor, batch: SeqBatch, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE over each response's tokens ([B, T] in, [B, T] out): the episode ends at the last
    response
    token (no bootstrap after it); advantages are whitened over response tokens and zero
    elsewhere."""
    mask = batch.response_mask
    next_values = torch.cat([values[:, 1:], torch.zeros_like(values[:, :1])], 1)
    last = torch.zeros_like(mask)
    last[torch.arange(len(mask)), batch.last_response_index] = 1.0
    adv, ret = gae(rewards.T, values.T, next_values.T, last.T, last.T, gamma, lam)
    return whiten(adv.T, mask) * mask, ret.T


def reference_logprobs(policy, reference, batch: SeqBatch, temperature: float) -> torch.Tensor:
    """log π_ref: a frozen copy, or (LoRA) the policy with its adapter disabled."""
    ctx = policy.disable_adapter() if reference is None else contextlib.nullcontext()
    with torch.no_grad(), ctx:
        return token_logprobs(policy if reference is None else reference, batch, temperature)


class TextPPO:
    def __init__(
        self,
        policy,
        reference,
        tokenizer,
        score,
        cfg: TextPPOConfig,
        max_new_tokens: int,
        temperature: float,
        gold=None,
        seed: int = 0,
    ):
        """`score(prompts, texts) -> [N]` is the proxy reward; `gold(texts) -> [N]`, when known, is
        only logged."""
        self.policy, self.reference, self.tokenizer, self.score, self.gold = (
            policy,
            reference,
            tokenizer,
            score,
            gold,
        )
        self.cfg, self.max_new_tokens, self.temperature, self.seed = (
            cfg,
            max_new_tokens,
            temperature,
            seed,
        )
        torch.manual_seed(seed)
        self.value_head = ValueHead(hidden_size(policy.config))
        params = [p for p in policy.parameters() if p.requires_grad] + list(
            self.value_head.parameters()
        )
        self.optimizer = torch.optim.Adam(params, lr=cfg.lr, eps=1e-5)
        self.kl_ctl = (
            AdaptiveKLController(cfg.beta, cfg.kl_target)
            if cfg.kl_target
            else FixedKLController(cfg.beta)
        )
        self.iteration = 0
        self.samples: list[str] = []  # the responses of the last step, for the driver's diagnostics

    def _logprobs_values(self, batch: SeqBatch):
        logp, entropy, hidden = token_logprobs(
            self.policy, batch, self.temperature, return_entropy=True, return_hidden=True
        )
        return logp, entropy, self.value_head(hidden) * batch.response_mask

    def _update(self, batch: SeqBatch, logp_old, values_old, adv, ret) -> dict[str, list[float]]:
        """PPO epochs over shuffled minibatches of the batch; each step's losses and clip share."""
        cfg = self.cfg
        stats: dict[str, list[float]] = {"policy_loss": [], "value_loss": [], "clip_frac": []}
        rng = np.random.default_rng(self.iteration)
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        for _ in range(cfg.epochs):
            for idx in np.array_split(rng.permutation(len(adv)), cfg.minibatches):
                mb = batch.select(torch.as_tensor(idx))
                m = mb.response_mask
                logp, _, values = self._logprobs_values(mb)
                pg, clip_frac = clipped_policy_loss(logp, logp_old[idx], adv[idx], cfg.clip, m)
                vl = value_loss(values, values_old[idx], ret[idx], cfg.clip_value, m)
                loss = pg + cfg.vf_coef * vl
                self.optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                self.optimizer.step()
                stats["policy_loss"].append(float(pg.detach()))
                stats["value_loss"].append(float(vl.detach()))
                stats["clip_frac"].append(float(clip_frac.detach()))
        return stats

    def step(self, prompts: list[str]) -> dict:
        """Sample responses to `prompts`, score them, and take one PPO update."""
        cfg = self.cfg
        batch, texts, ended = generate(
            self.policy,
            self.tokenizer,
            prompts,
            self.max_new_tokens,
            self.temperature,
            seed=self.seed + 7919 * self.iteration,
        )
        self.iteration += 1
        with torch.no_grad():
            self.policy.eval()
            logp_old, entropy, values_old = self._logprobs_values(batch)
            logp_ref = reference_logprobs(self.policy, self.reference, batch, self.temperature)
            proxy = self.score(prompts, texts)
            scores = proxy + cfg.eos_penalty * (~ended).float()
            rewards, kl = per_token_rewards(
                scores, logp_old, logp_ref, batch, self.kl_ctl.beta, cfg.kl_estimator
            )
            mask = batch.response_mask
            adv, ret = token_advantages(rewards, values_old, batch, cfg.gamma, cfg.lam)
        n = len(prompts)
        # updates stay in eval mode: dropout would move the ratio away from 1 before any step
        stats = self._update(batch, logp_old, values_old, adv, ret)
        seq_kl = kl.sum(1)
        beta = self.kl_ctl.beta
        self.kl_ctl.update(float(seq_kl.mean()), n)
        record = {
            "phase": "ppo",
            "iteration": self.iteration,
            "proxy": float(proxy.mean()),
            "kl": float(seq_kl.mean()),
            "beta": beta,
            "entropy": float(masked_mean(entropy, mask)),
            "response_length": float(mask.sum(1).mean()),
            "ended": float(ended.float().mean()),
            **{k: float(np.mean(v)) for k, v in stats.items()},
        }
        self.samples = texts
        if self.gold is not None:
            record["gold"] = float(np.mean(self.gold(texts)))
        return record
