"""How a text run scores each method's policy, on held-out prompts the policy never trained on:

  gold          the task's own reward of the responses (known for the built-in task);
  proxy         what the method optimised: the reward model, or the reward functions;
  KL            KL(π ‖ π_SFT) estimated on the policy's own samples,
                    KL ≈ E_{y∼π} [ Σ_t log π(y_t | x, y_<t) − log π_SFT(y_t | x, y_<t) ]
                (the quantity on the x-axis of Gao et al. 2022's over-optimisation curves);
  distinct-2    the share of distinct bigrams (Li et al. 2016): mode collapse shows here;
  words         the mean response length (length is the best-known reward hack);
and for a task with content nobody wants, the rate of undesirable responses (the task's gold
detector) on the evaluation prompts and on its red-team prompts (Korbak et al. 2023).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from rlhflab.diagnostics.diversity import distinct_n
from rlhflab.text.sequences import token_logprobs


def sampled_kl(model, reference, batch, temperature: float) -> float:
    """KL(π ‖ π_ref) on a batch of π's samples: the mean over sequences of Σ_t log-ratio."""
    with torch.no_grad():
        logp = token_logprobs(model, batch, temperature)
        logp_ref = logp if model is reference else token_logprobs(reference, batch, temperature)
    return float((logp - logp_ref).sum(1).mean())


def undesirable_rate(task, texts: Sequence[str]) -> float:
    """Share of responses the task's gold detector flags."""
    return float(np.mean([task.undesirable(t) > 0 for t in texts]))


def score_responses(
    task,
    texts: list[str],
    kl: float,
    proxy: torch.Tensor | np.ndarray | None = None,
    red_team: list[str] | None = None,
) -> dict:
    """One method's scores: gold, proxy (its scores of `texts`, if it has one), KL, distinct-2,
    length and a few samples; with `red_team` (responses to the red-team prompts), the
    undesirable rates too."""
    result = {
        "gold": float(np.mean([task.gold(t) for t in texts])),
        "proxy": float(np.asarray(proxy).mean()) if proxy is not None else None,
        "kl": kl,
        "distinct_2": distinct_n([t.split() for t in texts], 2),
        "response_words": float(np.mean([len(t.split()) for t in texts])),
        "samples": texts[:5],
    }
    if red_team is not None:
        result["undesirable"] = undesirable_rate(task, texts)
        result["red_team_undesirable"] = undesirable_rate(task, red_team)
        result["red_team_samples"] = red_team[:5]
    return result
