"""Direct preference optimisation: the policy itself as the reward model.

DPO (Rafailov et al. 2023). With h = [log π(y_w|x) − log π_ref(y_w|x)] − [log π(y_l|x) − log
π_ref(y_l|x)]:
    L_DPO  = −log σ(β·h)
Conservative / label-smoothed DPO (Mitchell 2023), assuming labels flipped with rate ε:
    L_cDPO = −(1 − ε)·log σ(β·h) − ε·log σ(−β·h)
— exactly the Bradley–Terry cross-entropy with target 1 − ε on implicit rewards β·log(π/π_ref),
so it is computed by `bradley_terry_loss`.
IPO (Azar et al. 2023), which does not let h grow without bound on deterministic preferences:
    L_IPO  = (h − 1/(2β))²
"""

from __future__ import annotations

import torch

from rlhflab import distributed
from rlhflab.policy.sft import fit_epochs
from rlhflab.reward.losses import bradley_terry_loss
from rlhflab.text.models import context_length
from rlhflab.text.sequences import encode, token_logprobs


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
    kind: str = "sigmoid",
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Mean loss over pairs; inputs are summed response log-probabilities, shape [B]."""
    chosen, rejected = policy_chosen - ref_chosen, policy_rejected - ref_rejected
    if kind == "sigmoid":
        return bradley_terry_loss(
            beta * chosen, beta * rejected, torch.full_like(chosen, 1.0 - label_smoothing)
        )
    if kind == "ipo":
        return ((chosen - rejected - 1.0 / (2.0 * beta)) ** 2).mean()
    raise ValueError(f"unknown DPO loss '{kind}' (use sigmoid or ipo)")


def sequence_logprob(model, batch) -> torch.Tensor:
    """Σ_t log π(y_t | x, y_<t) over each row's response tokens."""
    return token_logprobs(model, batch).sum(1)


def train_dpo(
    policy, reference, tokenizer, pairs: list[tuple[str, str, str]], cfg, seed: int = 0, on_log=None
) -> list[float]:
    """Fine-tune `policy` in place on (prompt, chosen, rejected) triples; `reference` stays frozen,
    so its log-probabilities are computed once, before training (across processes, each rank
    computes its shard of them and the shards are summed into every rank's copy)."""

    length = context_length(policy)

    def both(model, idx) -> tuple[torch.Tensor, torch.Tensor]:
        """log π of the chosen and the rejected responses of pairs idx, in one forward of
        [chosen; rejected] (one batch of 2B rows, as TRL's concatenated forward)."""
        prompts = [pairs[i][0] for i in idx]
        responses = [pairs[i][1] for i in idx] + [pairs[i][2] for i in idx]
        logp = sequence_logprob(model, encode(tokenizer, prompts * 2, responses, length))
        return logp[: len(idx)], logp[len(idx) :]

    ref_c, ref_r = torch.zeros(len(pairs)), torch.zeros(len(pairs))
    reference.eval()
    with torch.no_grad():
        mine = distributed.shard(list(range(len(pairs))))
        for start in range(0, len(mine), 64):
            idx = mine[start : start + 64]
            ref_c[idx], ref_r[idx] = both(reference, idx)
    ref_c, ref_r = distributed.all_reduce(ref_c), distributed.all_reduce(ref_r)

    def loss(idx) -> torch.Tensor:
        chosen, rejected = both(policy, idx)
        idx = torch.as_tensor(idx)
        return dpo_loss(
            chosen,
            rejected,
            ref_c[idx],
            ref_r[idx],
            cfg.beta,
            cfg.loss,
            cfg.label_smoothing,
        )

    return fit_epochs(
        policy,
        loss,
        len(pairs),
        cfg.epochs,
        cfg.lr,
        cfg.batch_size,
        seed,
        "dpo",
        on_log,
        dropout=False,  # as the reference's log-probs: the log-ratio is 0 at step 0
    )
