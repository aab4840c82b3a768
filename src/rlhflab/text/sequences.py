"""Token batches for language-model RLHF: encoding, sampling, and per-token log-probabilities.

One layout serves SFT, reward modelling, DPO and PPO: a batch of [prompt | response]
token sequences with an attention mask and a `response_mask` that marks the response
tokens (the targets). `token_logprobs` returns log π(y_t | x, y_<t) at each target
position, computed at temperature τ (logits / τ) — the same τ as sampling, so PPO's
ratios and KL are taken against the distribution the samples came from.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rlhflab.text.models import context_length, format_prompt, forward_kwargs, takes_argument
from rlhflab.text.packing import Packing, packable, packed_hidden


@dataclass
class SeqBatch:
    input_ids: torch.Tensor  # [B, T]
    attention_mask: torch.Tensor  # [B, T]
    response_mask: torch.Tensor  # [B, T] 1 on response tokens (targets), 0 on prompt and padding

    def __len__(self) -> int:
        return len(self.input_ids)

    def select(self, idx) -> SeqBatch:
        return SeqBatch(self.input_ids[idx], self.attention_mask[idx], self.response_mask[idx])

    @property
    def last_response_index(self) -> torch.Tensor:
        """Position of each sequence's final response token."""
        T = self.response_mask.shape[1]
        return T - 1 - self.response_mask.flip(-1).float().argmax(-1)


def encode(
    tokenizer,
    prompts: list[str],
    responses: list[str],
    max_length: int = 256,
    add_eos: bool = True,
) -> SeqBatch:
    """[formatted prompt | response (+ EOS)] per row, right-padded; the prompt is cut from the left
    if too long. Pass the model's `context_length` as `max_length`: an unfinished response of
    exactly `max_new_tokens` after a prompt that fills the rest of the context is one token
    longer once its EOS is added, and must not run past the position embeddings."""
    rows, masks = [], []
    # one tokenizer call per side (a fast tokenizer encodes the list at once), not one per row
    prompt_ids = _token_ids(tokenizer, [format_prompt(tokenizer, p) for p in prompts])
    response_ids = _token_ids(
        tokenizer, [" " + r if not r.startswith(" ") else r for r in responses]
    )
    for p, r in zip(prompt_ids, response_ids):
        if add_eos:
            r = [*r, tokenizer.eos_token_id]
        r = r[:max_length]
        room = max_length - len(r)
        p = p[max(len(p) - room, 0) :] if room > 0 else []  # the prompt's last `room` tokens
        rows.append(p + r)
        masks.append([0] * len(p) + [1] * len(r))
    T = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id
    ids = torch.tensor([r + [pad] * (T - len(r)) for r in rows], dtype=torch.long)
    att = torch.tensor([[1] * len(r) + [0] * (T - len(r)) for r in rows], dtype=torch.long)
    resp = torch.tensor([m + [0] * (T - len(m)) for m in masks], dtype=torch.float32)
    return SeqBatch(ids, att, resp)


def _token_ids(tokenizer, texts: list[str]) -> list[list[int]]:
    if not texts:
        return []
    return [list(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def token_logprobs(
    model,
    batch: SeqBatch,
    temperature: float = 1.0,
    return_entropy: bool = False,
    return_hidden: bool = False,
    pack: bool | None = None,
):
    """log π(token_t | tokens_<t) at every position t ≥ 1 ([B, T], position 0 is 0), masked to the
    response.

    Also the entropy of π(· | tokens_<t) at each position and the last hidden state that predicts
    token t (for a value head), when asked. `pack` (default: whenever the model allows it) runs
    the padding-free forward of rlhflab.text.packing, with the head on the response positions
    only; otherwise the padded batch goes through the whole model."""
    if pack is None:
        pack = packable(model)
    if pack:
        return _packed_logprobs(model, batch, temperature, return_entropy, return_hidden)
    # logits only where a target is: from the first column that holds a response token on (no
    # full-vocabulary log-softmax over the prompt), through `logits_to_keep` where the model
    # takes it
    T = batch.input_ids.shape[1]
    columns = batch.response_mask.any(0).nonzero()
    start = max(1, int(columns[0]) if len(columns) else T - 1)
    keep = T - start + 1  # positions start − 1 … T − 1; the last predicts nothing
    kwargs = forward_kwargs(model, batch.input_ids, batch.attention_mask)
    if takes_argument(model, "logits_to_keep"):
        kwargs["logits_to_keep"] = keep
    out = model(**kwargs, output_hidden_states=return_hidden)
    logits = out.logits[:, -keep:-1].float() / temperature
    logp_all = F.log_softmax(logits, -1)
    logp = logp_all.gather(-1, batch.input_ids[:, start:].unsqueeze(-1)).squeeze(-1)
    pad = torch.zeros_like(logp[:, :1]).expand(-1, start)
    result = [torch.cat([pad, logp], 1) * batch.response_mask]
    if return_entropy:
        ent = -(logp_all.exp() * logp_all).sum(-1)
        result.append(torch.cat([pad, ent], 1) * batch.response_mask)
    if return_hidden:
        hidden = out.hidden_states[-1][:, :-1]
        result.append(torch.cat([torch.zeros_like(hidden[:, :1]), hidden], 1))
    return result[0] if len(result) == 1 else tuple(result)


def _packed_logprobs(
    model, batch: SeqBatch, temperature: float, return_entropy: bool, return_hidden: bool
):
    """`token_logprobs` through a packed forward: the LM head and log-softmax only on the hidden
    states that predict a response token (those at t − 1 for each response token t ≥ 1)."""
    packing = Packing.of(batch.input_ids, batch.attention_mask)
    hidden = packed_hidden(model, packing)  # [R·W, H]
    rows, cols = (batch.response_mask[:, 1:] > 0).nonzero(as_tuple=True)
    cols = cols + 1  # the target tokens
    source = packing.index[rows, cols - 1]  # the positions that predict them
    if bool((source < 0).any()):
        raise ValueError("a response token follows a padding position: the batch is malformed")
    logits = model.get_output_embeddings()(hidden[source]).float() / temperature
    logp_all = F.log_softmax(logits, -1)
    picked = logp_all.gather(-1, batch.input_ids[rows, cols].unsqueeze(-1)).squeeze(-1)

    def laid_out(values: torch.Tensor) -> torch.Tensor:  # [n] at the targets → [B, T]
        out = values.new_zeros(batch.response_mask.shape).index_put((rows, cols), values)
        return out * batch.response_mask

    result = [laid_out(picked)]
    if return_entropy:
        result.append(laid_out(-(logp_all.exp() * logp_all).sum(-1)))
    if return_hidden:  # [B, T, H]: at t, the hidden state of t − 1 (zero where it is padding)
        prev = torch.cat([packing.index.new_full((len(batch), 1), -1), packing.index[:, :-1]], 1)
        real = prev >= 0
        states = hidden.new_zeros((*prev.shape, hidden.shape[-1]))
        result.append(states.index_put(real.nonzero(as_tuple=True), hidden[prev[real]]))
    return result[0] if len(result) == 1 else tuple(result)


# Every generation option that changes the sampling distribution, at its neutral value. A hub
# model's `generation_config` (repetition_penalty, no_repeat_ngram_size, top_k = 50, ...) would
# otherwise fill in whatever is left unset, and samples would not come from π at temperature τ.
NEUTRAL_SAMPLING = {
    "do_sample": True,
    "num_beams": 1,
    "top_k": 0,
    "top_p": 1.0,
    "min_p": None,
    "typical_p": 1.0,
    "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0,
    "repetition_penalty": 1.0,
    "encoder_repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0,
    "bad_words_ids": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "sequence_bias": None,
    "min_length": 0,
    "min_new_tokens": None,
    "renormalize_logits": False,
    "exponential_decay_length_penalty": None,
    "guidance_scale": None,
    "watermarking_config": None,
}


def sampling_config(tokenizer, max_new_tokens: int, temperature: float):
    """The explicit generation config of every sample: ancestral sampling at `temperature`,
    nothing else."""
    from transformers import GenerationConfig

    return GenerationConfig(
        **NEUTRAL_SAMPLING,
        temperature=temperature,
        max_new_tokens=max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )


@contextlib.contextmanager
def own_generation_config(model, config):
    """`model.generate` fills unset options from the model's own `generation_config`; while this
    context is open that is `config` itself, so nothing of a hub model's leaks in."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    saved = base.generation_config
    base.generation_config = config
    try:
        yield
    finally:
        base.generation_config = saved


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: list[str],
    max_new_tokens: int,
    temperature: float = 1.0,
    seed: int | None = None,
) -> tuple[SeqBatch, list[str], torch.Tensor]:
    """Sample one response per prompt. Returns the [prompt | response] batch, the response texts,
    and
    whether each response ended with EOS within max_new_tokens."""
    if seed is not None:
        torch.manual_seed(seed)
    tokenizer.padding_side = "left"
    enc = tokenizer(
        [format_prompt(tokenizer, p) for p in prompts],
        return_tensors="pt",
        padding=True,
        add_special_tokens=False,
    )
    room = context_length(model) - enc["input_ids"].shape[1]
    if room < max_new_tokens:
        raise ValueError(
            f"a prompt of {enc['input_ids'].shape[1]} tokens leaves room for {room} of the "
            f"{max_new_tokens} new tokens in the model's context of {context_length(model)}"
        )
    was_training = model.training
    model.eval()
    config = sampling_config(tokenizer, max_new_tokens, temperature)
    with own_generation_config(model, config):
        out = model.generate(**enc, generation_config=config)
    model.train(was_training)
    Q = enc["input_ids"].shape[1]
    response = out[:, Q:]
    is_eos = response == tokenizer.eos_token_id
    ended = is_eos.any(-1)
    first_eos = torch.where(
        ended,
        is_eos.float().argmax(-1),
        torch.full_like(ended, response.shape[1] - 1, dtype=torch.long),
    )
    keep = (torch.arange(response.shape[1]).unsqueeze(0) <= first_eos.unsqueeze(1)).long()
    texts = [
        tokenizer.decode(r[: int(k.sum())], skip_special_tokens=True).strip()
        for r, k in zip(response, keep)
    ]
    input_ids = torch.cat(
        [enc["input_ids"], torch.where(keep.bool(), response, tokenizer.pad_token_id)], 1
    )
    attention = torch.cat([enc["attention_mask"], keep], 1)
    resp_mask = torch.cat([torch.zeros_like(enc["attention_mask"]), keep], 1).float()
    return SeqBatch(input_ids, attention, resp_mask), texts, ended
