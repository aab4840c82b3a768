"""Waiting for people: block (visibly, and never forever) until enough judgements have arrived."""

from __future__ import annotations

import time
from collections.abc import Callable

from rlhflab.feedback.store import FeedbackStore


class LabelTimeout(TimeoutError):
    pass


def wait_for_labels(
    store: FeedbackStore,
    need: int,
    timeout: float,
    on_wait: Callable[[int, int], None] | None = None,
    poll: float = 0.5,
) -> int:
    """Return the number of judgements once it reaches `need`; LabelTimeout after `timeout`
    seconds."""
    started = time.monotonic()
    while (have := store.count_judgements()) < need:
        if time.monotonic() - started > timeout:
            raise LabelTimeout(f"waited {timeout:.0f} s for {need} labels; {have} arrived")
        if on_wait:
            on_wait(have, need)
        time.sleep(poll)
    return have


def people_hint(run_path) -> str:
    return (
        f"Serve the labeling app with `rlhflab label {run_path}`, add people with "
        f"`rlhflab annotators add NAME {run_path}`, then `rlhflab run --resume {run_path}`"
    )
