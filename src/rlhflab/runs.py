"""The run directory: everything a run produces, in one place, enough to resume it.

RUN_DIR/
  config.yaml        the resolved config
  metrics.jsonl      one JSON object per log step
  feedback.db        the feedback store (SQLite)
  checkpoints/latest.pt
  checkpoints/policy_XXXX.pt   policy snapshots at iteration XXXX (0: before RL), for Goodhart
  curves
  summary.json       the final results
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch
import yaml

from rlhflab.config import RunConfig, build_config, to_yaml
from rlhflab.feedback.schema import sqlite_url
from rlhflab.feedback.store import FeedbackStore


def _jsonable(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "item"):
        return _jsonable(v.item())
    return v


class RunDirInUse(ValueError):
    """--out names a directory that already holds a run."""


class RunDir:
    @classmethod
    def fresh(cls, path: str | Path) -> RunDir:
        """A run directory for a new run; refuses one that already holds a run, whose feedback
        store the new run would otherwise silently reuse (skipping its initial labels and
        fitting on the other run's segments)."""
        path = Path(path)
        held = [n for n in ("config.yaml", "metrics.jsonl") if (path / n).exists()]
        if (path / "feedback.db").exists():  # annotators may be added before the run starts
            store = FeedbackStore(sqlite_url(path / "feedback.db"))
            if store.count_queries():
                held.append(f"feedback.db with {store.count_queries()} queries")
            store.close()
        if held:
            raise RunDirInUse(
                f"{path} already holds a run ({', '.join(held)}): continue it with "
                f"`rlhflab run --resume {path}`, or choose another --out"
            )
        return cls(path)

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "checkpoints").mkdir(exist_ok=True)

    config_path = property(lambda self: self.path / "config.yaml")
    metrics_path = property(lambda self: self.path / "metrics.jsonl")
    summary_path = property(lambda self: self.path / "summary.json")
    checkpoint_path = property(lambda self: self.path / "checkpoints" / "latest.pt")

    @property
    def store_url(self) -> str:
        """The run's feedback store: `feedback.store` of its config if set (a PostgreSQL URL,
        say), else RUN_DIR/feedback.db."""
        if self.config_path.exists():
            saved = yaml.safe_load(self.config_path.read_text()) or {}
            url = (saved.get("feedback") or {}).get("store")
            if url:
                return str(url)
        return sqlite_url(self.path / "feedback.db")

    def write_config(self, cfg: RunConfig) -> None:
        self.config_path.write_text(to_yaml(cfg))

    def read_config(self, overrides: Sequence[str] = ()) -> RunConfig:
        if not self.config_path.exists():
            raise FileNotFoundError(f"{self.path}: not a run directory (no config.yaml)")
        return build_config(self.config_path, overrides)

    def log(self, record: dict) -> None:
        with self.metrics_path.open("a") as f:
            f.write(json.dumps({k: _jsonable(v) for k, v in record.items()}) + "\n")

    def metrics(self) -> list[dict]:
        if not self.metrics_path.exists():
            return []
        return [
            json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()
        ]

    def drop_metrics(self, drop) -> None:
        """Rewrite metrics.jsonl without the records for which `drop(record)` is true."""
        kept = [r for r in self.metrics() if not drop(r)]
        tmp = self.metrics_path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
        os.replace(tmp, self.metrics_path)

    def save_checkpoint(self, state: dict) -> None:
        """Atomic: write a temporary file, fsync, then rename over the old checkpoint."""
        tmp = self.checkpoint_path.with_suffix(".tmp")
        with tmp.open("wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.checkpoint_path)

    def load_checkpoint(self) -> dict | None:
        if not self.checkpoint_path.exists():
            return None
        return torch.load(self.checkpoint_path, weights_only=False)

    def save_policy(self, iteration: int, state: dict) -> None:
        """A policy snapshot, `checkpoints/policy_XXXX.pt`, kept for Goodhart curves over RL."""
        torch.save(state, self.path / "checkpoints" / f"policy_{iteration:04d}.pt")

    def policy_snapshots(self) -> dict[int, Path]:
        """Iteration → snapshot path, in order."""
        return {
            int(p.stem.split("_")[1]): p
            for p in sorted((self.path / "checkpoints").glob("policy_[0-9]*.pt"))
        }

    def write_summary(self, summary: dict) -> None:
        self.summary_path.write_text(json.dumps(summary, indent=2, default=_jsonable) + "\n")

    def summary(self) -> dict:
        return json.loads(self.summary_path.read_text())
