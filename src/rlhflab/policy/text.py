"""Policy optimisation for language models: PPO, GRPO and RLOO, in one loop.

Each response is an episode whose actions are its tokens. The three methods sample the same
way, take the same clipped surrogate of rlhflab.policy.ppo (shared with control PPO), and run
the same epochs over the same shuffled minibatches (`TextRL._update`); they differ only in the
advantage of each token and where the KL to the frozen reference goes.

PPO (InstructGPT Step 3; Ziegler et al. 2019; Stiennon et al. 2020): a per-token KL penalty
in the reward, with the score (plus an EOS penalty for responses that never end) at the final
token:
    r_t = −β·KL_t  +  [t = last]·(r̂(x, y) + eos_penalty·[no EOS])
    KL_t = k1: log π(y_t|·) − log π_ref(y_t|·)   or   k2 (never k3: see rlhflab.policy.ppo)
Advantages are GAE over tokens (γ = 1, λ = 0.95 by default) with a value head on the policy,
whitened over the batch's response tokens; β is fixed or follows Ziegler et al.'s controller.

GRPO (Shao et al. 2024): G responses per prompt; every token of response i has the advantage
(r_i − mean_g r)/std_g r; KL enters the loss as β·k3, not the reward; no value model.

RLOO (Ahmadian et al. 2024): k responses per prompt; the reward is the score less β·Σ_t KL_t
(sequence level); every token of response i has the advantage R_i − mean_{j≠i} R_j.

Across processes (`rlhflab run --nproc N`, `rlhflab/distributed.py`) sampling is sharded by
prompts: each rank generates, scores and computes advantages for its share of the step's
prompts (a GRPO/RLOO group stays on one rank; PPO whitens with the mean and variance of every
rank's tokens), each minibatch's gradients are weighted by token share and summed, and the
logged means and the KL controller's input are those of the whole batch.

Log-probabilities use the sampling temperature. With LoRA the reference is the policy with its
adapter disabled; otherwise a frozen copy. Updates run in eval mode (no dropout), so the ratio
is exactly 1 before the first step. When a GRPO batch gets one update step (one epoch, one
minibatch), log π_old is not computed in a separate forward: it is the update's own forward,
detached (the ratio is 1 by construction, as in TRL's GRPOTrainer with num_iterations = 1).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from rlhflab import distributed
from rlhflab.config import ConfigError, TextGRPOConfig, TextPPOConfig, TextRLOOConfig
from rlhflab.policy.ppo import (
    AdaptiveKLController,
    FixedKLController,
    clipped_policy_loss,
    gae,
    group_advantages,
    kl_estimate,
    kl_loss,
    leave_one_out_advantages,
    masked_mean,
    value_loss,
    whiten,
)
from rlhflab.text.models import TextRewardModel, ValueHead, hidden_size
from rlhflab.text.sequences import SeqBatch, generate, token_logprobs

RLConfig = TextPPOConfig | TextGRPOConfig | TextRLOOConfig


def per_token_rewards(
    scores: torch.Tensor,
    logp: torch.Tensor,
    logp_ref: torch.Tensor,
    batch: SeqBatch,
    beta: float,
    estimator: str = "k1",
) -> tuple[torch.Tensor, torch.Tensor]:
    """([B, T] rewards, [B, T] per-token KL): −β·KL on every response token, the score on the last
    one. k3 is refused: as a reward its policy gradient is biased (use it in a loss term)."""
    if estimator == "k3":
        raise ValueError("k3 is biased as a per-token reward: use k1 or k2 (k3 only as a loss)")
    mask = batch.response_mask
    kl = kl_estimate(logp, logp_ref, estimator) * mask
    rewards = -beta * kl
    rewards[torch.arange(len(scores)), batch.last_response_index] += scores
    return rewards, kl


def token_advantages(
    rewards: torch.Tensor, values: torch.Tensor, batch: SeqBatch, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE over each response's tokens ([B, T] in, [B, T] out): the episode ends at the last
    response token (no bootstrap after it); advantages are whitened over response tokens and zero
    elsewhere."""
    mask = batch.response_mask
    next_values = torch.cat([values[:, 1:], torch.zeros_like(values[:, :1])], 1)
    last = torch.zeros_like(mask)
    last[torch.arange(len(mask)), batch.last_response_index] = 1.0
    adv, ret = gae(rewards.T, values.T, next_values.T, last.T, last.T, gamma, lam)
    return whiten(adv.T, mask, average=distributed.masked_mean) * mask, ret.T


def reference_logprobs(policy, reference, batch: SeqBatch, temperature: float) -> torch.Tensor:
    """log π_ref: a frozen copy, or (LoRA) the policy with its adapter disabled."""
    ctx = policy.disable_adapter() if reference is None else contextlib.nullcontext()
    with torch.no_grad(), ctx:
        return token_logprobs(policy if reference is None else reference, batch, temperature)


def method_of(cfg: RLConfig) -> str:
    if isinstance(cfg, TextGRPOConfig):
        return "grpo"
    if isinstance(cfg, TextRLOOConfig):
        return "rloo"
    return "ppo"


class TextRL:
    """PPO, GRPO or RLOO (chosen by the type of `cfg`) on a causal LM."""

    def __init__(
        self,
        policy,
        reference,
        tokenizer,
        score,
        cfg: RLConfig,
        max_new_tokens: int,
        temperature: float,
        gold=None,
        seed: int = 0,
        value_model: TextRewardModel | None = None,
    ):
        """`score(prompts, texts) -> [N]` is the proxy reward; `gold(texts) -> [N]`, when known, is
        only logged. PPO's values come from a linear head on the policy's hidden state, or from
        `value_model`, a separate network over the policy's tokens trained from where it is (a
        copy of the reward model: InstructGPT's initialisation)."""
        self.policy, self.reference, self.tokenizer = policy, reference, tokenizer
        self.score, self.gold = score, gold
        self.cfg, self.method = cfg, method_of(cfg)
        self.max_new_tokens, self.temperature, self.seed = max_new_tokens, temperature, seed
        torch.manual_seed(seed)
        params = [p for p in policy.parameters() if p.requires_grad]
        self.value_head: ValueHead | None = None
        self.value_model = value_model if isinstance(cfg, TextPPOConfig) else None
        if self.value_model is not None:
            self.value_model.eval()  # as the policy: no dropout in the update
            for p in self.value_model.parameters():
                p.requires_grad_(True)
            params += list(self.value_model.parameters())
        elif isinstance(cfg, TextPPOConfig):
            self.value_head = ValueHead(hidden_size(policy.config))
            params += list(self.value_head.parameters())
        world = distributed.world_size()
        if world > 1 and (self.prompts_per_step // world) * self.group_size < cfg.minibatches:
            raise ConfigError(
                f"text.{self.method}.batch_size: {self.prompts_per_step} prompts per step, shared "
                f"by {world} processes, leave fewer responses per process than "
                f"text.{self.method}.minibatches = {cfg.minibatches}"
            )
        distributed.broadcast_parameters(params)
        self.params = params
        self.optimizer = torch.optim.Adam(params, lr=cfg.lr, eps=1e-5)
        self.kl_ctl: FixedKLController | AdaptiveKLController = FixedKLController(
            getattr(cfg, "beta", 0.0)
        )
        if isinstance(cfg, TextPPOConfig) and cfg.kl_target:
            horizon = cfg.kl_horizon or 10 * cfg.batch_size
            self.kl_ctl = AdaptiveKLController(cfg.beta, cfg.kl_target, horizon)
        self.iteration = 0
        self.samples: list[str] = []  # the responses of the last step, for the driver's diagnostics

    @property
    def group_size(self) -> int:
        return getattr(self.cfg, "group_size", 1)

    @property
    def prompts_per_step(self) -> int:
        return self.cfg.batch_size // self.group_size

    # -- checkpoints -----------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "policy": {k: v for k, v in self.policy.state_dict().items()},
            "value_head": self.value_head.state_dict() if self.value_head else None,
            "value_model": self.value_model.state_dict() if self.value_model else None,
            "optimizer": self.optimizer.state_dict(),
            "kl_ctl": self.kl_ctl.state_dict(),
            "iteration": self.iteration,
        }

    def load_state_dict(self, state: dict) -> None:
        self.policy.load_state_dict(state["policy"])
        if self.value_head is not None:
            self.value_head.load_state_dict(state["value_head"])
        if self.value_model is not None:
            self.value_model.load_state_dict(state["value_model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.kl_ctl.load_state_dict(state["kl_ctl"])
        self.iteration = state["iteration"]

    # -- the shared loop -------------------------------------------------------------------
    def one_step_on_policy(self) -> bool:
        """GRPO with one update step per batch: log π_old is that step's own forward (no
        separate rollout forward); PPO's value and RLOO's reward need log π_old beforehand."""
        return self.method == "grpo" and self.cfg.epochs == self.cfg.minibatches == 1

    def _logprobs_values(self, batch: SeqBatch):
        """log π, entropy and V at each response token t (V of the prefix before t)."""
        if self.value_head is None:
            logp, entropy = token_logprobs(
                self.policy, batch, self.temperature, return_entropy=True
            )
            if self.value_model is None:
                return logp, entropy, None
            scores = self.value_model.prefix_scores(batch.input_ids, batch.attention_mask)
            values = torch.cat([torch.zeros_like(scores[:, :1]), scores[:, :-1]], 1)
            return logp, entropy, values * batch.response_mask
        logp, entropy, hidden = token_logprobs(
            self.policy, batch, self.temperature, return_entropy=True, return_hidden=True
        )
        return logp, entropy, self.value_head(hidden) * batch.response_mask

    def _update(
        self,
        batch: SeqBatch,
        logp_old,
        logp_ref,
        values_old,
        adv,
        ret,
        on_policy: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> dict[str, list[float]]:
        """Epochs over shuffled minibatches of the batch; each step's losses and clip share.
        PPO adds its value loss, GRPO its KL term; the rest is one code path. With `on_policy`
        (one update step), log π_old and the entropy are written there from that step's own
        forward, and `logp_old` is that same tensor."""
        cfg = self.cfg
        stats: dict[str, list[float]] = {"policy_loss": [], "clip_frac": []}
        rng = np.random.default_rng(self.iteration)
        for _ in range(cfg.epochs):
            for idx in np.array_split(rng.permutation(len(adv)), cfg.minibatches):
                mb = batch.select(torch.as_tensor(idx))
                m = mb.response_mask
                logp, entropy, values = self._logprobs_values(mb)
                if on_policy is not None:  # the single update's forward is log π_old itself
                    on_policy[0][idx], on_policy[1][idx] = logp.detach(), entropy.detach()
                pg, clip_frac = clipped_policy_loss(logp, logp_old[idx], adv[idx], cfg.clip, m)
                loss, logged = pg, {"policy_loss": pg, "clip_frac": clip_frac}
                if isinstance(cfg, TextPPOConfig):
                    vl = value_loss(values, values_old[idx], ret[idx], cfg.clip_value, m)
                    loss, logged["value_loss"] = loss + cfg.vf_coef * vl, vl
                if isinstance(cfg, TextGRPOConfig) and cfg.beta:
                    kl = kl_loss(logp, logp_ref[idx], m)
                    loss, logged["kl_loss"] = loss + cfg.beta * kl, kl
                weight = distributed.share(float(m.sum()))  # every loss is a token mean
                self.optimizer.zero_grad()
                (loss * weight).backward()
                distributed.sync_gradients(self.params)
                torch.nn.utils.clip_grad_norm_(self.params, 1.0)
                self.optimizer.step()
                values_now = distributed.all_reduce(
                    torch.stack([v.detach() for v in logged.values()]) * weight
                )
                for k, v in zip(logged, values_now.tolist()):
                    stats.setdefault(k, []).append(v)
        return stats

    def advantages(self, batch: SeqBatch, scores, logp_old, logp_ref, values_old):
        """[B, T] advantages (zero off the response) and returns (PPO's value targets)."""
        cfg, mask = self.cfg, batch.response_mask
        if isinstance(cfg, TextPPOConfig):
            rewards, _ = per_token_rewards(
                scores, logp_old, logp_ref, batch, self.kl_ctl.beta, cfg.kl_estimator
            )
            return token_advantages(rewards, values_old, batch, cfg.gamma, cfg.lam)
        if isinstance(cfg, TextGRPOConfig):
            adv = group_advantages(scores, cfg.group_size, cfg.scale_rewards)
        else:
            kl = (kl_estimate(logp_old, logp_ref, cfg.kl_estimator) * mask).sum(1)
            adv = leave_one_out_advantages(scores - cfg.beta * kl, cfg.group_size)
        return adv[:, None] * mask, None

    def step(self, prompts: list[str]) -> dict:
        """Sample responses to `prompts` (each `group_size` times, adjacent), score them, and
        take one update. Across processes, `prompts` is the whole step's and each rank samples
        its shard of them (with its own seed)."""
        cfg = self.cfg
        prompts = [p for p in distributed.shard(prompts) for _ in range(self.group_size)]
        batch, texts, ended = generate(
            self.policy,
            self.tokenizer,
            prompts,
            self.max_new_tokens,
            self.temperature,
            seed=self.seed + 7919 * self.iteration + 104_729 * distributed.rank(),
        )
        self.iteration += 1
        single = self.one_step_on_policy()
        with torch.no_grad():
            self.policy.eval()
            if single:
                logp_old = torch.zeros(batch.response_mask.shape)
                entropy, values_old = torch.zeros_like(logp_old), None
            else:
                logp_old, entropy, values_old = self._logprobs_values(batch)
            logp_ref = reference_logprobs(self.policy, self.reference, batch, self.temperature)
            proxy = self.score(prompts, texts)
            scores = proxy + cfg.eos_penalty * (~ended).float()
            adv, ret = self.advantages(batch, scores, logp_old, logp_ref, values_old)
        mask = batch.response_mask
        # updates stay in eval mode: dropout would move the ratio away from 1 before any step
        on_policy = (logp_old, entropy) if single else None
        stats = self._update(batch, logp_old, logp_ref, values_old, adv, ret, on_policy)
        seq_kl = ((logp_old - logp_ref) * mask).sum(1)  # k1 summed: the same KL for every method
        beta, n, tokens = self.kl_ctl.beta, len(prompts), float(mask.sum())
        kl = distributed.weighted_mean(seq_kl.mean(), n)  # means over every rank's samples
        self.kl_ctl.update(kl, int(distributed.total(n)))
        record = {
            "phase": self.method,
            "iteration": self.iteration,
            "proxy": distributed.weighted_mean(proxy.mean(), n),
            "kl": kl,
            "beta": beta,
            "entropy": distributed.weighted_mean(masked_mean(entropy, mask), tokens),
            "response_length": distributed.weighted_mean(mask.sum(1).mean(), n),
            "ended": distributed.weighted_mean(ended.float().mean(), n),
            **{k: float(np.mean(v)) for k, v in stats.items()},
        }
        if self.gold is not None:
            record["gold"] = distributed.weighted_mean(np.mean(self.gold(texts)), n)
        self.samples = distributed.gather_objects(texts)
        return record


TextPPO = TextRL  # the name the throughput bench and older code use
