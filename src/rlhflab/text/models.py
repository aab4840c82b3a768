"""Hugging Face models for language-model RLHF: loading, Step 0 pretraining, value and reward heads.

Any causal LM loads by hub name or local path through `from_pretrained`, with its tokenizer
(and its chat template, when it has one); LoRA adapters come from peft. The built-in task's
base model is a tiny GPT-2 trained here from scratch (Step 0) on the task's generated
corpus with a word-level tokenizer, saved with `save_pretrained`, and from then on loaded
exactly like a hub model.

Value head: a linear map of the policy's last hidden state (Ziegler et al. 2019; TRL's
AutoModelForCausalLMWithValueHead). Reward model: a backbone (causal or encoder) with a
scalar head, read at the last non-padding token (causal) or mean-pooled (encoder).
"""

from __future__ import annotations

import copy
import inspect
from pathlib import Path

import torch
from torch import nn

from rlhflab import distributed
from rlhflab.text.packing import Packing, packable, packed_hidden

ENCODER_TYPES = {
    "bert",
    "roberta",
    "distilbert",
    "deberta",
    "deberta-v2",
    "electra",
    "mpnet",
    "xlm-roberta",
    "albert",
}


def build_word_tokenizer(vocabulary: list[str]):
    """A word-level tokenizer (whitespace split) over a fixed vocabulary, as a
    PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<unk>", "<bos>", "<eos>"]
    vocab = {tok: i for i, tok in enumerate(specials + list(vocabulary))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<bos>",
        eos_token="<eos>",
    )


def tiny_gpt2(
    vocab_size: int,
    n_layer: int = 2,
    n_embd: int = 64,
    n_head: int = 4,
    n_positions: int = 64,
    seed: int = 0,
    tokenizer=None,
):
    """A small GPT-2 (no dropout); with `tokenizer`, its BOS/EOS/pad ids go into the config."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    ids = (
        {}
        if tokenizer is None
        else {
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        }
    )
    config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        **ids,
    )
    return GPT2LMHeadModel(config)


def load_tokenizer(name_or_path: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(name_or_path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = (
        "left"  # prompts are left-padded so that generation continues from the real last token
    )
    return tok


def load_causal_lm(name_or_path: str, lora_r: int = 0):
    """A causal LM by hub name or local path; with LoRA adapters when lora_r > 0."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=torch.float32)
    # the rank's device (distributed.place); transformers' stubs type `to` too narrowly
    model.to(torch.get_default_device())  # type: ignore[arg-type]
    return add_lora(model, lora_r) if lora_r > 0 else model


def trainable_copy(sft, lora_r: int = 0):
    """A copy of the SFT policy to optimise: all weights, or fresh LoRA adapters on top of it."""
    policy = copy.deepcopy(sft)
    for p in policy.parameters():
        p.requires_grad_(True)
    return add_lora(policy, lora_r) if lora_r else policy


def add_lora(model, r: int, alpha: int = 16):
    """Fresh LoRA adapters (peft) on a causal LM; with the adapter disabled it is the model
    itself."""
    from peft import LoraConfig, get_peft_model

    return get_peft_model(
        model, LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, task_type="CAUSAL_LM")
    )


def format_prompt(tokenizer, prompt: str) -> str:
    """The prompt as the model expects it: through its chat template when it has one."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
    return prompt


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding."""
    return (attention_mask.long().cumsum(-1) - 1).clamp_min(0)


def takes_argument(model, name: str) -> bool:
    """Whether the model's forward takes `name` (through a peft wrapper, which hides it)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return name in inspect.signature(base.forward).parameters


def forward_kwargs(model, input_ids, attention_mask) -> dict:
    kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if takes_argument(model, "position_ids"):
        kwargs["position_ids"] = position_ids(attention_mask)
    return kwargs


class ValueHead(nn.Module):
    """V(s_t) from the policy's last hidden state at each position."""

    def __init__(self, hidden: int):
        super().__init__()
        self.head = nn.Linear(hidden, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.head(hidden).squeeze(-1)


def context_length(model, default: int = 2048) -> int:
    """The longest sequence the model takes (its position embeddings), or `default` when its
    config does not say."""
    config = getattr(model, "config", model)
    for key in ("n_positions", "max_position_embeddings", "n_ctx", "max_seq_len"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return default


def hidden_size(config) -> int:
    return getattr(config, "hidden_size", None) or config.n_embd


class TextRewardModel(nn.Module):
    """r̂(x, y): a transformer backbone with a scalar head."""

    def __init__(self, backbone, pooling: str = "auto"):
        super().__init__()
        self.backbone = backbone
        model_type = getattr(backbone.config, "model_type", "")
        self.pooling = (
            ("mean" if model_type in ENCODER_TYPES else "last") if pooling == "auto" else pooling
        )
        self.head = nn.Linear(hidden_size(backbone.config), 1)

    @classmethod
    def from_pretrained(cls, name_or_path: str, pooling: str = "auto") -> TextRewardModel:
        from transformers import AutoModel

        return cls(AutoModel.from_pretrained(name_or_path, dtype=torch.float32), pooling)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pack: bool | None = None
    ) -> torch.Tensor:
        """[B] scores. `pack` (default: whenever the backbone allows it, for last-token pooling)
        runs the padding-free forward of rlhflab.text.packing, the head on the last tokens only."""
        if pack is None:
            pack = self.pooling == "last" and packable(self.backbone)
        if pack:
            packing = Packing.of(input_ids, attention_mask)
            last = attention_mask.shape[1] - 1 - attention_mask.flip(-1).float().argmax(-1)
            hidden = packed_hidden(self.backbone, packing)
            return self.head(hidden[packing.index[torch.arange(len(last)), last]]).squeeze(-1)
        kwargs = forward_kwargs(self.backbone, input_ids, attention_mask)
        hidden = self.backbone(**kwargs).last_hidden_state  # [B, T, H]
        if self.pooling == "mean":
            m = attention_mask.unsqueeze(-1).float()
            pooled = (hidden * m).sum(1) / m.sum(1).clamp_min(1)
        else:  # the last non-padding token (padding may be on either side)
            idx = attention_mask.shape[1] - 1 - attention_mask.flip(-1).float().argmax(-1)
            pooled = hidden[torch.arange(len(hidden)), idx]
        return self.head(pooled).squeeze(-1)

    def prefix_scores(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """[B, T]: the head on every position's hidden state, i.e. the score of each prefix
        (zero on padding); a value function for a causal backbone (InstructGPT's value model,
        initialised from the reward model)."""
        if packable(self.backbone):
            packing = Packing.of(input_ids, attention_mask)
            scores = self.head(packed_hidden(self.backbone, packing)).squeeze(-1)
            real = packing.index >= 0
            return scores.new_zeros(input_ids.shape).index_put(
                real.nonzero(as_tuple=True), scores[packing.index[real]]
            )
        kwargs = forward_kwargs(self.backbone, input_ids, attention_mask)
        hidden = self.backbone(**kwargs).last_hidden_state
        return self.head(hidden).squeeze(-1) * attention_mask


def frozen_copy(model: nn.Module) -> nn.Module:
    ref = copy.deepcopy(model)
    ref.eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def save_model(model, tokenizer, path: str | Path) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    target = model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
    if distributed.is_main():
        target.save_pretrained(path)
    else:  # transformers writes on rank 0 only; a rank's own copy (its scratch run) by hand
        from safetensors.torch import save_model as save_weights

        target.config.save_pretrained(path)
        save_weights(target, str(path / "model.safetensors"))
    tokenizer.save_pretrained(path)
    return path
