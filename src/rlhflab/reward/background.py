"""Reward-model fitting in a background process, off the policy's critical path.

Christiano et al. (2017, §2.1) run three processes asynchronously: the policy interacts
with the environment on the current r̂, the annotator judges pairs of segments, and the
reward model is fitted to the comparisons gathered so far. Here the policy and the
annotator share the main process and the reward ensemble (`RewardEnsemble`) is fitted
in a second process, so a refit costs the loop no wall time when the other core is free.

The worker owns the authoritative ensemble — its weights, optimiser state (refits are
warm-started), input statistics and bootstrap RNG — and returns a copy of that state
after every fit; the main process loads it into its own ensemble, which predicts r̂
and scores query candidates.

Departure from the paper's free-running processes: a fit submitted at one policy
iteration is collected at the next one (waiting for it if it has not finished), so the
policy sees r̂ one iteration later than a fit in line would give it, and a run gives the
same result for the same seed however fast the worker is.
"""

from __future__ import annotations

import multiprocessing
import signal
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import replace

import gymnasium as gym
import torch

from rlhflab.reward.model import RewardEnsemble
from rlhflab.reward.reliability import fit_reward
from rlhflab.types import Comparison

_worker: dict = {}  # in the worker: its ensemble and the comparisons it has been sent


def _start_worker() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    torch.set_num_threads(1)


def _fit(
    args: tuple, state: dict | None, new: list[Comparison], reset: bool, estimate: bool = False
) -> tuple[dict, dict]:
    """In the worker: take the model's `state` when sent, add the new comparisons, refit (with
    per-annotator estimates, `reward/reliability.py`, under "annotator_estimates")."""
    if state is not None:
        model = RewardEnsemble(*args)
        model.load_state_dict(state)
        _worker.update(model=model, comparisons=[])
    if reset:
        _worker["comparisons"].clear()
    _worker["comparisons"].extend(new)
    model = _worker["model"]
    metrics, estimates = fit_reward(model, _worker["comparisons"], model.cfg, estimate)
    if estimates:
        metrics["annotator_estimates"] = estimates
    return model.state_dict(), metrics


def _without_frames(c: Comparison) -> Comparison:
    """The comparison as the reward model reads it: people's clip frames stay behind."""
    return replace(c, left=replace(c.left, frames=None), right=replace(c.right, frames=None))


class BackgroundFitter:
    """Fits `model` in one worker process: `submit` the comparisons, `collect` later. In a
    daemonic process (which may not start children) the fit runs in line on a copy of the
    model, taken at `collect` all the same, so the run's result does not change."""

    def __init__(self, model: RewardEnsemble, obs_dim: int, space: gym.Space, seed: int):
        self.model = model
        self.args = (obs_dim, space, model.cfg, seed)
        self.pending: Future | None = None
        self.sent: list[int] | None = None  # judgement ids the worker holds; None: no model yet
        self.pool: ProcessPoolExecutor | None = None
        if not multiprocessing.current_process().daemon:
            self.pool = ProcessPoolExecutor(
                1, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker
            )
            self.pool.submit(int)  # the worker starts (and imports) while the loop begins

    def submit(self, comparisons: list[Comparison], estimate: bool = False) -> None:
        """Start a fit on every comparison (only the new ones cross to the worker); `estimate`:
        per-annotator reliability too (`reward/reliability.fit_reward`)."""
        if self.pending is not None:
            raise RuntimeError("collect the running fit before submitting another")
        ids = [c.judgement_id for c in comparisons]
        state = self.model.state_dict() if self.sent is None else None
        # the first fit, or labels corrected since the last one: the worker starts over
        reset = self.sent is None or ids[: len(self.sent)] != self.sent
        sent = 0 if reset or self.sent is None else len(self.sent)
        new = [_without_frames(c) for c in comparisons[sent:]]
        self.sent = ids
        if self.pool is None:
            self.pending = Future()
            self.pending.set_result(_fit(self.args, state, new, reset, estimate))
        else:
            self.pending = self.pool.submit(_fit, self.args, state, new, reset, estimate)

    def collect(self) -> dict | None:
        """Wait for the running fit, load its result into the model; its metrics (None
        when nothing was running)."""
        if self.pending is None:
            return None
        state, metrics = self.pending.result()
        self.pending = None
        self.model.load_state_dict(state)
        return metrics

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
        _worker.clear()
        self.pending, self.sent = None, None
