#!/usr/bin/env python
"""Benchmark: language-model training throughput (tokens/s and MFU) of rlhflab vs TRL on CPU.

For SFT, reward modelling, DPO and PPO on the same tiny GPT-2 it measures rlhflab's own
training steps and, when TRL is installed, TRL's trainers on the very same model (saved
with save_pretrained and loaded by TRL from that path), the very same data in the same
order (TRL's `train_sampling_strategy="sequential"`) and the same batch sizes, and prints
tokens/s, model-FLOPs utilisation and the ratio ours/TRL, plus the first step losses of
both sides (identical init and batches: they should agree at step 1, and DPO starts at
log 2 since the policy equals its reference).

    python bench/text_throughput.py --quick
    python bench/text_throughput.py                       # both points, 20 timed steps each
    python bench/text_throughput.py --points main --steps 20 --threads 2 --markdown out.md
    python bench/text_throughput.py --methods rm,dpo,grpo --precision bf16

Definitions
-----------
* tokens/s: non-padding tokens that go through the trained model's forward *and* backward
  per optimiser step, ÷ the median wall time of one step (median over the `--steps` timed
  steps, after `--warmup` untimed steps). A step is everything the trainer does between two
  optimiser steps: our side includes tokenising the batch (`encode`), TRL's side its
  collator, loss bookkeeping and logging (its dataset is tokenised before training).
    - SFT: the B sequences of a batch.
    - reward model: the 2B sequences (chosen and rejected) of B pairs.
    - DPO: the 2B sequences of B pairs through the policy. Our side is `train_dpo`'s step:
      chosen and rejected in one forward, the reference's log-probs computed once for the
      whole set before training (the time of that pass is spread evenly over the steps and
      included in each); TRL's DPOTrainer (its default, precompute_ref_log_probs=False) runs
      the reference forward in every step. Neither reference forward is counted in tokens.
    - GRPO (`TextRL.step` with one epoch of one minibatch vs TRL's GRPOTrainer with
      num_iterations = 1): P prompts × G samples per step, the real [prompt | completion]
      tokens; a step is the whole iteration: sampling, reference forward, the reward (the
      task's gold score as a Python callable on both sides) and the update. Samples differ
      between the sides, so each side's step time is taken per its own mean tokens/step.
    - PPO (`TextPPO.step`, one iteration = one batch of prompts): the sampled [prompt |
      response] tokens × PPO epochs (each sequence goes through forward+backward once per
      epoch). Two rows: "update" divides by the time of the PPO update phase only (the
      forward+backward minibatch loop), "end-to-end" by the whole iteration: generation,
      the rollout's no-grad forwards (policy log-probs and values, reference, reward model),
      GAE and the update. The PPO breakdown table shows each part.
* ours/TRL: the two sides' steps are interleaved — TRL's trainer runs, and right after each
  of its optimiser steps a callback takes one of our steps on our own model — so each of our
  steps is timed next to one of TRL's under the same machine load. The ratio is the median
  over step pairs of (TRL step time ÷ our step time). On a shared machine, load changes
  step times several-fold within a minute; unpaired, back-to-back runs gave ratios anywhere
  from 0.5× to 7× for identical work. `--rounds` repeats everything on fresh models and pools
  the pairs (the median of each round is printed too). Losses are the first round's.
* `--clock cpu` times every step (and the peak) by this process's CPU time instead of the wall
  clock: on a machine shared with other jobs a step's wall time counts the time it waited for
  a core, its CPU time does not. Use it with `--threads 1` (two threads that wait for each
  other spin and burn CPU time under load).
* MFU = 6·N·(tokens/s) ÷ peak (under `--clock cpu`: tokens per CPU-second ÷ the peak per
  CPU-second) (also from the fastest single step: "best step"), with N the
  non-embedding parameters plus the output projection (for tied embeddings the vocab×d
  output projection is counted once) — the
  usual 6N FLOPs/token of forward+backward, without the attention-score term and without
  the DPO reference forward or PPO's generation and rollout forwards (so those rows
  understate the hardware's real utilisation).
  peak = the best fp32 torch.mm of 2048×2048 (2·n³ FLOPs; bf16: 512×512) at the same torch
  thread count as training, sampled before the run, before every measurement and after the
  run; the best sample counts (on a shared machine a single sample can be several times too
  low, which would inflate MFU past 100%).
* `--precision bf16` runs our steps under CPU bf16 autocast and TRL with bf16=True, and
  takes the peak from a bf16 torch.mm. A CPU without native bf16 (AVX-512 BF16 / AMX)
  converts in software.
* Both sides use the same torch.set_num_threads (`--threads`, default 2), fp32, no
  gradient checkpointing (TRL's configs default to bf16 autocast and gradient checkpointing;
  both are turned off here so the two sides do the same arithmetic), AdamW with the same
  lr and weight decay 0.01, a constant learning rate, gradient clipping at 1.0.
* Data: the built-in ReviewsTask. Prompts "review of the <noun> :" (5 tokens); responses
  are several generated reviews joined and cut so that prompt + response + EOS is exactly
  `--seq-len` word tokens (the word-level tokenizer maps one word to one token), so there
  is no padding (`--lengths fixed`), or cut to a length drawn uniformly from 6 words to that
  (`--lengths varied`: preference data of mixed lengths; TRL pads each batch to its longest
  sequence, our side packs it, rlhflab/text/packing.py). Pairs: a high-mood review (chosen)
  and a low-mood one (rejected).
* `--compile` puts our side's transformer under torch.compile (dynamic shapes); TRL's side is
  unchanged.
* TRL 1.16 ships no PPO trainer (PPOTrainer moved to trl.experimental.ppo and was then
  removed entirely, huggingface/trl#7020), so the PPO rows have no TRL side (n/a).

Our side uses rlhflab's functions exactly as its training loops do, one optimiser step at a
time so that steps can be timed and losses recorded (the step of `train_sft` / `train_dpo`,
i.e. their loss under `fit_epochs`' AdamW + grad-norm clip 1, and of `TextRewardEnsemble.fit`,
with batches taken in order instead of shuffled): `encode` + `sft_loss`;
`TextRewardEnsemble.group_losses`; `encode` + `sequence_logprob` + `dpo_loss`; and
`TextPPO.step` itself. `--check-loops` also runs `train_sft` and `train_dpo` themselves on the
same batches and compares their epoch-mean loss with ours. This is a benchmark, not a test.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import argparse
import contextlib
import functools
import json
import math
import platform
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from rlhflab.config import TextDPOConfig, TextGRPOConfig, TextPPOConfig
from rlhflab.policy.dpo import dpo_loss, sequence_logprob, train_dpo
from rlhflab.policy.sft import sft_loss, train_sft
from rlhflab.policy.text import TextPPO, TextRL
from rlhflab.reward.text import RankedResponses, TextRewardEnsemble
from rlhflab.text import packing
from rlhflab.text.models import (
    TextRewardModel,
    build_word_tokenizer,
    context_length,
    frozen_copy,
    load_causal_lm,
    load_tokenizer,
    save_model,
    tiny_gpt2,
)
from rlhflab.text.packing import backbone_of
from rlhflab.text.sequences import encode
from rlhflab.text.task import ReviewsTask

console = Console(width=None if sys.stdout.isatty() else 220)
POINTS = {  # name: (n_layer, n_embd, n_head)
    "small": (2, 64, 4),  # the built-in model's default size
    "main": (4, 256, 4),
}
SPEED_TARGET = 1.5  # ours ÷ TRL tokens/s, from the issue
LR = {
    "sft": 1e-3,
    "rm": 5e-4,
    "dpo": 5e-4,
    "grpo": 3e-4,
}  # rlhflab's defaults (TextSFTConfig, TextRewardConfig, TextDPOConfig, TextGRPOConfig)
DPO_BETA = 0.1
# torch.optim.AdamW's default, which train_sft / train_dpo get; TextRewardEnsemble.fit sets it
WEIGHT_DECAY = 0.01


# -- measurement helpers ---------------------------------------------------------------------
# --precision: fp32, or bf16 autocast on both sides; --compile: torch.compile on our side
PRECISION: dict = {"dtype": torch.float32, "compile": False, "clock": "wall"}


def autocast():
    """Our side's precision context: nothing for fp32, CPU bf16 autocast for bf16."""
    dtype = PRECISION["dtype"]
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast("cpu", dtype=dtype)


def clock() -> float:
    """Seconds by `--clock`: wall time, or the CPU time of this process (all its threads): on a
    shared machine a step's CPU time does not count the time it waited for a core."""
    return time.process_time() if PRECISION["clock"] == "cpu" else time.perf_counter()


def compiled(model):
    """`model`, its transformer compiled in place (`--compile`: torch.compile, dynamic shapes, so
    that a new packed width does not recompile) or untouched."""
    if PRECISION["compile"]:
        backbone_of(model).compile(dynamic=True)
    return model


def measure_peak(n: int = 0, repeats: int = 5) -> float:
    """Best FLOP/s of an n×n @ n×n torch.mm (in the --precision dtype) at the current thread
    count; n = 2048 in fp32, 512 in bf16 (which a CPU without bf16 instructions runs ~16×
    slower: a 2048 matmul would take minutes)."""
    dtype = PRECISION["dtype"]
    n = n or (2048 if dtype == torch.float32 else 512)
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    c = torch.empty(n, n, dtype=dtype)
    torch.mm(a, b, out=c)  # warm-up
    best = math.inf
    for _ in range(repeats):
        t = clock()
        torch.mm(a, b, out=c)
        best = min(best, clock() - t)
    return 2 * n**3 / best


PEAKS: list[
    float
] = []  # every peak sample of this run; MFU uses the best (the machine's least-loaded moment)


def sample_peak(repeats: int) -> float:
    PEAKS.append(measure_peak(repeats=repeats))
    return PEAKS[-1]


def flop_params(model: nn.Module) -> int:
    """N: non-embedding parameters plus the output projection (a tied vocab×d projection counted
    once)."""
    emb = {
        id(p)
        for m in model.modules()
        if isinstance(m, nn.Embedding)
        for p in m.parameters(recurse=False)
    }
    n = sum(
        p.numel() for p in model.parameters() if id(p) not in emb
    )  # parameters() yields a tied weight once
    out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if out is not None and id(out.weight) in emb:
        n += out.weight.numel()
    return n


def load_avg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


@dataclass
class Measurement:
    point: str
    method: str
    impl: str
    n_params: int = 0
    seqs_per_step: int = 0
    tokens_per_step: float = 0.0
    step_times: list[float] = field(default_factory=list)  # timed steps only
    losses: list[float] = field(default_factory=list)  # every step, warm-up included
    note: str = ""
    round_medians: list[float] = field(default_factory=list)  # median step time of each round
    paired_ratios: list[float] = field(
        default_factory=list
    )  # TRL step time ÷ our adjacent step time, per step pair
    round_ratios: list[float] = field(default_factory=list)  # median paired ratio of each round

    @property
    def seconds_per_step(self) -> float:
        return statistics.median(self.step_times) if self.step_times else math.nan

    @property
    def min_seconds_per_step(self) -> float:
        return min(self.step_times) if self.step_times else math.nan

    @property
    def tokens_per_second(self) -> float:
        return self.tokens_per_step / self.seconds_per_step if self.step_times else math.nan

    def mfu(self, peak: float) -> float:
        return 6 * self.n_params * self.tokens_per_second / peak

    def best_mfu(self, peak: float) -> float:
        return 6 * self.n_params * self.tokens_per_step / self.min_seconds_per_step / peak

    @property
    def ratio_vs_trl(self) -> float | None:
        return statistics.median(self.paired_ratios) if self.paired_ratios else None


def pooled(ms: list[Measurement]) -> Measurement:
    """The first round's losses with every round's timed steps."""
    out = Measurement(**{**asdict(ms[0]), "step_times": [t for m in ms for t in m.step_times]})
    out.round_medians = [m.seconds_per_step for m in ms]
    return out


def best_round(ms: list[Measurement]) -> Measurement:
    """The first round's losses with the step times of the fastest round (by median step time)."""
    best = min(ms, key=lambda m: m.seconds_per_step)
    out = Measurement(**{**asdict(ms[0]), "step_times": list(best.step_times)})
    out.round_medians = [m.seconds_per_step for m in ms]
    return out


def time_steps(step, warmup: int, steps: int) -> tuple[list[float], list]:
    """Run warmup + steps calls of step(i); wall time of each timed call and every call's result."""
    times, results = [], []
    for i in range(warmup + steps):
        t = clock()
        results.append(step(i))
        dt = clock() - t
        if i >= warmup:
            times.append(dt)
    return times, results


# -- data -------------------------------------------------------------------------------------
@dataclass
class Data:
    prompts: list[str]
    responses: list[str]  # SFT targets
    chosen: list[str]
    rejected: list[str]
    ppo_prompts: list[str]


def build_data(
    task: ReviewsTask,
    tokenizer,
    n_seqs: int,
    n_ppo_prompts: int,
    seq_len: int,
    seed: int,
    lengths: str = "fixed",
) -> Data:
    """Prompts of 5 tokens and responses of seq_len − 5 − 1 words, so [prompt | response | EOS] is
    seq_len tokens ("fixed"), or of a length drawn uniformly from 6 … seq_len − 5 − 1 words for
    each response ("varied": a batch is padded to its longest sequence)."""
    prompts = task.prompts(n_seqs, seed)
    prompt_len = len(tokenizer(prompts[0], add_special_tokens=False)["input_ids"])
    n_words = seq_len - prompt_len - 1
    if n_words < 1:
        raise SystemExit(
            f"--seq-len {seq_len} leaves no room for a response after a {prompt_len}-token prompt"
        )
    rng = np.random.default_rng(seed + 1)

    def long_response(mood: float | None) -> str:
        n = n_words if lengths == "fixed" else int(rng.integers(min(6, n_words), n_words + 1))
        words: list[str] = []
        while len(words) < n:
            words += task.response(rng, mood).split()
        return " ".join(words[:n])

    return Data(
        prompts=prompts,
        responses=[long_response(None) for _ in range(n_seqs)],
        chosen=[long_response(0.9) for _ in range(n_seqs)],
        rejected=[long_response(0.1) for _ in range(n_seqs)],
        ppo_prompts=task.prompts(n_ppo_prompts, seed + 2),
    )


# -- our side ---------------------------------------------------------------------------------
@dataclass
class Side:
    """Our side of one method: `step(i)` takes optimiser step i (batch i) and returns its loss."""

    method: str
    step: object
    n_params: int
    seqs_per_step: int
    tokens_per_step: float
    amortised: float = 0.0  # seconds of once-per-run work (DPO's reference pass) per step

    def alone(self, warmup: int, steps: int) -> Measurement:
        times, losses = time_steps(self.step, warmup, steps)
        times = [t + self.amortised for t in times]
        return Measurement(
            "",
            self.method,
            "rlhflab",
            self.n_params,
            self.seqs_per_step,
            self.tokens_per_step,
            times,
            losses,
        )


def with_precision(step):
    """`step` under our side's precision (`autocast`)."""

    def run(i):
        with autocast():
            return step(i)

    return run


def ours_sft(path: str, data: Data, B: int, n_steps: int) -> Side:
    tokenizer = load_tokenizer(path)
    model = compiled(load_causal_lm(path))
    model.train()
    opt = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=LR["sft"], weight_decay=WEIGHT_DECAY
    )

    def step(i):  # one step of rlhflab.policy.sft.train_sft (its loss under fit_epochs)
        sl = slice(i * B, (i + 1) * B)
        batch = encode(tokenizer, data.prompts[sl], data.responses[sl])
        loss = sft_loss(model, batch)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return float(loss)

    # tokens of a step (counted here, outside the timed steps)
    tokens = [
        int(
            encode(
                tokenizer, data.prompts[i * B : (i + 1) * B], data.responses[i * B : (i + 1) * B]
            ).attention_mask.sum()
        )
        for i in range(n_steps)
    ]
    return Side("SFT", step, flop_params(model), B, float(np.mean(tokens)))


def ours_rm(path: str, data: Data, B: int, n_steps: int, seed: int) -> tuple[Side, torch.Tensor]:
    tokenizer = load_tokenizer(path)
    ensemble = TextRewardEnsemble(
        TextRewardModel.from_pretrained(path), tokenizer, members=1, seed=seed
    )
    member = ensemble.members[0]
    compiled(member.backbone)
    head_init = member.head.weight.detach().clone()
    member.train()
    opt = torch.optim.AdamW(member.parameters(), lr=LR["rm"], weight_decay=WEIGHT_DECAY)
    groups = [
        RankedResponses(p, (c, r)) for p, c, r in zip(data.prompts, data.chosen, data.rejected)
    ]

    def step(i):  # one step of TextRewardEnsemble.fit
        loss = ensemble.group_losses(member, groups[i * B : (i + 1) * B]).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(member.parameters(), 1.0)
        opt.step()
        return float(loss)

    # the tokens of a step: what group_losses encodes (counted here, outside the timed steps)
    tokens = [
        int(
            encode(
                tokenizer,
                [g.prompt for g in groups[i * B : (i + 1) * B] for _ in g.responses],
                [r for g in groups[i * B : (i + 1) * B] for r in g.responses],
            ).attention_mask.sum()
        )
        for i in range(n_steps)
    ]
    return Side("reward model", step, flop_params(member), 2 * B, float(np.mean(tokens))), head_init


def ours_dpo(path: str, data: Data, B: int, n_steps: int) -> Side:
    tokenizer = load_tokenizer(path)
    policy = load_causal_lm(path)
    reference = frozen_copy(policy)
    compiled(policy)  # after the copy: a compiled module's copy would call the original
    opt = torch.optim.AdamW(
        [p for p in policy.parameters() if p.requires_grad], lr=LR["dpo"], weight_decay=WEIGHT_DECAY
    )

    def both(model, sl):  # train_dpo's forward: [chosen; rejected] in one batch
        batch = encode(tokenizer, data.prompts[sl] * 2, data.chosen[sl] + data.rejected[sl])
        logp = sequence_logprob(model, batch)
        return logp[: len(logp) // 2], logp[len(logp) // 2 :]

    # train_dpo computes the reference's log-probs once, before training, in batches of 64
    # pairs; that time is spread over the steps and counted in each (Side.amortised)
    t = clock()
    with autocast(), torch.no_grad():
        refs = [both(reference, slice(s, s + 64)) for s in range(0, n_steps * B, 64)]
    ref_c, ref_r = torch.cat([c for c, _ in refs]), torch.cat([r for _, r in refs])
    amortised = (clock() - t) / max(n_steps, 1)

    def step(i):  # one step of rlhflab.policy.dpo.train_dpo (its loss under fit_epochs)
        sl = slice(i * B, (i + 1) * B)
        policy.eval()  # train_dpo trains with dropout off (fit_epochs(dropout=False))
        chosen, rejected = both(policy, sl)
        loss = dpo_loss(chosen, rejected, ref_c[sl], ref_r[sl], DPO_BETA, "sigmoid", 0.0)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        return float(loss)

    tokens = [
        int(
            encode(
                tokenizer, data.prompts[i * B : (i + 1) * B], data.chosen[i * B : (i + 1) * B]
            ).attention_mask.sum()
            + encode(
                tokenizer, data.prompts[i * B : (i + 1) * B], data.rejected[i * B : (i + 1) * B]
            ).attention_mask.sum()
        )
        for i in range(n_steps)
    ]
    return Side("DPO", step, flop_params(policy), 2 * B, float(np.mean(tokens)), amortised)


def ours_ppo(
    path: str,
    data: Data,
    n_prompts: int,
    minibatches: int,
    epochs: int,
    seq_len: int,
    warmup: int,
    steps: int,
    seed: int,
) -> tuple[Measurement, Measurement, dict]:
    """TextPPO.step, with generation and the update phase timed by wrapping (not changing) its
    parts."""
    import rlhflab.policy.text as text_ppo

    tokenizer = load_tokenizer(path)
    policy = load_causal_lm(path)
    reference = frozen_copy(policy)
    compiled(policy)  # after the copy: a compiled module's copy would call the original
    rm = TextRewardEnsemble(TextRewardModel.from_pretrained(path), tokenizer, members=1, seed=seed)
    prompt_len = len(tokenizer(data.ppo_prompts[0], add_special_tokens=False)["input_ids"])
    cfg = TextPPOConfig(batch_size=n_prompts, minibatches=minibatches, epochs=epochs)
    # the reward model re-encodes the decoded response and appends EOS, so one token is left for it
    # within seq_len
    max_new = seq_len - prompt_len - 1
    ppo = TextPPO(
        policy,
        reference,
        tokenizer,
        lambda p, t: rm.score(p, t),
        cfg,
        max_new_tokens=max_new,
        temperature=1.0,
        seed=seed,
    )

    rec: dict = {}
    original_generate = text_ppo.generate
    original_lv = ppo._logprobs_values

    def timed_generate(*args, **kwargs):
        t = clock()
        out = original_generate(*args, **kwargs)
        rec["generate"] = clock() - t
        rec["tokens"] = int(out[0].attention_mask.sum())
        rec["padded_tokens"] = out[0].attention_mask.numel()
        rec["response_tokens"] = float(out[0].response_mask.sum(1).mean())
        return out

    def timed_lv(mb):
        if torch.is_grad_enabled() and "update_start" not in rec:
            rec["update_start"] = clock()
        return original_lv(mb)

    ppo._logprobs_values = timed_lv
    text_ppo.generate = timed_generate
    parts = []
    try:

        def step(i):
            rec.clear()
            t0 = clock()
            record = ppo.step(data.ppo_prompts[i * n_prompts : (i + 1) * n_prompts])
            t1 = clock()
            parts.append(
                {
                    "total": t1 - t0,
                    "generate": rec["generate"],
                    "rollout": rec["update_start"] - t0 - rec["generate"],
                    "update": t1 - rec["update_start"],
                    "trained_tokens": epochs * rec["tokens"],
                    "response_tokens": rec["response_tokens"],
                    "padded_tokens": epochs * rec["padded_tokens"],
                }
            )
            return record

        time_steps(step, warmup, steps)
    finally:
        text_ppo.generate = original_generate
    timed = parts[warmup:]
    n = flop_params(policy)
    tokens = float(np.mean([p["trained_tokens"] for p in timed]))
    # median of per-iteration tokens/s, expressed as tokens/step ÷ s/step with the same median
    upd = Measurement(
        "",
        "PPO (update)",
        "rlhflab",
        n,
        n_prompts,
        tokens,
        [p["update"] * tokens / p["trained_tokens"] for p in timed],
    )
    e2e = Measurement(
        "",
        "PPO (end-to-end)",
        "rlhflab",
        n,
        n_prompts,
        tokens,
        [p["total"] * tokens / p["trained_tokens"] for p in timed],
    )
    breakdown = {
        k: statistics.median(p[k] for p in timed)
        for k in (
            "generate",
            "rollout",
            "update",
            "total",
            "response_tokens",
            "trained_tokens",
            "padded_tokens",
        )
    }
    breakdown.update(
        prompts=n_prompts, minibatches=minibatches, epochs=epochs, max_new_tokens=max_new
    )
    return upd, e2e, breakdown


def check_loops(
    path: str, data: Data, B: int, n_steps: int, seed: int, ours: dict[str, Measurement]
) -> dict:
    """Run rlhflab's own train_sft / train_dpo for one epoch over the same batches (the examples are
    laid out so that
    their shuffle yields our order) and compare their epoch-mean loss and time per step with our
    timed loop's."""
    n = n_steps * B
    perm = np.random.default_rng(seed).permutation(n)  # the order train_sft / train_dpo will visit
    inverse = np.empty(n, dtype=int)
    inverse[perm] = np.arange(n)

    def laid_out(xs):  # x[perm[j]] == xs[j]
        return [xs[inverse[i]] for i in range(n)]

    out = {}
    tokenizer = load_tokenizer(path)
    if "SFT" in ours:
        model = load_causal_lm(path)
        t = clock()
        hist = train_sft(
            model,
            tokenizer,
            laid_out(data.prompts[:n]),
            laid_out(data.responses[:n]),
            1,
            LR["sft"],
            B,
            seed,
        )
        out["SFT"] = {
            "train_fn": "train_sft",
            "epoch_mean_loss": hist[0],
            "our_loop_mean_loss": float(np.mean(ours["SFT"].losses[:n_steps])),
            "s_per_step": (clock() - t) / n_steps,
        }
    if "DPO" in ours:
        policy = load_causal_lm(path)
        pairs = list(
            zip(laid_out(data.prompts[:n]), laid_out(data.chosen[:n]), laid_out(data.rejected[:n]))
        )
        cfg = TextDPOConfig(epochs=1, lr=LR["dpo"], batch_size=B, beta=DPO_BETA)
        t = clock()
        hist = train_dpo(policy, frozen_copy(policy), tokenizer, pairs, cfg, seed)
        out["DPO"] = {
            "train_fn": "train_dpo",
            "epoch_mean_loss": hist[0],
            "our_loop_mean_loss": float(np.mean(ours["DPO"].losses[:n_steps])),
            "s_per_step": (clock() - t) / n_steps,
        }
    return out


# -- TRL's side -------------------------------------------------------------------------------
def trl_available() -> str | None:
    try:
        import trl

        return trl.__version__
    except ImportError:
        return None


def trl_has_ppo() -> str | None:
    """Where TRL's PPO trainer lives in this version, or None."""
    import importlib

    for module, name in (("trl", "PPOTrainer"), ("trl.experimental.ppo", "PPOTrainer")):
        try:
            if hasattr(importlib.import_module(module), name):
                return f"{module}.{name}"
        except Exception:  # noqa: BLE001 - missing module or a lazy import that fails
            continue
    return None


def _trl_common(out_dir: str, B: int, max_steps: int, lr: float, seed: int) -> dict:
    return dict(
        output_dir=out_dir,
        per_device_train_batch_size=B,
        gradient_accumulation_steps=1,
        max_steps=max_steps,
        learning_rate=lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=WEIGHT_DECAY,
        max_grad_norm=1.0,
        bf16=PRECISION["dtype"] == torch.bfloat16,
        fp16=False,
        gradient_checkpointing=False,
        use_cpu=True,
        train_sampling_strategy="sequential",
        logging_steps=max_steps,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        log_level="error",
        dataloader_num_workers=0,
        seed=seed,
        data_seed=seed,
    )


def _recording(trainer_cls):
    """The trainer, recording each step's loss and tokens (one float() per step, as our loops
    do)."""

    class Recording(trainer_cls):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            out = super().compute_loss(
                model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
            )
            if model.training:
                self.bench_losses.append(float((out[0] if return_outputs else out).detach()))
                masks = (
                    [inputs["attention_mask"]]
                    if "attention_mask" in inputs
                    else [inputs["prompt_mask"], inputs["completion_mask"]]  # GRPO
                )
                self.bench_tokens.append(int(sum(m.sum() for m in masks)))
                self.bench_seqs.append(len(masks[0]))
            return out

    Recording.__name__ = Recording.__qualname__ = trainer_cls.__name__
    return Recording


def _preference_dataset(data: Data, n: int):
    """The first `n` preference pairs as TRL reads them (prompt, chosen, rejected)."""
    from datasets import Dataset

    return Dataset.from_dict(
        {
            "prompt": data.prompts[:n],
            "chosen": [" " + c for c in data.chosen[:n]],
            "rejected": [" " + r for r in data.rejected[:n]],
        }
    )


def _trl_trainer(trainer_cls, path: str, args, ds):
    """A recording TRL trainer (`_recording`) of the model at `path` on `ds`."""
    return _recording(trainer_cls)(
        model=path, args=args, train_dataset=ds, processing_class=load_tokenizer(path)
    )


def _run_trl(
    trainer, warmup: int, steps: int, method: str, n_params: int, threads: int, ours: Side | None
) -> tuple[Measurement, Measurement | None]:
    """Train with TRL; with `ours`, take one of our steps right after each TRL step (paired,
    interleaved steps),
    timing each side's steps separately, so that both sides see the same machine load."""
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class PairedSteps(TrainerCallback):
        def __init__(self):
            self.trl_times, self.our_times, self.our_losses, self.threads, self.mark = (
                [],
                [],
                [],
                None,
                0.0,
            )

        def on_train_begin(self, args, state, control, **kwargs):
            self.threads = torch.get_num_threads()
            self.mark = clock()

        def on_step_end(self, args, state, control, **kwargs):
            t = clock()
            self.trl_times.append(t - self.mark)  # everything TRL did since our previous step ended
            if ours is not None:
                self.our_losses.append(ours.step(len(self.trl_times) - 1))
                self.our_times.append(clock() - t)
            self.mark = clock()

    for cb in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(cb)
    timer = PairedSteps()
    trainer.add_callback(timer)
    trainer.bench_losses, trainer.bench_tokens, trainer.bench_seqs = [], [], []
    trainer.train()
    if timer.threads != threads or torch.get_num_threads() != threads:
        console.print(
            f"[yellow]warning: TRL ran with {timer.threads} torch threads (asked "
            f"{threads})[/yellow]"
        )
    trl = Measurement(
        "",
        method,
        "TRL",
        n_params,
        trainer.bench_seqs[-1],
        float(np.mean(trainer.bench_tokens)),
        timer.trl_times[warmup:],
        trainer.bench_losses,
    )
    if ours is None:
        return trl, None
    our = Measurement(
        "",
        method,
        "rlhflab",
        ours.n_params,
        ours.seqs_per_step,
        ours.tokens_per_step,
        [t + ours.amortised for t in timer.our_times[warmup:]],
        timer.our_losses,
    )
    return trl, our


def trl_sft(
    path: str,
    data: Data,
    B: int,
    warmup: int,
    steps: int,
    seed: int,
    threads: int,
    ours: Side | None,
) -> tuple[Measurement, Measurement | None]:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    n = (warmup + steps) * B
    ds = Dataset.from_dict(
        {"prompt": data.prompts[:n], "completion": [" " + r for r in data.responses[:n]]}
    )
    with tempfile.TemporaryDirectory() as out:
        args = SFTConfig(
            **_trl_common(out, B, warmup + steps, LR["sft"], seed),
            max_length=None,
            packing=False,
            completion_only_loss=True,
        )
        trainer = _trl_trainer(SFTTrainer, path, args, ds)
        _check_same_tokens(trainer, data, B, "sft")
        return _run_trl(trainer, warmup, steps, "SFT", flop_params(trainer.model), threads, ours)


def trl_rm(
    path: str,
    data: Data,
    B: int,
    warmup: int,
    steps: int,
    seed: int,
    threads: int,
    head_init: torch.Tensor,
    ours: Side | None,
) -> tuple[Measurement, Measurement | None]:
    from trl import RewardConfig, RewardTrainer

    ds = _preference_dataset(data, (warmup + steps) * B)
    with tempfile.TemporaryDirectory() as out:
        args = RewardConfig(
            **_trl_common(out, B, warmup + steps, LR["rm"], seed),
            max_length=None,
            disable_dropout=True,
        )
        trainer = _trl_trainer(RewardTrainer, path, args, ds)
        with (
            torch.no_grad()
        ):  # the same head init as ours (our head's bias starts at 0 and cancels in r_w − r_l)
            trainer.model.score.weight.copy_(head_init)
        _check_same_tokens(trainer, data, B, "rm")
        return _run_trl(
            trainer, warmup, steps, "reward model", flop_params(trainer.model), threads, ours
        )


def trl_dpo(
    path: str,
    data: Data,
    B: int,
    warmup: int,
    steps: int,
    seed: int,
    threads: int,
    ours: Side | None,
) -> tuple[Measurement, Measurement | None]:
    from trl import DPOConfig, DPOTrainer

    ds = _preference_dataset(data, (warmup + steps) * B)
    with tempfile.TemporaryDirectory() as out:
        args = DPOConfig(
            **_trl_common(out, B, warmup + steps, LR["dpo"], seed),
            max_length=None,
            beta=DPO_BETA,
            loss_type=["sigmoid"],
            precompute_ref_log_probs=False,
            disable_dropout=True,
        )
        trainer = _trl_trainer(DPOTrainer, path, args, ds)
        _check_same_tokens(trainer, data, B, "dpo")
        return _run_trl(trainer, warmup, steps, "DPO", flop_params(trainer.model), threads, ours)


def review_gold(prompts, completions, **kwargs) -> list[float]:
    """The reward both GRPO sides optimise: ReviewsTask's gold score, a Python callable (a
    verifiable reward), so no reward-model forward is on either side."""
    task = ReviewsTask()
    return [float(task.gold(c)) for c in completions]


def ours_grpo(path: str, data: Data, n_prompts: int, group: int, max_new: int, seed: int) -> Side:
    """One `TextRL.step` (GRPO, one epoch of one minibatch: TRL's num_iterations = 1) per step:
    sampling, the reference forward, the reward and the update."""
    tokenizer = load_tokenizer(path)
    policy = load_causal_lm(path)
    reference = frozen_copy(policy)
    compiled(policy)
    cfg = TextGRPOConfig(
        batch_size=n_prompts * group, group_size=group, epochs=1, minibatches=1, lr=LR["grpo"]
    )
    rl = TextRL(
        policy,
        reference,
        tokenizer,
        lambda p, t: torch.tensor(review_gold(p, t)),
        cfg,
        max_new_tokens=max_new,
        temperature=1.0,
        seed=seed,
    )
    prompt_len = len(tokenizer(data.ppo_prompts[0], add_special_tokens=False)["input_ids"])
    tokens: list[float] = []

    def step(i):
        record = rl.step(data.ppo_prompts[i * n_prompts : (i + 1) * n_prompts])
        n = n_prompts * group
        tokens.append(n * (prompt_len + record["response_length"]))  # real tokens, no padding
        side.tokens_per_step = float(np.mean(tokens))
        return record["policy_loss"]

    side = Side("GRPO", step, flop_params(policy), n_prompts * group, 0.0)
    return side


def trl_grpo(
    path: str,
    data: Data,
    n_prompts: int,
    group: int,
    max_new: int,
    warmup: int,
    steps: int,
    seed: int,
    threads: int,
    ours: Side | None,
) -> tuple[Measurement, Measurement | None]:
    """TRL's GRPOTrainer with our GRPO's settings: G samples per prompt at temperature 1 (no
    top-k/top-p), β = 0.04 k3 in the loss, the token-mean loss over the batch (`bnpo`, our masked
    mean), clip 0.2, one update per batch, Adam(ε = 1e-5) without weight decay, clip-norm 1."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    n = (warmup + steps) * n_prompts
    ds = Dataset.from_dict({"prompt": data.ppo_prompts[:n]})
    with tempfile.TemporaryDirectory() as out:
        common = _trl_common(out, n_prompts * group, warmup + steps, LR["grpo"], seed)
        common.update(weight_decay=0.0, adam_epsilon=1e-5)
        args = GRPOConfig(
            **common,
            num_generations=group,
            max_completion_length=max_new,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            beta=TextGRPOConfig().beta,
            epsilon=0.2,
            loss_type="bnpo",
            scale_rewards="group",
            num_iterations=1,
            shuffle_dataset=False,
            disable_dropout=True,
            log_completions=False,
        )
        trainer = _recording(GRPOTrainer)(
            model=path,
            reward_funcs=review_gold,
            args=args,
            train_dataset=ds,
            processing_class=load_tokenizer(path),
        )
        return _run_trl(trainer, warmup, steps, "GRPO", flop_params(trainer.model), threads, ours)


def _real_rows(ids: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
    """Each row's tokens where `mask` is set (padding dropped, wherever it is)."""
    return [row[m.bool()].tolist() for row, m in zip(ids, mask)]


def _check_same_tokens(trainer, data: Data, B: int, kind: str) -> None:
    """TRL's first collated batch holds exactly our encoded sequences, padding aside (so the data
    is the same, token for token)."""
    tokenizer = trainer.processing_class
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(B)])
    # at the model's context, as our training functions encode (a cut prompt would show here)
    at_context = functools.partial(encode, max_length=context_length(trainer.model))
    theirs = _real_rows(batch["input_ids"], batch["attention_mask"])
    if kind == "sft":
        ours = at_context(tokenizer, data.prompts[:B], data.responses[:B])
        targets = (batch["labels"] != -100).float()
        same = theirs == _real_rows(ours.input_ids, ours.attention_mask) and _real_rows(
            targets[:, 1:], batch["attention_mask"][:, 1:]
        ) == _real_rows(ours.response_mask[:, 1:], ours.attention_mask[:, 1:])
    else:
        c = at_context(tokenizer, data.prompts[:B], data.chosen[:B])
        r = at_context(tokenizer, data.prompts[:B], data.rejected[:B])
        same = theirs == _real_rows(c.input_ids, c.attention_mask) + _real_rows(
            r.input_ids, r.attention_mask
        )
        if kind == "dpo":
            same = same and _real_rows(
                batch["completion_mask"], batch["attention_mask"]
            ) == _real_rows(c.response_mask, c.attention_mask) + _real_rows(
                r.response_mask, r.attention_mask
            )
    if not same:
        raise SystemExit(
            f"TRL's {kind} batch differs from ours: the comparison would not be on the same data"
        )


# -- reporting --------------------------------------------------------------------------------
def fmt_rate(x: float) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:,.0f}"


def results_rows(results: list[Measurement], peak: float) -> list[list[str]]:
    rows = []
    trl = {(m.point, m.method): m for m in results if m.impl == "TRL"}
    for m in results:
        if m.impl != "rlhflab":
            continue
        t = trl.get((m.point, m.method))
        ratio = (m.ratio_vs_trl or m.tokens_per_second / t.tokens_per_second) if t else None
        for impl in (m, t) if t else (m,):
            rows.append(
                [
                    impl.point,
                    impl.method,
                    impl.impl,
                    f"{impl.n_params / 1e6:.3f}M",
                    str(impl.seqs_per_step),
                    f"{impl.tokens_per_step:,.0f}",
                    f"{impl.seconds_per_step:.3f}",
                    f"{impl.min_seconds_per_step:.3f}",
                    fmt_rate(impl.tokens_per_second),
                    f"{100 * impl.mfu(peak):.1f}%",
                    f"{100 * impl.best_mfu(peak):.1f}%",
                    (f"{ratio:.2f}×" + (" ✓" if ratio >= SPEED_TARGET else " ✗"))
                    if impl is m and t
                    else ("" if t else (m.note or "n/a")),
                    ", ".join(f"{x:.2f}" for x in m.round_ratios) if impl is m and t else "",
                ]
            )
    return rows


HEADERS = [
    "point",
    "method",
    "impl",
    "N",
    "seqs/step",
    "tokens/step",
    "s/step (median)",
    "s/step (min)",
    "tokens/s (median)",
    "MFU (median)",
    "MFU (best step)",
    f"ours/TRL (target ≥ {SPEED_TARGET}×)",
    "ours/TRL per round",
]


def loss_rows(results: list[Measurement], n_show: int) -> tuple[list[str], list[list[str]], dict]:
    verdict = {}
    headers = ["point", "step"]
    pairs = []
    for m in results:
        if m.impl == "rlhflab" and m.method in ("SFT", "reward model", "DPO"):
            t = next(
                (
                    x
                    for x in results
                    if x.impl == "TRL" and x.point == m.point and x.method == m.method
                ),
                None,
            )
            if t:
                pairs.append((m, t))
    methods = list(dict.fromkeys(m.method for m, _ in pairs))
    for meth in methods:
        headers += [f"{meth} ours", f"{meth} TRL", "|Δ|"]
    rows = []
    for point in dict.fromkeys(m.point for m, _ in pairs):
        by = {m.method: (m, t) for m, t in pairs if m.point == point}
        for s in range(min(n_show, max(min(len(m.losses), len(t.losses)) for m, t in by.values()))):
            row = [point, str(s + 1)]
            for meth in methods:
                if meth in by and s < min(len(by[meth][0].losses), len(by[meth][1].losses)):
                    a, b = by[meth][0].losses[s], by[meth][1].losses[s]
                    row += [f"{a:.6f}", f"{b:.6f}", f"{abs(a - b):.1e}"]
                else:
                    row += ["", "", ""]
            rows.append(row)
        for meth, (m, t) in by.items():
            k = min(n_show, len(m.losses), len(t.losses))
            d = [abs(m.losses[s] - t.losses[s]) for s in range(k)]
            verdict[f"{point}/{meth}"] = {
                "step1_abs_diff": d[0],
                "max_abs_diff_first_steps": max(d),
                "steps": k,
                "step1_ours": m.losses[0],
                "step1_trl": t.losses[0],
            }
    return headers, rows, verdict


def rich_table(title: str, headers: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title)
    for h in headers:
        table.add_column(h, justify="left" if h in ("point", "method", "impl") else "right")
    for r in rows:
        table.add_row(*r)
    return table


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


# -- main -------------------------------------------------------------------------------------
def run_point(
    name: str, args, trl_version: str | None, ppo_where: str | None, checks: dict
) -> tuple[list[Measurement], dict]:
    n_layer, n_embd, n_head = POINTS[name]
    task = ReviewsTask()
    B, W, S = args.batch, args.warmup, args.steps
    tokenizer = build_word_tokenizer(task.vocabulary)
    model = tiny_gpt2(
        len(tokenizer), n_layer, n_embd, n_head=n_head, n_positions=args.seq_len, seed=args.seed
    )
    # token ids the tokenizer really has (tiny_gpt2 leaves GPT-2's 50256 in the config)
    model.config.bos_token_id, model.config.eos_token_id, model.config.pad_token_id = (
        tokenizer.bos_token_id,
        tokenizer.eos_token_id,
        tokenizer.pad_token_id,
    )
    n_ppo = args.ppo_prompts or 2 * B
    n_grpo, G = args.grpo_prompts, args.grpo_group
    results: list[Measurement] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = str(save_model(model, tokenizer, Path(tmp) / "model"))
        tokenizer = load_tokenizer(path)
        data = build_data(
            task, tokenizer, (W + S) * B, (W + S) * n_ppo, args.seq_len, args.seed, args.lengths
        )
        console.print(
            f"[bold]{name}[/bold]: GPT-2 {n_layer} layers × {n_embd} wide, {n_head} heads, vocab "
            f"{len(tokenizer)}, "
            f"N = {flop_params(model):,}, sequences of {args.seq_len} tokens, batch {B}  (load "
            f"{load_avg()})"
        )
        methods, R = args.methods, args.rounds
        prompt_len = len(tokenizer(data.ppo_prompts[0], add_special_tokens=False)["input_ids"])
        grpo_new = args.grpo_new_tokens or args.seq_len - prompt_len - 1
        n_steps = W + S
        runners = {  # (label, our side factory, TRL runner)
            "sft": (
                "SFT",
                lambda: ours_sft(path, data, B, n_steps),
                lambda side: trl_sft(path, data, B, W, S, args.seed, args.threads, side),
            ),
            "rm": (
                "reward model",
                lambda: ours_rm(path, data, B, n_steps, args.seed)[0],
                lambda side: trl_rm(
                    path,
                    data,
                    B,
                    W,
                    S,
                    args.seed,
                    args.threads,
                    ours_rm(path, data, B, 0, args.seed)[1],
                    side,
                ),
            ),
            "dpo": (
                "DPO",
                lambda: ours_dpo(path, data, B, n_steps),
                lambda side: trl_dpo(path, data, B, W, S, args.seed, args.threads, side),
            ),
            "grpo": (
                "GRPO",
                lambda: ours_grpo(path, data, n_grpo, G, grpo_new, args.seed),
                lambda side: trl_grpo(
                    path, data, n_grpo, G, grpo_new, W, S, args.seed, args.threads, side
                ),
            ),
        }
        for key, (label, make_ours, run_trl) in runners.items():
            if key not in methods:
                continue
            pairs: list[tuple[Measurement | None, Measurement]] = []
            for r in range(R):
                if PRECISION["clock"] == "wall":  # CPU time does not change with the load
                    sample_peak(2)
                console.print(
                    f"  {label}: "
                    f"{'rlhflab and TRL, interleaved steps' if trl_version else 'rlhflab'}, round "
                    f"{r + 1}/{R}  (load {load_avg()})"
                )
                side = make_ours()
                side.step = with_precision(side.step)
                pairs.append(run_trl(side) if trl_version else (None, side.alone(W, S)))
            ours_m = pooled([o for _, o in pairs])
            if trl_version:
                trl_m = pooled([t for t, _ in pairs])
                # tokens/s of each step pair; a GRPO step's tokens depend on what was sampled,
                # so each side's step times are scaled by its own mean tokens per step
                per_round = [
                    [
                        (t_ / t.tokens_per_step) / (o_ / o.tokens_per_step)
                        for t_, o_ in zip(t.step_times, o.step_times)
                    ]
                    for t, o in pairs
                ]
                ours_m.paired_ratios = [x for rnd in per_round for x in rnd]
                ours_m.round_ratios = [statistics.median(rnd) for rnd in per_round]
                results += [ours_m, trl_m]
                console.print(  # as it comes, so that a run cut short still leaves its numbers
                    f"    {label}: ours/TRL per round "
                    f"{', '.join(f'{x:.2f}' for x in ours_m.round_ratios)} (median of all pairs "
                    f"{ours_m.ratio_vs_trl:.2f}); s/step ours {ours_m.seconds_per_step:.4f}, TRL "
                    f"{trl_m.seconds_per_step:.4f}; tokens/step ours "
                    f"{ours_m.tokens_per_step:,.0f}, TRL {trl_m.tokens_per_step:,.0f}; "
                    "first losses ours "
                    f"{[round(x, 6) for x in ours_m.losses[:3]]}, TRL "
                    f"{[round(x, 6) for x in trl_m.losses[:3]]}"
                )
            else:
                results.append(ours_m)
        if args.check_loops:
            console.print("  checking our loops against train_sft / train_dpo …")
            checks[name] = check_loops(
                path,
                data,
                B,
                W + S,
                args.seed,
                {m.method: m for m in results if m.impl == "rlhflab"},
            )
        breakdown = {}
        if "ppo" in methods:
            rounds = []
            for r in range(R):
                sample_peak(2)
                console.print(f"  PPO: rlhflab, round {r + 1}/{R}  (load {load_avg()})")
                rounds.append(
                    ours_ppo(
                        path,
                        data,
                        n_ppo,
                        args.ppo_minibatches,
                        args.ppo_epochs,
                        args.seq_len,
                        W,
                        S,
                        args.seed,
                    )
                )
            upd = best_round([x[0] for x in rounds])
            i_e2e = min(range(R), key=lambda i: rounds[i][1].seconds_per_step)
            e2e = best_round([x[1] for x in rounds])
            breakdown = rounds[i_e2e][2]
            why = (
                "n/a: no PPO trainer in TRL " + (trl_version or "(not installed)")
                if not ppo_where
                else "n/a: not run"
            )
            upd.note = e2e.note = why
            results += [upd, e2e]
    for m in results:
        m.point = name
    return results, breakdown


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--points", default="small,main", help=f"model sizes to measure, from {', '.join(POINTS)}"
    )
    p.add_argument(
        "--methods", default="sft,rm,dpo,ppo,grpo", help="any of sft, rm, dpo, ppo, grpo"
    )
    p.add_argument(
        "--steps",
        type=int,
        default=20,
        help="timed optimiser steps (PPO: iterations) per method and side",
    )
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before timing")
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat each measurement on a fresh model (ours vs TRL: steps of all rounds pooled; "
        "PPO: the fastest round counts)",
    )
    p.add_argument(
        "--batch",
        type=int,
        default=16,
        help="sequences per SFT step; pairs per reward-model and DPO step",
    )
    p.add_argument(
        "--seq-len", type=int, default=64, help="tokens per sequence ([prompt | response | EOS])"
    )
    p.add_argument(
        "--lengths",
        choices=("fixed", "varied"),
        default="fixed",
        help="responses that fill --seq-len exactly (no padding), or of uniformly drawn lengths",
    )
    p.add_argument(
        "--ppo-prompts",
        type=int,
        default=0,
        help="prompts per PPO iteration (default: 2 × --batch, the sequences of a pair batch)",
    )
    p.add_argument("--grpo-prompts", type=int, default=4, help="prompts per GRPO step")
    p.add_argument("--grpo-group", type=int, default=8, help="GRPO samples per prompt (G)")
    p.add_argument(
        "--grpo-new-tokens",
        type=int,
        default=0,
        help="GRPO max new tokens (default: what fills --seq-len)",
    )
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default="fp32",
        help="both sides: fp32, or bf16 autocast (ours torch.autocast, TRL bf16=True)",
    )
    p.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="time steps by wall clock, or by this process's CPU time (a loaded machine; use "
        "with --threads 1, where idle threads cannot spin)",
    )
    p.add_argument(
        "--no-packing",
        action="store_true",
        help="ablation: our side's forwards padded (no packing, LM head on every kept position)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="our side with its transformer under torch.compile (dynamic shapes)",
    )
    p.add_argument("--ppo-minibatches", type=int, default=2, help="PPO minibatches per epoch")
    p.add_argument("--ppo-epochs", type=int, default=2, help="PPO epochs per iteration")
    p.add_argument(
        "--threads", type=int, default=2, help="torch threads, for both sides and the peak"
    )
    p.add_argument("--peak-repeats", type=int, default=5, help="torch.mm repeats for the peak")
    p.add_argument(
        "--show-losses", type=int, default=5, help="first step losses to print side by side"
    )
    p.add_argument(
        "--loss-tol",
        type=float,
        default=1e-4,
        help="|ours − TRL| at step 1 that counts as matching",
    )
    p.add_argument("--no-trl", action="store_true", help="measure our side only")
    p.add_argument(
        "--check-loops",
        action="store_true",
        help="also run train_sft / train_dpo themselves on the same batches and compare",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: the small point, 3 timed steps after 1 warm-up",
    )
    p.add_argument("--json", type=Path, help="write the raw results here")
    p.add_argument("--markdown", type=Path, help="write the tables as Markdown here")
    args = p.parse_args(argv)
    if args.quick:
        args.points, args.steps, args.warmup, args.peak_repeats, args.rounds = "small", 3, 1, 3, 1
    args.points = [x.strip() for x in args.points.split(",") if x.strip()]
    args.methods = [x.strip() for x in args.methods.split(",") if x.strip()]
    unknown = [x for x in args.points if x not in POINTS] + [
        x for x in args.methods if x not in ("sft", "rm", "dpo", "ppo", "grpo")
    ]
    if unknown:
        p.error(f"unknown point or method: {', '.join(unknown)}")
    warnings.filterwarnings("ignore")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        import datasets

        datasets.disable_progress_bars()
    except ImportError:
        pass
    torch.set_num_threads(args.threads)
    PRECISION["dtype"] = torch.bfloat16 if args.precision == "bf16" else torch.float32
    PRECISION["compile"] = args.compile
    if args.no_packing:  # the ablation: every forward of ours padded, as before packing
        packing.PACKABLE.clear()
    PRECISION["clock"] = args.clock

    trl_version = None if args.no_trl else trl_available()
    ppo_where = trl_has_ppo() if trl_version else None
    uptime_before = load_avg()
    started = time.time()
    peak_before = sample_peak(args.peak_repeats)
    console.print(
        f"threads {torch.get_num_threads()}, {args.precision} matmul peak "
        f"{peak_before / 1e9:.1f} GFLOP/s, "
        f"load average {uptime_before}, "
        f"TRL {trl_version or 'not used'}" + (f" (PPO: {ppo_where})" if trl_version else "")
    )
    results, breakdowns, checks = [], {}, {}
    for point in args.points:
        r, b = run_point(point, args, trl_version, ppo_where, checks)
        results += r
        if b:
            breakdowns[point] = b
    peak_after = sample_peak(args.peak_repeats)
    peak = max(PEAKS)
    uptime_after = load_avg()

    rows = results_rows(results, peak)
    console.print(
        rich_table(
            f"Training throughput ({args.precision}, {args.threads} threads, {args.clock} clock, "
            f"{args.lengths} lengths{', compiled' if args.compile else ''}"
            f"{', no packing' if args.no_packing else ''}, peak "
            f"{peak / 1e9:.1f} GFLOP/s)",
            HEADERS,
            rows,
        )
    )
    b_headers = [
        "point",
        "prompts",
        "max new tokens",
        "response tokens (mean)",
        "trained tokens/iter",
        "incl. padding",
        "generate s",
        "rollout s",
        "update s",
        "total s/iter",
    ]
    b_rows = [
        [
            pt,
            str(b["prompts"]),
            str(b["max_new_tokens"]),
            f"{b['response_tokens']:.1f}",
            f"{b['trained_tokens']:,.0f}",
            f"{b['padded_tokens']:,.0f}",
            f"{b['generate']:.2f}",
            f"{b['rollout']:.2f}",
            f"{b['update']:.2f}",
            f"{b['total']:.2f}",
        ]
        for pt, b in breakdowns.items()
    ]
    if b_rows:
        console.print(rich_table("PPO iteration (TextPPO.step), medians", b_headers, b_rows))
    l_headers, l_rows, verdict = loss_rows(results, args.show_losses)
    if l_rows:
        console.print(rich_table("First step losses, same init and batches", l_headers, l_rows))
        for key, v in verdict.items():
            ok = v["step1_abs_diff"] <= args.loss_tol
            console.print(
                f"  {key}: step 1 {'matches' if ok else 'DIFFERS'} (|Δ| = "
                f"{v['step1_abs_diff']:.1e}); "
                f"max |Δ| over the first {v['steps']} steps {v['max_abs_diff_first_steps']:.1e}"
            )
            if key.endswith("/DPO"):
                console.print(
                    f"    DPO step 1: ours {v['step1_ours']:.6f}, TRL {v['step1_trl']:.6f}, log 2 "
                    f"= {math.log(2):.6f}"
                )
    for point, c in checks.items():
        for meth, v in c.items():
            console.print(
                f"  {point}/{meth}: {v['train_fn']} epoch-mean loss {v['epoch_mean_loss']:.6f} vs "
                f"our loop's {v['our_loop_mean_loss']:.6f}; "
                f"{v['train_fn']} {v['s_per_step']:.3f} s/step (all steps, warm-up included)"
            )
    if trl_version and not ppo_where:
        console.print(
            f"PPO vs TRL: n/a — TRL {trl_version} has no PPO trainer (neither trl.PPOTrainer nor "
            f"trl.experimental.ppo; "
            "it was moved to trl.experimental.ppo and later removed, huggingface/trl#7020)."
        )
    ratios = {
        f"{m.point}/{m.method}": (m.ratio_vs_trl or m.tokens_per_second / t.tokens_per_second)
        for m in results
        if m.impl == "rlhflab"
        for t in results
        if t.impl == "TRL" and t.point == m.point and t.method == m.method
    }
    if ratios:
        met = [k for k, v in ratios.items() if v >= SPEED_TARGET]
        console.print(
            f"speed target ≥ {SPEED_TARGET}× TRL: met for {', '.join(met) or 'none'}; "
            f"not met for {', '.join(k for k in ratios if k not in met) or 'none'}"
        )
    console.print(
        f"load average before {uptime_before}, after {uptime_after}; peak samples "
        f"{min(PEAKS) / 1e9:.1f}–{peak / 1e9:.1f} GFLOP/s "
        f"(median {statistics.median(PEAKS) / 1e9:.1f}, {len(PEAKS)} samples; MFU uses the best); "
        f"wall {time.time() - started:.0f}s"
    )

    meta = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python bench/text_throughput.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "threads": args.threads,
        "clock": args.clock,
        "lengths": args.lengths,
        "compile": args.compile,
        "packing": not args.no_packing,
        "peak_flops": peak,
        "peak_before": peak_before,
        "peak_after": peak_after,
        "peak_samples": PEAKS,
        "load_before": uptime_before,
        "load_after": uptime_after,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl_version,
        "trl_ppo": ppo_where,
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "steps": args.steps,
        "warmup": args.warmup,
        "batch": args.batch,
        "seq_len": args.seq_len,
        "precision": args.precision,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "meta": meta,
                    "results": [
                        {**asdict(m), "tokens_per_second": m.tokens_per_second, "mfu": m.mfu(peak)}
                        for m in results
                    ],
                    "ppo": breakdowns,
                    "losses": verdict,
                    "ratios": ratios,
                    "loop_checks": checks,
                },
                indent=2,
            )
        )
    if args.markdown:
        md = [markdown_table(HEADERS, rows)]
        if b_rows:
            md += ["", markdown_table(b_headers, b_rows)]
        if l_rows:
            md += ["", markdown_table(l_headers, l_rows)]
        args.markdown.write_text("\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
