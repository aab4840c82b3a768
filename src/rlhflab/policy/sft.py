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


def train_sft(model, tokenizer, prompts: list[str], responses: list[str], epochs: int, lr: float, batch_size: int, seed: int = 0, on_log=None) -> list[float]:
    """Fine-tune in place; returns the mean loss of each epoch."""
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    history = []
    for epoch in range(epochs):
        losses = []
        for idx in np.array_split(rng.permutation(len(prompts)), max(1, len(prompts) // batch_size)):
            batch = encode(tokenizer, [prompts[i] for i in idx], [responses[i] for i in idx])
            loss = sft_loss(model, batch)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(float(loss))
        history.append(float(np.mean(losses)))
        if on_log:
            on_log({"phase": "sft", "epoch": epoch + 1, "sft_loss": history[-1]})
    model.eval()
    return history
