"""A text run's checkpoints: what `rlhflab run --resume DIR` continues from."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch


class TextCheckpoints:
    """A text run's checkpoints, one per finished phase and RL every `checkpoint_every` steps:

      checkpoints/text_state.json     finished phases, reward-model metrics, each method's scores
      checkpoints/sft/                the SFT policy (save_pretrained)
      checkpoints/reward_model.pt     the reward-model members' weights
      checkpoints/{ppo,grpo,rloo}.pt  policy, value head, optimiser, β, iteration, prompt RNG
      checkpoints/dpo.pt              the DPO policy
    Every file is written to a temporary name and renamed, so a kill leaves the last whole one.
    """

    def __init__(self, path: Path):
        self.path = path
        self.path.mkdir(parents=True, exist_ok=True)
        self.state: dict = {"done": [], "rm_metrics": {}, "methods": {}}
        self.rl_iteration: dict[str, int] = {}

    @property
    def state_path(self) -> Path:
        return self.path / "text_state.json"

    def load(self) -> None:
        if self.state_path.exists():
            self.state = json.loads(self.state_path.read_text())

    def save(self) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=1))
        os.replace(tmp, self.state_path)

    def done(self, phase: str) -> bool:
        return phase in self.state["done"]

    def mark(self, phase: str) -> None:
        self.state["done"].append(phase)
        self.save()

    def file(self, name: str) -> Path:
        return self.path / f"{name}.pt"

    def save_torch(self, name: str, obj: dict) -> None:
        tmp = self.file(name).with_suffix(".tmp")
        torch.save(obj, tmp)
        os.replace(tmp, self.file(name))

    def load_torch(self, name: str) -> dict | None:
        f = self.file(name)
        return torch.load(f, weights_only=False) if f.exists() else None

    def describe(self, labels: int) -> str:
        """What a resume would find, for the message of an interrupted run."""
        names = {
            "pretrain": "the base model",
            "sft": "SFT",
            "sl_cai": "SL-CAI",
            "reward_model": "the reward model",
        }
        have = [names[p] for p in names if self.done(p)]
        have += [f"{m} at iteration {it}" for m, it in self.rl_iteration.items() if it]
        have += [f"{m} scored" for m in self.state["methods"]]
        if labels:
            have.append(f"{labels} labels in feedback.db")
        if not have:
            return "nothing is checkpointed yet: a resume starts the run over"
        return "checkpointed: " + ", ".join(have) + "; a resume continues from there"
