"""Best-of-n sampling: draw n responses from the policy and keep the one the reward model likes
most.

Selection instead of training (Nakano et al. 2021; Gao et al. 2022). Its KL from the
sampling policy has a closed form (Stiennon et al. 2020, appendix; Gao et al. 2022):
    KL(π_best-of-n ‖ π) = log n − (n − 1)/n
(exact for continuous rewards without ties; an upper bound otherwise).
"""

from __future__ import annotations

import math

import torch

from rlhflab.text.sequences import generate


def best_of_n_kl(n: int) -> float:
    """KL(best-of-n ‖ base) = log n − (n − 1)/n for a proxy without ties."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    return math.log(n) - (n - 1) / n


def best_of_n(
    model,
    tokenizer,
    prompts: list[str],
    n: int,
    score,
    max_new_tokens: int,
    temperature: float,
    seed: int = 0,
) -> tuple[list[str], torch.Tensor]:
    """The highest-scoring of n samples for each prompt, and its score. `score(prompts, texts) ->
    [N]`."""
    candidates: list[list[str]] = []
    scored: list[torch.Tensor] = []
    for k in range(n):
        _, texts, _ended = generate(
            model, tokenizer, prompts, max_new_tokens, temperature, seed=seed + k
        )
        candidates.append(texts)
        scored.append(score(prompts, texts))
    scores = torch.stack(scored)  # [n, P]
    best = scores.argmax(0)
    return [candidates[int(b)][i] for i, b in enumerate(best)], scores.max(0).values
