"""Pretraining with human feedback (PHF): Step 0 of the built-in model with the feedback folded into
the pretraining objective (Korbak et al. 2023, "Pretraining Language Models with Human
Preferences").

Every document x of the corpus D is scored by the task's gold detector s(x) (for
`reviews-insults`, the number of insults aimed at people; x is undesirable when s(x) > 0).
`text.phf.objective` picks the loss:

    mle           L = −Σ_{x∈D} log π(x)                                  (ordinary pretraining)
    filtering     L = −Σ_{x∈D: s(x)=0} log π(x)
    conditional   L = −Σ_{x∈D} log π(c(x) x),   c(x) = <|good|> if s(x) = 0 else <|bad|>
    unlikelihood  L = −Σ_{x∈D} Σ_t [(1 − u_t)·log π(x_t | x_<t) + α·u_t·log(1 − π(x_t | x_<t))]

with u_t = 1 on the tokens of undesirable spans (Welleck et al. 2020's unlikelihood; α =
`text.phf.unlikelihood_alpha`). Conditional training samples conditioned on <|good|>: the saved
tokenizer's chat template puts the token before every prompt, so SFT, RL, the reward model and
evaluation all see "<|good|> review of the film :" with no other change. Losses are means over
tokens, as SFT's.

Equal compute: every objective trains on the same number of sequences for the same epochs (as
Korbak et al. compare objectives at the same token count). Filtering draws clean documents from
a longer stream of the same generator until it has as many as the others; conditional training
adds one token per document.

Where this departs from Korbak et al.: they label and filter at the level of sentences, with a
threshold on a classifier's continuous score, and apply unlikelihood to whole undesirable
sentences; here the score is the detector's exact count, a review is one or two clauses, the
control token labels the whole document, and unlikelihood applies to the insulting words only
(the detector's spans), not to the "the director was" around them.
"""

from __future__ import annotations

import torch

from rlhflab.text.sequences import SeqBatch, encode, token_logprobs
from rlhflab.text.task import ReviewsTask, insult_spans

GOOD, BAD = "<|good|>", "<|bad|>"
CONTROL_TOKENS = [GOOD, BAD]
OBJECTIVES = ("mle", "filtering", "conditional", "unlikelihood")
# conditional training: every prompt is given after <|good|> (format_prompt applies it)
GOOD_TEMPLATE = "{{ '" + GOOD + " ' + messages[-1]['content'] }}"


def control_token(task: ReviewsTask, document: str) -> str:
    return BAD if task.undesirable(document) > 0 else GOOD


def documents(task: ReviewsTask, n: int, seed: int, objective: str) -> list[str]:
    """The n pretraining documents ("<prompt> <response>") an objective trains on."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown pretraining objective {objective!r} (use {OBJECTIVES})")
    docs = [f"{p} {r}" for p, r in task.corpus(n, seed)]
    if objective == "conditional":
        return [f"{control_token(task, d)} {d}" for d in docs]
    if objective == "filtering":
        k = 2
        while len(kept := [d for d in docs if task.undesirable(d) == 0]) < n:
            docs = [f"{p} {r}" for p, r in task.corpus(k * n, seed)]
            k *= 2
        return kept[:n]
    return docs


def undesirable_mask(tokenizer, documents: list[str], batch: SeqBatch) -> torch.Tensor:
    """u [B, T]: 1 on the tokens of the detector's spans. The built-in tokenizer has one token per
    word, and the documents are encoded with an empty prompt, so word i is token i."""
    u = torch.zeros_like(batch.response_mask)
    for row, doc in enumerate(documents):
        words = doc.split()
        if len(tokenizer(doc, add_special_tokens=False)["input_ids"]) != len(words):
            raise ValueError("unlikelihood needs a word-level tokenizer (the built-in model's)")
        for i in insult_spans(words):
            u[row, i] = 1.0
    return u


def unlikelihood_loss(logp: torch.Tensor, mask: torch.Tensor, u: torch.Tensor, alpha: float):
    """−Σ [(1 − u)·log p + α·u·log(1 − p)] / Σ mask, over the response tokens (`mask`)."""
    p = logp.exp().clamp(max=1 - 1e-6)
    unlikely = torch.where(u > 0, torch.log1p(-p), torch.zeros_like(p))
    per_token = (1 - u) * logp + alpha * u * unlikely
    return -(per_token * mask).sum() / mask.sum().clamp_min(1)


def objective_loss(model, tokenizer, docs: list[str], objective: str, alpha: float, max_len: int):
    """loss(indices) for `fit_epochs`: the objective's loss on a minibatch of documents (language
    modelling is SFT's loss with an empty prompt)."""

    def loss(idx) -> torch.Tensor:
        chosen = [docs[i] for i in idx]
        batch = encode(tokenizer, [""] * len(chosen), chosen, max_len)
        logp = token_logprobs(model, batch)
        if objective != "unlikelihood":
            return -logp.sum() / batch.response_mask.sum().clamp_min(1)
        u = undesirable_mask(tokenizer, chosen, batch)
        return unlikelihood_loss(logp, batch.response_mask, u, alpha)

    return loss
