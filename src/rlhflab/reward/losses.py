"""Preference losses for reward models — written once, used by every reward model.

Bradley–Terry over segment returns (Christiano et al. 2017, eq. 1) with the
annotator-error term of their §2.2.3: a judgement is assumed uniformly random with
probability ε, so
    P̂[σ¹ ≻ σ²] = (1 − ε)·σ(R̂(σ¹) − R̂(σ²)) + ε/2,    R̂(σ) = Σ_t r̂(o_t, a_t)
and the loss is the cross-entropy against the judgement's target y ∈ {1, ½, 0}
("equal" is y = ½; "can't tell" is dropped before it reaches the loss):
    L = −[y·log P̂ + (1 − y)·log(1 − P̂)]

Per-annotator rationality (`reward.annotators=reliability`): annotator a's answers follow
Bradley–Terry with their own inverse temperature β_a, P̂_a = (1 − ε)·σ(β_a·(R̂(σ¹) − R̂(σ²))) + ε/2
— the Boltzmann model of the synthetic annotator with τ_a = 1/β_a in reward-model units; β_a → 0
makes a label carry no gradient, so unreliable annotators are down-weighted
(`reward/reliability.py` estimates β_a).

Trimmed likelihood (`reward.robust_trim`, a robust loss): each step leaves out the share q of
its minibatch with the largest losses, L = mean of the (1 − q)·B smallest — labels the model
cannot explain (flipped, poisoned) stop pulling on it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _log_prob(logits: torch.Tensor, label_noise: float) -> torch.Tensor:
    """log((1 − ε)·σ(x) + ε/2), computed stably."""
    if label_noise == 0.0:
        return F.logsigmoid(logits)
    return torch.logaddexp(
        math.log1p(-label_noise) + F.logsigmoid(logits),
        torch.full_like(logits, math.log(label_noise / 2)),
    )


def preference_probability(
    returns_left: torch.Tensor, returns_right: torch.Tensor, label_noise: float = 0.0
) -> torch.Tensor:
    """P̂[left ≻ right] under Bradley–Terry with annotator error ε."""
    return _log_prob(returns_left - returns_right, label_noise).exp()


def bradley_terry_loss(
    returns_left: torch.Tensor,
    returns_right: torch.Tensor,
    target: torch.Tensor,
    label_noise: float = 0.0,
    reduction: str = "mean",
    scale: torch.Tensor | float = 1.0,
) -> torch.Tensor:
    """Cross-entropy of P̂[left ≻ right] against targets in [0, 1]; `scale` is the annotator's
    rationality β (one value, or one per comparison)."""
    x = scale * (returns_left - returns_right)
    loss = -(target * _log_prob(x, label_noise) + (1.0 - target) * _log_prob(-x, label_noise))
    return loss.mean() if reduction == "mean" else loss


def ranking_loss(
    scores: torch.Tensor, margin: float = 0.0, label_noise: float = 0.0, reduction: str = "mean"
) -> torch.Tensor:
    """InstructGPT's K-wise loss: all C(K,2) pairs of one prompt's ranking together.

    scores: [B, K] reward-model scores of each prompt's K responses, best first.
        L = −1/C(K,2) · Σ_{i<j} log P̂[y_i ≻ y_j],  P̂ = σ(r_i − r_j − m)
    (with the optional margin m of Llama 2 and the ε term above), averaged over prompts
    (reduction "none": one loss per prompt)."""
    K = scores.shape[1]
    i, j = torch.triu_indices(K, K, offset=1)
    better, worse = scores[:, i] - margin, scores[:, j]
    loss = bradley_terry_loss(better, worse, torch.ones_like(better), label_noise, "none").mean(1)
    return loss.mean() if reduction == "mean" else loss


def trimmed_mean(losses: torch.Tensor, trim: float) -> torch.Tensor:
    """[..., B] → [...]: the mean of the ⌈(1 − trim)·B⌉ smallest losses along the last axis."""
    if trim <= 0:
        return losses.mean(-1)
    keep = max(1, math.ceil((1.0 - trim) * losses.shape[-1]))
    return torch.topk(losses, keep, dim=-1, largest=False).values.mean(-1)
