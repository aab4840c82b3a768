"""Padding-free forward passes: the sequences of a padded batch packed end to end.

A padded [B, T] batch computes B·T positions for Σ_b len_b real tokens. Packing lays the
real tokens of every sequence end to end in R rows of W = max_b len_b positions (first-fit
decreasing), each sequence with its own position ids 0 … len_b − 1, and runs the transformer
on [R, W] with no attention mask: transformers then reads the sequence boundaries from the
position ids (a position that does not follow its left neighbour by 1 starts a new sequence)
and attends block-diagonally, so every sequence sees exactly its own tokens, as when padded
(Krell et al. 2021, "Efficient sequence packing without cross-contamination"). Outputs are
gathered back by each real token's (row, column), so callers keep the [B, T] layout.

The head then runs on the positions that need it only: the language-model head on the hidden
states that predict response tokens (no vocabulary-wide log-softmax over prompts or padding),
the reward head on each sequence's last token.

Packing is used for decoder-only models whose logits are exactly `lm_head(last hidden state)`
(`PACKABLE`); any other model (an encoder, a peft wrapper, a model that scales or soft-caps its
logits) takes the padded forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# decoder-only model types whose causal mask honours packed position ids and whose logits are
# lm_head(final hidden state), with no scaling or soft-capping after it
PACKABLE = {"gpt2", "llama", "mistral", "qwen2", "qwen3"}


def packable(model) -> bool:
    """Whether `model` (a causal LM or its backbone) takes the packed forward."""
    if hasattr(model, "get_base_model"):  # peft: its wrapper hides the backbone
        return False
    return getattr(getattr(model, "config", None), "model_type", None) in PACKABLE


@dataclass
class Packing:
    """Where each real token of a padded [B, T] batch sits in the packed [R, W] rows."""

    input_ids: torch.Tensor  # [R, W] packed tokens (pad after the last sequence of a row)
    position_ids: torch.Tensor  # [R, W] 0 … len − 1 per sequence; 0 on padding
    index: torch.Tensor  # [B, T] flat packed position (r·W + c) of each token; −1 on padding

    @classmethod
    def of(cls, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Packing:
        mask = attention_mask.bool()
        lengths = mask.sum(1).tolist()
        width = max(max(lengths), 1)
        fill: list[int] = []  # tokens already placed in each row
        start = [0] * len(lengths)  # flat packed position of each sequence's first token
        for b in sorted(range(len(lengths)), key=lambda b: -lengths[b]):  # first-fit decreasing
            row = next((r for r, f in enumerate(fill) if f + lengths[b] <= width), len(fill))
            if row == len(fill):
                fill.append(0)
            start[b], fill[row] = row * width + fill[row], fill[row] + lengths[b]
        positions = mask.long().cumsum(1) - 1  # each token's position within its own sequence
        index = torch.where(mask, torch.as_tensor(start)[:, None] + positions, -1)
        flat = index[mask]
        # the filler after a row's last sequence is a real token id (it attends to itself only and
        # is never read), so that transformers does not warn of padding without a mask
        filler = int(input_ids[mask][0]) if len(flat) else 0
        ids = torch.full((len(fill) * width,), filler, dtype=input_ids.dtype)
        ids[flat] = input_ids[mask]
        pos = torch.zeros(len(fill) * width, dtype=torch.long)
        pos[flat] = positions[mask]
        return cls(ids.view(len(fill), width), pos.view(len(fill), width), index)

    @property
    def density(self) -> float:
        """Real tokens ÷ packed positions."""
        return float((self.index >= 0).sum()) / max(self.input_ids.numel(), 1)


def backbone_of(model):
    """The transformer under a causal LM's head (the model itself when it has no head)."""
    base = getattr(model, "base_model", model)
    return model if base is None else base


def packed_hidden(model, packing: Packing) -> torch.Tensor:
    """[R·W, H] last hidden states of the packed rows, through `model`'s transformer only."""
    out = backbone_of(model)(
        input_ids=packing.input_ids,
        position_ids=packing.position_ids,
        attention_mask=None,  # boundaries come from the position ids
        use_cache=False,
    )
    hidden = out.last_hidden_state
    return hidden.reshape(-1, hidden.shape[-1])
