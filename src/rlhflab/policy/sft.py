"""Supervised fine-tuning (InstructGPT Step 1): behavioural cloning on demonstrations.

    L_SFT = −Σ_b Σ_t log π(y_b,t | x_b, y_b,<t) / Σ_b |y_b|      over response tokens only

the mean over every response token of the batch (not a per-sequence 1/|y| average, which would
weight a short response's tokens more). Prompt tokens and padding carry no loss (the response
mask). `pretrain_builtin` (Step 0 for the built-in task) is the same loss with empty prompts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from rlhflab import distributed
from rlhflab.config import RunConfig
from rlhflab.text.models import build_word_tokenizer, context_length, save_model, tiny_gpt2
from rlhflab.text.sequences import SeqBatch, encode, token_logprobs
from rlhflab.text.task import TASKS


def sft_loss(model, batch: SeqBatch) -> torch.Tensor:
    logp = token_logprobs(model, batch)
    return -logp.sum() / batch.response_mask.sum().clamp_min(1)


def sft_loss_and_tokens(model, batch: SeqBatch) -> tuple[torch.Tensor, float]:
    """The loss and the number of response tokens it averages over (a shard's weight)."""
    return sft_loss(model, batch), float(batch.response_mask.sum())


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

    def loss(idx) -> tuple[torch.Tensor, float]:
        return sft_loss_and_tokens(
            model,
            encode(
                tokenizer,
                [prompts[i] for i in idx],
                [responses[i] for i in idx],
                context_length(model),
            ),
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
    dropout: bool = True,
) -> list[float]:
    """AdamW over shuffled minibatches of n examples, gradient norm clipped at 1; logs and
    returns the mean loss of each epoch. `loss_fn(indices)` returns the loss, or (loss, count)
    when the loss averages over something other than the examples (SFT: response tokens).
    Shared by SFT (and so the built-in model's pretraining) and DPO; text reward models have
    their own loop (reward/text.py).

    Data-parallel across processes (`rlhflab/distributed.py`): every rank draws the same
    minibatch, computes the loss on its shard weighted by its share of the count, and the
    gradients are summed, so each step is the single-process step on the whole minibatch.

    `dropout=False` trains in eval mode: DPO's reference log-probabilities come from eval mode,
    so with dropout on a hub model's log-ratio would not be 0 at step 0 (TRL disables it too)."""
    rng = np.random.default_rng(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    distributed.broadcast_parameters(params)
    opt = torch.optim.AdamW(params, lr=lr)
    history = []
    for epoch in range(epochs):
        model.train(dropout)
        losses = []
        for idx in np.array_split(rng.permutation(n), max(1, n // batch_size)):
            local = distributed.shard(idx)
            opt.zero_grad()
            loss, count = torch.zeros(()), 0.0
            if len(local):
                out = loss_fn(local)
                loss, count = out if isinstance(out, tuple) else (out, float(len(local)))
            weight = distributed.share(count)
            if len(local):
                (loss * weight).backward()
            distributed.sync_gradients(params)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            losses.append(float(distributed.all_reduce(loss.detach() * weight)))
        history.append(float(np.mean(losses)))
        if on_log:
            on_log({"phase": phase, "epoch": epoch + 1, f"{phase}_loss": history[-1]})
    model.eval()
    return history


def pretrain_builtin(cfg: RunConfig, out: Path, on_log=None) -> Path:
    """Step 0: a tiny GPT-2 and a word-level tokenizer trained on the task's corpus, saved with
    save_pretrained. Language modelling is SFT's loss with an empty prompt; `text.phf.objective`
    may fold the task's gold detector into it (filtering, conditional training, unlikelihood:
    `policy/phf.py`)."""
    from rlhflab.policy import phf

    assert cfg.text is not None
    tc, task = cfg.text, TASKS[cfg.text.task]
    objective = tc.phf.objective
    conditional = objective == "conditional"
    tokenizer = build_word_tokenizer(task.vocabulary + (phf.CONTROL_TOKENS if conditional else []))
    model = tiny_gpt2(
        len(tokenizer),
        tc.n_layer,
        tc.n_embd,
        n_head=4,
        n_positions=128 if task.insults else 64,  # judge examples hold two responses
        seed=cfg.seed,
        tokenizer=tokenizer,
    )
    docs = phf.documents(task, tc.pretrain_sequences, cfg.seed + 11, objective)
    loss = phf.objective_loss(
        model, tokenizer, docs, objective, tc.phf.unlikelihood_alpha, context_length(model)
    )

    def log(record: dict) -> None:
        if on_log:
            on_log({**record, "phase": "pretrain", "objective": objective})

    fit_epochs(model, loss, len(docs), tc.pretrain_epochs, 3e-3, 64, cfg.seed, "sft", log)
    if conditional:  # sampled conditioned on <|good|>: every prompt is given after it
        tokenizer.chat_template = phf.GOOD_TEMPLATE
    return save_model(model, tokenizer, out)


def pretrain_builtin_judge(cfg: RunConfig, out: Path, on_log=None) -> Path:
    """The built-in AI judge: a tiny GPT-2 (2 layers, 64 wide) trained with SFT's loss to answer
    judge-format examples of the reviews task in `judge.template` (`text/judge_world.py`; the
    answer token is the only target): a first lesson on the positive principle alone, then
    every principle on clean and degraded reviews. Saved with save_pretrained and loaded back by
    path like any hub model."""
    from rlhflab.text.judge_world import build_judge_tokenizer, judge_examples

    assert cfg.text is not None
    task, jc = TASKS[cfg.text.task], cfg.judge
    tokenizer = build_judge_tokenizer(task, jc.template)
    model = tiny_gpt2(
        len(tokenizer), 2, 64, n_head=4, n_positions=192, seed=cfg.seed + 7, tokenizer=tokenizer
    )

    def log(record: dict) -> None:
        if on_log:
            on_log({**record, "phase": "judge_pretrain"})

    n = jc.builtin_examples
    lessons = [(judge_examples(task, n, cfg.seed + 12, easy=True, template=jc.template), 1)]
    lessons.append(
        (judge_examples(task, n, cfg.seed + 13, template=jc.template), jc.builtin_epochs)
    )
    for examples, epochs in lessons:
        prompts, answers = [p for p, _ in examples], [a for _, a in examples]
        train_sft(model, tokenizer, prompts, answers, epochs, 3e-3, 16, cfg.seed, log)
    return save_model(model, tokenizer, out)
