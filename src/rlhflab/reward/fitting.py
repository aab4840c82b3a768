"""One fitting routine for every reward model: a bootstrapped ensemble trained by minibatch
AdamW with early stopping on comparisons split by query id (Christiano et al. 2017, §2.2.3;
InstructGPT's reward model, Ouyang et al. 2022, §3.5, is the one-member case).

The control ensemble (`reward/model.py`, segments of (o, a) steps, r̂ summed) and the text
ensemble (`reward/text.py`, a transformer scoring a prompt and response) share everything
here; each only says how its members turn a batch of comparisons into losses:

    L_m(θ_m) = mean_{i ∈ B_m} ℓ_m(i),   B_m ~ Uniform(bootstrap_m)   (B comparisons per step)

summed over members m (their parameters are disjoint, so each member follows its own loss).
ℓ is the Bradley–Terry or K-wise ranking cross-entropy of `reward/losses.py`.

- **Split by query id** (`split`): with `validation=held_out` a query is held out when
  `is_validation(query_id, val_fraction)` — every judgement of one query (overlap > 1) falls
  on the same side, across refits and resumes; with `out_of_bag` each member validates on the
  comparisons its bootstrap left out (≈ 1/e of them). A single member validated on the held-out
  split trains on the whole training split: a resample would only discard labels.
- **Early stopping**: every max(epoch, 10) steps each member's validation loss is measured;
  a member's best parameters are kept, and the fit stops once none has improved (by 1e-4) for
  `patience` checks, or after `max_epochs` epochs. A member with no validation data keeps its
  latest parameters.
- **Warm start**: refits continue from the members' weights and optimiser state; only a
  first (or reset, "cold") fit runs at least `min_steps` steps.
- **Weight decay** is the optimiser's (AdamW, from the config); `max_grad_norm` clips each
  member's gradient separately.
- `trim` > 0 leaves out each step's largest losses (`trimmed_mean`, the robust loss).
- **Across processes** (`rlhflab/distributed.py`): every rank draws the same minibatch and
  takes its shard of it, weighted by its share of the batch; gradients are summed, so a step is
  the single-process step. Validation losses are sharded and summed likewise. The trimmed loss
  needs the whole batch's losses in one place, so `trim` > 0 runs in one process only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from rlhflab import distributed
from rlhflab.reward.losses import trimmed_mean


def is_validation(query_id: int, fraction: float) -> bool:
    """A fixed, seed-free held-out split: query i is held out when frac(i·φ) < fraction.

    The golden-ratio sequence spreads held-out queries evenly and never moves a query
    between splits, so validation accuracy stays honest across refits and resumes."""
    return (query_id * 0.6180339887498949) % 1.0 < fraction


class Members(Protocol):
    """An ensemble as the fitting routine sees it: per-member losses, per-member parameters."""

    def member_losses(self, idx: torch.Tensor, train: bool) -> torch.Tensor:
        """[M, B] loss of member m on comparison idx[m, b] (train: dropout etc. on)."""
        ...

    def member_parameters(self) -> list[list[torch.Tensor]]:
        """Member m's parameters (tensors or views) — what early stopping keeps per member."""
        ...


@dataclass(frozen=True)
class Schedule:
    """How long and on what a fit trains (read from `reward.*` or `text.reward.*`)."""

    batch_size: int
    max_epochs: int
    patience: int
    min_steps: int = 0  # of a first (cold) fit
    trim: float = 0.0
    max_grad_norm: float | None = None  # per member; needs the members' own Parameters


@dataclass
class Split:
    boot: np.ndarray  # [M, n] each member's bootstrap (indices into the comparisons)
    val: np.ndarray  # [M, N] True where member m validates on comparison i
    held: np.ndarray  # [N] True where the comparison is in the held-out split (no one trains)


def split(
    query_ids: list[int],
    members: int,
    validation: str,
    val_fraction: float,
    rng: np.random.Generator,
) -> Split | None:
    """Bootstrap resamples of the training comparisons and each member's validation set
    (None when nothing is left to train on)."""
    if validation == "held_out":
        held = np.array([is_validation(q, val_fraction) for q in query_ids], bool)
    else:
        held = np.zeros(len(query_ids), bool)
    train_idx = np.flatnonzero(~held)
    if len(train_idx) == 0:
        return None
    if members == 1 and validation == "held_out":
        boot = train_idx[None]
    else:
        boot = train_idx[rng.integers(len(train_idx), size=(members, len(train_idx)))]
    val = np.repeat(held[None], members, 0)
    if validation == "out_of_bag":
        val = np.ones((members, len(query_ids)), bool)
        for m in range(members):
            val[m, boot[m]] = False
    return Split(boot, val, held)


def fit_members(
    net: Members,
    optimizer: torch.optim.Optimizer,
    data: Split,
    schedule: Schedule,
    rng: np.random.Generator,
    cold: bool,
    on_check: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
) -> int:
    """Minibatch AdamW on each member's bootstrap with per-member early stopping; leaves each
    member at its best validation loss. Returns the gradient steps taken. `on_check(step,
    train_loss[M], val_loss[M])` is called at every validation check."""
    if schedule.trim > 0 and distributed.world_size() > 1:
        raise ValueError(
            "reward.trim > 0 (the trimmed loss) needs one process: run without --nproc"
        )
    boot, val = torch.as_tensor(data.boot), torch.as_tensor(data.val)
    M, n = boot.shape
    per_epoch = max(1, math.ceil(n / schedule.batch_size))
    every = max(per_epoch, 10)  # gradient steps between validation checks
    min_steps = schedule.min_steps if cold else 0  # warm-started refits need fewer
    max_steps = max(schedule.max_epochs * per_epoch, min_steps)
    has_val = val.any(1)
    # validate only on comparisons some member holds out (each rank on its shard of them)
    columns = distributed.shard(torch.as_tensor(np.flatnonzero(data.val.any(0))))
    val_idx, val_mask = columns.expand(M, -1), val[:, columns]
    params = net.member_parameters()
    flat_params = [p for member in params for p in member]
    distributed.broadcast_parameters(flat_params)
    best = torch.full((M,), float("inf"))
    best_state = [[p.detach().clone() for p in member] for member in params]
    waited = torch.zeros(M, dtype=torch.long)
    train_losses = []
    step = 0
    for step in range(1, max_steps + 1):
        pick = distributed.shard(
            torch.as_tensor(rng.integers(n, size=(M, min(schedule.batch_size, n)))), axis=1
        )
        weight = distributed.share(pick.shape[1])
        optimizer.zero_grad()
        member_loss = torch.zeros(M)
        if pick.shape[1]:
            member_loss = trimmed_mean(
                net.member_losses(torch.gather(boot, 1, pick), True), schedule.trim
            )
            (member_loss.sum() * weight).backward()
        distributed.sync_gradients(flat_params)
        if schedule.max_grad_norm is not None:
            for member in params:
                torch.nn.utils.clip_grad_norm_(member, schedule.max_grad_norm)
        optimizer.step()
        train_losses.append(distributed.all_reduce(member_loss.detach() * weight))
        if step % every and step != max_steps:
            continue
        with torch.no_grad():
            summed, counted = torch.zeros(M), val_mask.sum(1).float()
            if len(columns):
                summed = (net.member_losses(val_idx, False) * val_mask).sum(1)
            v = distributed.all_reduce(summed) / distributed.all_reduce(counted).clamp_min(1)
            better = (v < best - 1e-4) | ~has_val  # no validation data: keep the latest
            best = torch.where(better, v, best)
            waited = torch.where(better, 0, waited + 1)
            for m in np.flatnonzero(better.cpu().numpy()):
                for kept, p in zip(best_state[m], params[m]):
                    kept.copy_(p)
        if on_check is not None:
            on_check(step, torch.stack(train_losses).mean(0), torch.where(has_val, v, torch.nan))
        train_losses.clear()
        if step >= min_steps and bool((waited >= schedule.patience).all()):
            break
    with torch.no_grad():
        for kept_member, member in zip(best_state, params):
            for kept, p in zip(kept_member, member):
                p.copy_(kept)
    return step
