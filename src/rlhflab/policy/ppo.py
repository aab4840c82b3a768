"""The maths of proximal policy optimisation, shared by control and language-model PPO.

GAE (Schulman et al. 2016):
    δ_t = r_t + γ·(1 − terminated_t)·V(s_{t+1}) − V(s_t)
    Â_t = δ_t + γλ·(1 − end_t)·Â_{t+1}
where `end_t` marks the last step of an episode (terminated or truncated). At a
truncation, V(s_{t+1}) is the value of the *final* observation, so the return is
bootstrapped but the trace stops.

Clipped surrogate (Schulman et al. 2017):
    L^CLIP = −E[min(ρ_t·Â_t, clip(ρ_t, 1−ε, 1+ε)·Â_t)],   ρ_t = π(a_t|s_t)/π_old(a_t|s_t)
Value loss ½·(V − R̂)², optionally clipped around the old values.

KL(π‖π_ref) estimators from samples a ~ π, with log-ratio x = log π(a) − log π_ref(a)
(Schulman 2020, "Approximating KL divergence"):
    k1 = x            (unbiased, high variance, can be negative)
    k2 = ½·x²         (biased, low variance)
    k3 = (e^{−x} − 1) + x   (unbiased, low variance, always ≥ 0)
k1 and k2 may stand in a per-token reward; k3 may not: E_π[∇log π · k3] is not ∇KL(π‖π_ref)
away from π = π_ref, so k3 belongs in a loss term whose gradient is taken through it, as GRPO
uses it (`kl_loss`). Its gradient is ∇_θ E[k3] = E[(1 − π_ref/π)·∇log π], which is KL's.
The adaptive KL controller is Ziegler et al. 2019: β ← β·(1 + clip(KL/target − 1, ±0.2)·n/horizon).

Baselines without a value model, over groups of responses to one prompt (rewards [P·G], the G
responses of a prompt adjacent):
    GRPO (Shao et al. 2024):   Â_i = (r_i − mean_g r) / (std_g r + ε)     (std optional: Dr. GRPO)
    RLOO (Ahmadian et al. 2024): Â_i = r_i − 1/(G−1)·Σ_{j≠i} r_j            (leave one out)
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    episode_end: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and returns over a [T, ...] batch; time is the first axis."""
    not_terminal = 1.0 - terminated.float()
    not_end = 1.0 - episode_end.float()
    deltas = rewards + gamma * not_terminal * next_values - values
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = deltas[t] + gamma * lam * not_end[t] * running
        advantages[t] = running
    return advantages, advantages + values


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    return x.mean() if mask is None else (x * mask).sum() / mask.sum().clamp_min(1)


def whiten(
    x: torch.Tensor,
    mask: torch.Tensor | None = None,
    shift_mean: bool = True,
    average: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor] = masked_mean,
) -> torch.Tensor:
    """(x − mean)/std over the (masked) entries; `average` may take the mean across processes."""
    mean = average(x, mask)
    var = average((x - mean) ** 2, mask)
    out = (x - mean) * torch.rsqrt(var + 1e-8)
    return out if shift_mean else out + mean


def clipped_policy_loss(
    logp: torch.Tensor,
    logp_old: torch.Tensor,
    advantages: torch.Tensor,
    clip: float,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate loss and the fraction of samples where the clip was active."""
    ratio = torch.exp(logp - logp_old)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - clip, 1.0 + clip) * advantages
    loss = -masked_mean(torch.min(unclipped, clipped), mask)
    clip_frac = masked_mean(((ratio - 1.0).abs() > clip).float(), mask)
    return loss, clip_frac


def policy_gradient_loss(
    logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """The vanilla actor-critic (A2C) loss −E[log π(a|s)·Â]."""
    return -masked_mean(logp * advantages, mask)


def value_loss(
    values: torch.Tensor,
    values_old: torch.Tensor,
    returns: torch.Tensor,
    clip: float | None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """½·(V − R̂)², or with clip: ½·max((V − R̂)², (V_old + clip(V − V_old, ±c) − R̂)²)."""
    err = (values - returns) ** 2
    if clip is not None:
        clipped = values_old + torch.clamp(values - values_old, -clip, clip)
        err = torch.max(err, (clipped - returns) ** 2)
    return 0.5 * masked_mean(err, mask)


def kl_estimate(logp: torch.Tensor, logp_ref: torch.Tensor, kind: str = "k1") -> torch.Tensor:
    """Per-sample estimate of KL(π‖π_ref) from log-probs of samples drawn from π."""
    x = logp - logp_ref
    if kind == "k1":
        return x
    if kind == "k2":
        return 0.5 * x**2
    if kind == "k3":
        return torch.expm1(-x) + x
    raise ValueError(f"unknown KL estimator '{kind}' (use k1, k2 or k3)")


def kl_loss(
    logp: torch.Tensor, logp_ref: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """KL(π‖π_ref) as a loss term: the masked mean of k3, differentiated through log π."""
    return masked_mean(kl_estimate(logp, logp_ref, "k3"), mask)


def group_advantages(
    rewards: torch.Tensor, group_size: int, scale: bool = True, eps: float = 1e-4
) -> torch.Tensor:
    """GRPO's group-relative advantages: each reward less its group's mean, divided by the
    group's (unbiased) standard deviation when `scale`, as TRL's GRPOTrainer."""
    g = rewards.view(-1, group_size)
    adv = g - g.mean(1, keepdim=True)
    if scale:
        adv = adv / (g.std(1, keepdim=True) + eps)
    return adv.reshape(-1)


def leave_one_out_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """RLOO: each reward less the mean of the other G − 1 rewards of its group."""
    g = rewards.view(-1, group_size)
    baseline = (g.sum(1, keepdim=True) - g) / (group_size - 1)
    return (g - baseline).reshape(-1)


class FixedKLController:
    def __init__(self, beta: float):
        self.beta = beta

    def update(self, kl: float, n_steps: int) -> float:
        return self.beta

    def state_dict(self) -> dict:
        return {"beta": self.beta}

    def load_state_dict(self, state: dict) -> None:
        self.beta = state["beta"]


class AdaptiveKLController:
    """Ziegler et al. 2019: proportional control of β towards a target KL. `horizon` counts
    samples: each update moves β by at most ±0.2·n_steps/horizon."""

    def __init__(self, beta: float, target: float, horizon: int = 10_000):
        self.beta, self.target, self.horizon = beta, target, horizon

    def update(self, kl: float, n_steps: int) -> float:
        error = min(max(kl / self.target - 1.0, -0.2), 0.2)
        self.beta *= 1.0 + error * n_steps / self.horizon
        return self.beta

    def state_dict(self) -> dict:
        return {"beta": self.beta}

    def load_state_dict(self, state: dict) -> None:
        self.beta = state["beta"]
