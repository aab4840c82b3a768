"""Reward models for control: r̂(o, a) as an MLP, a segment's return its sum, and a
bootstrapped ensemble fitted by Bradley–Terry (Christiano et al. 2017, §2.2.3).

Fitting follows the paper: an ensemble of predictors, each trained on a bootstrap
resample of the comparisons; a held-out validation share (1/e) drives early stopping
(the paper tunes L2 strength to keep validation loss near training loss; we use
weight decay plus early stopping); the ensemble mean is the reward, normalised
before the policy sees it (that normalisation lives with the policy). Members are
warm-started across refits. Input features are standardised by running statistics
of the labelled segments.

Conservative objectives (Coste et al. 2023, `reward.objective`): instead of the mean,
the policy can optimise the ensemble's lower confidence, mean − λ·std across members
(their uncertainty-weighted optimisation, with std for variance), or the worst
member, min_k r̂_k (worst-case optimisation). Departure: before combining, each member
is standardised over the labelled steps, so an arbitrary per-member offset (Bradley–Terry
fixes only differences) neither decides the minimum nor inflates the std.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlhflab.config import RewardConfig
from rlhflab.envs.wrappers import action_dim, action_features
from rlhflab.nets import mlp
from rlhflab.reward.losses import bradley_terry_loss, preference_probability
from rlhflab.stats import RunningMeanStd
from rlhflab.types import Comparison, Segment


class NonFiniteRewardError(RuntimeError):
    """The reward model produced NaN or infinity."""


@dataclass
class PairBatch:
    left: torch.Tensor  # [B, k, F] features
    right: torch.Tensor
    target: torch.Tensor  # [B]


def is_validation(query_id: int, fraction: float) -> bool:
    """A fixed, seed-free held-out split: query i is held out when frac(i·φ) < fraction.

    The golden-ratio sequence spreads held-out queries evenly and never moves a query
    between splits, so validation accuracy stays honest across refits and resumes."""
    return (query_id * 0.6180339887498949) % 1.0 < fraction


class RewardEnsemble:
    def __init__(self, obs_dim: int, action_space: gym.Space, cfg: RewardConfig, seed: int = 0):
        self.cfg, self.action_space = cfg, action_space
        self.feature_dim = obs_dim + action_dim(action_space)
        gen = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng():
            torch.manual_seed(int(torch.randint(2**31, (1,), generator=gen)))
            self.members = nn.ModuleList(
                mlp(self.feature_dim, cfg.hidden, 1, cfg.layers, act=nn.LeakyReLU)
                for _ in range(cfg.ensemble)
            )
        self.optimizers = [
            torch.optim.AdamW(m.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
            for m in self.members
        ]
        self.feature_rms = RunningMeanStd((self.feature_dim,))
        self.rng = np.random.default_rng(seed)
        self.seen_queries: set[int] = set()
        self._raw: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.fits = 0
        self.member_scale = torch.zeros(
            2, cfg.ensemble, 1
        )  # per-member mean and std of r̂ over the labelled steps
        self.member_scale[1] = 1.0

    # -- features ---------------------------------------------------------------------
    def raw_features(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """(obs, action) concatenated per step, [..., F]; actions one-hot when discrete."""
        return np.concatenate(
            [np.asarray(obs, np.float32), action_features(self.action_space, actions)], axis=-1
        )

    def features(self, obs: np.ndarray, actions: np.ndarray) -> torch.Tensor:
        """Standardised features, [..., F]."""
        return torch.as_tensor(self.feature_rms.normalize(self.raw_features(obs, actions)))

    def _batch(self, comparisons: list[Comparison]) -> PairBatch:
        """Standardised features of both sides; raw features are computed once per query and cached."""
        for c in comparisons:
            if c.query_id not in self._raw:
                self._raw[c.query_id] = (
                    self.raw_features(c.left.obs, c.left.actions),
                    self.raw_features(c.right.obs, c.right.actions),
                )
        norm = lambda side: torch.as_tensor(
            self.feature_rms.normalize(np.stack([self._raw[c.query_id][side] for c in comparisons]))
        )  # noqa: E731
        target = torch.tensor([c.judgement.target for c in comparisons], dtype=torch.float32)
        return PairBatch(norm(0), norm(1), target)

    # -- prediction -------------------------------------------------------------------
    def _member_rewards(self, x: torch.Tensor) -> torch.Tensor:
        """[M, ...] per-step rewards of every member."""
        return torch.stack([m(x).squeeze(-1) for m in self.members])

    @torch.no_grad()
    def predict(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """r̂ per step for any batch shape [..., D] under `reward.objective` (default: ensemble mean); raises on NaN/inf."""
        members = self._member_rewards(self.features(obs, actions))
        if self.cfg.objective == "mean":
            r = members.mean(0)
        else:
            z = (members.reshape(len(members), -1) - self.member_scale[0]) / self.member_scale[1]
            z = (
                z.mean(0) - self.cfg.conservative_lambda * z.std(0, correction=0)
                if self.cfg.objective == "conservative"
                else z.min(0).values
            )
            r = z.reshape(members.shape[1:])
        r = r.numpy()
        if not np.all(np.isfinite(r)):
            raise NonFiniteRewardError(
                f"reward model produced {int(np.sum(~np.isfinite(r)))} non-finite rewards"
            )
        return r

    @torch.no_grad()
    def disagreement(self, pairs: list[tuple[Segment, Segment]]) -> np.ndarray:
        """Std across members of P̂[left ≻ right], one value per pair."""
        left = self.features(
            np.stack([a.obs for a, _ in pairs]), np.stack([a.actions for a, _ in pairs])
        )
        right = self.features(
            np.stack([b.obs for _, b in pairs]), np.stack([b.actions for _, b in pairs])
        )
        p = preference_probability(
            self._member_rewards(left).sum(-1), self._member_rewards(right).sum(-1)
        )
        return p.std(0).numpy() if len(self.members) > 1 else np.zeros(len(pairs))

    # -- fitting ----------------------------------------------------------------------
    def fit(self, comparisons: list[Comparison]) -> dict:
        """Refit every member on its bootstrap of the training split; report validation metrics."""
        usable = [c for c in comparisons if c.judgement.target is not None]
        new = [c for c in usable if c.query_id not in self.seen_queries]
        if new:  # standardise inputs by the segments that have been labelled
            segs = [s for c in new for s in (c.left, c.right)]
            self.feature_rms.update(
                self.raw_features(
                    np.concatenate([s.obs for s in segs]), np.concatenate([s.actions for s in segs])
                )
            )
            self.seen_queries.update(c.query_id for c in new)
        train = [c for c in usable if not is_validation(c.query_id, self.cfg.val_fraction)]
        val = [c for c in usable if is_validation(c.query_id, self.cfg.val_fraction)]
        if not train:
            return {}
        train_batch = self._batch(train)
        val_batch = self._batch(val) if val else None
        for member, opt in zip(self.members, self.optimizers):
            boot = torch.as_tensor(self.rng.integers(len(train), size=len(train)))
            self._fit_member(
                member,
                opt,
                PairBatch(
                    train_batch.left[boot], train_batch.right[boot], train_batch.target[boot]
                ),
                val_batch,
            )
        self.fits += 1
        with torch.no_grad():
            steps = self._member_rewards(torch.cat([train_batch.left, train_batch.right])).flatten(
                1
            )
            self.member_scale = torch.stack(
                [steps.mean(1, keepdim=True), steps.std(1, keepdim=True).clamp_min(1e-6)]
            )
        metrics = {
            "rm_fits": self.fits,
            "rm_val_pairs": len(val),
            "rm_train_loss": self._loss(train_batch),
            "rm_train_acc": self._accuracy(train_batch),
        }
        if val_batch is not None:
            metrics |= {
                "rm_val_loss": self._loss(val_batch),
                "rm_val_acc": self._accuracy(val_batch),
            }
        return metrics

    def _fit_member(
        self, member: nn.Module, opt: torch.optim.Optimizer, train: PairBatch, val: PairBatch | None
    ) -> None:
        cfg = self.cfg
        best, best_state, waited = float("inf"), None, 0
        n = len(train.target)
        for _ in range(cfg.max_epochs):
            perm = torch.as_tensor(self.rng.permutation(n))
            for start in range(0, n, cfg.batch_size):
                idx = perm[start : start + cfg.batch_size]
                loss = bradley_terry_loss(
                    member(train.left[idx]).squeeze(-1).sum(-1),
                    member(train.right[idx]).squeeze(-1).sum(-1),
                    train.target[idx],
                    cfg.label_noise,
                )
                opt.zero_grad()
                loss.backward()
                opt.step()
            if val is None:
                continue
            with torch.no_grad():
                v = float(
                    bradley_terry_loss(
                        member(val.left).squeeze(-1).sum(-1),
                        member(val.right).squeeze(-1).sum(-1),
                        val.target,
                        cfg.label_noise,
                    )
                )
            if v < best - 1e-4:
                best, best_state, waited = (
                    v,
                    {k: p.clone() for k, p in member.state_dict().items()},
                    0,
                )
            else:
                waited += 1
                if waited >= cfg.patience:
                    break
        if best_state is not None:
            member.load_state_dict(best_state)

    @torch.no_grad()
    def _returns(self, batch: PairBatch) -> tuple[torch.Tensor, torch.Tensor]:
        return self._member_rewards(batch.left).mean(0).sum(-1), self._member_rewards(
            batch.right
        ).mean(0).sum(-1)

    def _loss(self, batch: PairBatch) -> float:
        left, right = self._returns(batch)
        return float(bradley_terry_loss(left, right, batch.target, self.cfg.label_noise))

    def _accuracy(self, batch: PairBatch) -> float:
        """Share of strict preferences (not ties) whose side the ensemble mean gets right."""
        left, right = self._returns(batch)
        strict = batch.target != 0.5
        if not strict.any():
            return float("nan")
        return float(((left > right).float() == batch.target)[strict].float().mean())

    # -- checkpoints ------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "members": self.members.state_dict(),
            "optimizers": [o.state_dict() for o in self.optimizers],
            "feature_rms": self.feature_rms.state_dict(),
            "seen_queries": sorted(self.seen_queries),
            "rng": self.rng.bit_generator.state,
            "fits": self.fits,
            "member_scale": self.member_scale,
        }

    def load_state_dict(self, state: dict) -> None:
        self.members.load_state_dict(state["members"])
        for o, s in zip(self.optimizers, state["optimizers"]):
            o.load_state_dict(s)
        self.feature_rms.load_state_dict(state["feature_rms"])
        self.seen_queries = set(state["seen_queries"])
        self.rng.bit_generator.state = state["rng"]
        self.fits = state["fits"]
        if "member_scale" in state:
            self.member_scale = state["member_scale"]
