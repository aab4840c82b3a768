"""Supervised fine-tuning (InstructGPT Step 1): behavioural cloning on demonstrations.

    L_SFT = −1/|y| · Σ_t log π(y_t | x, y_<t)      over response tokens only

Prompt tokens and padding carry no loss (the response mask), so a batch of mixed lengths
is a batch of the same objective.
"""

from __future__ import annotations

import numpy as np
import torch

from rlhflab.text.sequences import SeqBatch, encode, token_logprobs


def sft_loss(model, batch: SeqBatch) -> torch.Tensor:
    logp = token_logprobs(model, batch)
    return -logp.sum() / batch.response_mask.sum().clamp_min(1)


def train_sft(
    model,
    tokenizer,
    prompts: list[str],
    responses: list[str],
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int = 0,
    on_log=None,
) -> list[float]:
    """Fine-tune in place; returns the mean loss of each epoch."""

    def loss(idx) -> torch.Tensor:
        return sft_loss(
            model, encode(tokenizer, [prompts[i] for i in idx], [responses[i] for i in idx])
        )

    return fit_epochs(model, loss, len(prompts), epochs, lr, batch_size, seed, "sft", on_log)


def fit_epochs(
    model,
    loss_fn,
    n: int,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    phase: str,
    on_log=None,
) -> list[float]:
    """AdamW over shuffled minibatches of n examples (`loss_fn(indices) -> loss`), gradient norm
    clipped
    at 1; logs and returns the mean loss of each epoch. Shared by SFT, DPO and text reward
    models."""
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    history = []
    for epoch in range(epochs):
        model.train()
        losses = []
        for idx in np.array_split(rng.permutation(n), max(1, n // batch_size)):
            loss = loss_fn(idx)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(float(loss.detach()))
        history.append(float(np.mean(losses)))
        if on_log:
            on_log({"phase": phase, "epoch": epoch + 1, f"{phase}_loss": history[-1]})
    model.eval()
    return history
