"""Data-parallel training across processes with torch.distributed (gloo on CPUs, nccl on GPUs).

W processes (ranks) hold the same model. Every rank draws the same global minibatch B (same
seed), takes its shard S_r of it (`shard`), and computes the loss on S_r. The loss each rank
back-propagates is weighted by its share of what the loss averages over (response tokens for
SFT, pairs for the reward model and DPO, response tokens in PPO/GRPO/RLOO minibatches):

    L = Σ_r w_r·L_r,   w_r = n_r / Σ_s n_s,   ∇L = Σ_r w_r·∇L_r   (`share`, `sync_gradients`)

so the summed gradient is the single-process gradient of the whole minibatch (exactly for a
mean loss, up to float rounding), whatever the shards' sizes. The optimiser then takes the same
step on every rank, and the parameters stay equal without being sent again (they are
broadcast from rank 0 once, when training starts: `broadcast_parameters`). This is what
PyTorch's DistributedDataParallel does (Li et al. 2020, "PyTorch Distributed"), written out
because our updates weight shards unequally and step several models (ensemble members, a
value head) with one optimiser.

On GPUs each rank computes on the GPU of its local rank, cuda:LOCAL_RANK (`place`): models and
batches are made there, and the collectives go through nccl; on CPUs through gloo.

Processes are started by torchrun (`rlhflab run --nproc N` starts it: `torch.distributed.run`),
which sets RANK, WORLD_SIZE and MASTER_ADDR/PORT; `init_from_env` joins the group. Without
those variables, or in a block marked `only_here()` (work one rank does alone, such as asking
the annotators), every function here is the single-process identity, so the training code has
one path.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

# how long a rank waits for the others at a collective: rank 0 may be gathering labels
# from people while the others wait for them (torchrun stops every rank if one dies)
TIMEOUT = timedelta(hours=6)

_alone = 0  # depth of `only_here()` blocks


def init_from_env() -> bool:
    """Join the process group torchrun describes (WORLD_SIZE > 1); False when run alone."""
    if dist.is_initialized():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    # each collective goes to the backend of its tensors' device: gloo on CPUs, nccl on GPUs
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend, timeout=TIMEOUT)
    return True


class DeviceError(RuntimeError):
    """The device asked for is not there."""


def device(choice: str = "auto") -> torch.device:
    """The device this process computes on: the GPU of its local rank, cuda:LOCAL_RANK (torchrun
    sets LOCAL_RANK; 0 alone), when CUDA is available ('auto') or asked for ('cuda'); else the
    CPU."""
    if choice not in ("auto", "cpu", "cuda"):
        raise DeviceError(f"device={choice!r}: expected auto, cpu or cuda")
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DeviceError("device=cuda: CUDA is not available to PyTorch on this machine")
    index = int(os.environ.get("LOCAL_RANK", "0"))
    if index >= torch.cuda.device_count():
        raise DeviceError(
            f"device=cuda: local rank {index} has no GPU (this node has "
            f"{torch.cuda.device_count()}); start one process per GPU"
        )
    return torch.device("cuda", index)


def place(choice: str = "auto") -> torch.device:
    """Make `device(choice)` where this process computes: on a GPU it becomes CUDA's current
    device (nccl's collectives use it) and torch's default device, so every model and batch
    made from here on — models loaded by `load_causal_lm`, token batches, losses — is made on
    it. On the CPU nothing changes."""
    where = device(choice)
    if where.type == "cuda":
        torch.cuda.set_device(where)
        torch.set_default_device(where)
    return where


def close() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    return _alone == 0 and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    """This process's rank (also inside `only_here()`: rank 0 is still the main process)."""
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    """Rank 0 writes the run: logs, checkpoints, the feedback store, the report."""
    return rank() == 0


@contextlib.contextmanager
def only_here() -> Iterator[None]:
    """Work this rank does on its own (no collectives inside): training in it is local."""
    global _alone
    _alone += 1
    try:
        yield
    finally:
        _alone -= 1


def shard(items: np.ndarray | torch.Tensor | list, axis: int = 0) -> Any:
    """This rank's contiguous part of a global batch (all of it when alone)."""
    if not active():
        return items
    parts = np.array_split(np.arange(np.shape(items)[axis]), world_size())[rank()]
    if isinstance(items, list):
        return [items[i] for i in parts]
    if isinstance(items, torch.Tensor):
        return items.index_select(axis, torch.as_tensor(parts, dtype=torch.long))
    return np.take(items, parts, axis=axis)


def all_reduce(x: torch.Tensor) -> torch.Tensor:
    """The sum over ranks (x itself when alone); x is not modified."""
    if not active():
        return x
    out = x.detach().clone()
    dist.all_reduce(out)
    return out


def total(n: float) -> float:
    return float(all_reduce(torch.tensor(float(n), dtype=torch.float64)))


def share(n: float) -> float:
    """w_r = n_r / Σ_s n_s: this rank's weight in a loss averaged over n items globally."""
    whole = total(n)
    return n / whole if whole > 0 else 0.0


def sync_gradients(params: Iterable[torch.Tensor]) -> None:
    """Σ_r of every parameter's gradient, in one flat all-reduce; a rank without a gradient
    for a parameter (an empty shard) contributes zeros."""
    if not active():
        return
    params = [p for p in params if p.requires_grad]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    for p, g in zip(params, _pieces(flat, grads)):
        p.grad = g.clone()


def broadcast_parameters(params: Iterable[torch.Tensor]) -> None:
    """Rank 0's values into every rank's parameters (the same start everywhere)."""
    if not active():
        return
    params = list(params)
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    dist.broadcast(flat, 0)
    with torch.no_grad():
        for p, value in zip(params, _pieces(flat, params)):
            p.copy_(value)


def _pieces(flat: torch.Tensor, like: list[torch.Tensor]) -> list[torch.Tensor]:
    """`flat` (the tensors of `like`, flattened and concatenated) cut back into their shapes."""
    return [x.view_as(t) for x, t in zip(flat.split([t.numel() for t in like]), like)]


def broadcast_object(obj: Any) -> Any:
    """Rank 0's object on every rank (pickled)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, 0)
    return box[0]


def gather_objects(items: list) -> list:
    """Every rank's list, concatenated in rank order."""
    if not active():
        return items
    parts: list[Any] = [None] * world_size()
    dist.all_gather_object(parts, items)
    return [x for part in parts for x in part]


def weighted_mean(value: torch.Tensor | float, n: float) -> float:
    """The global mean of a per-rank mean over n_r items."""
    if not active():
        return float(value)
    return float(all_reduce(torch.tensor(float(value) * n, dtype=torch.float64))) / max(
        total(n), 1e-12
    )


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The mean of x's (masked) entries over every rank's x."""
    m = torch.ones_like(x) if mask is None else mask
    return all_reduce((x * m).sum()) / all_reduce(m.sum()).clamp_min(1)
