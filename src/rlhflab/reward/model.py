"""Reward models for control: r̂(o, a) as an MLP, a segment's return its sum, and a
bootstrapped ensemble fitted by Bradley–Terry (Christiano et al. 2017, §2.2.3).

Fitting follows the paper (the routine is `reward/fitting.py`, shared with the text reward
model; this module only says how a member scores a segment): an ensemble of predictors, each
trained on a bootstrap resample of the comparisons, with about 1/e of them left out for
validation. Departure: the paper holds out a fixed 1/e of all comparisons; here
(`reward.validation=out_of_bag`, the default) each member validates on the comparisons its
bootstrap left out, so every label trains the ensemble and every member still early-stops on
labels it never saw — the fixed split (`held_out`) wasted 37% of a 175-label budget. The
first fit runs at least `reward.min_steps` gradient steps (imitation's
`initial_epoch_multiplier` for the same reason: a few dozen initial labels are one
minibatch, and 30 epochs were 30 steps); every fit stops when the validation loss has not
improved for `patience` evaluations. The paper tunes L2 strength to keep validation loss
near training loss; we use weight decay plus early stopping. The ensemble mean is the
reward, normalised before the policy sees it (that normalisation lives with the policy).
Members are warm-started across refits and run as one batched network. Input features are
standardised by running statistics of the labelled segments.

Absorbing states (Kostrikov et al. 2019): a step taken after a fixed-horizon episode
ended has no meaningful observation or action, so its input is the absorbing indicator
alone, and r̂(absorbing) is one learned constant — the reward of "the episode is over",
compared by the annotator like any other step.

Conservative objectives (Coste et al. 2023, `reward.objective`): instead of the mean,
the policy can optimise the ensemble's lower confidence, mean − λ·std across members
(their uncertainty-weighted optimisation, with std for variance), or the worst
member, min_k r̂_k (worst-case optimisation). Departure: before combining, each member
is standardised over the labelled steps, so an arbitrary per-member offset (Bradley–Terry
fixes only differences) neither decides the minimum nor inflates the std.

Process feedback (`reward/process.py`): a comparison that carries a label per part of its two
segments adds a Bradley–Terry loss per part, weighted by `reward.part_weight`.

Annotators (`reward.annotators`, `reward.robust_trim`): each label's loss may use its
annotator's rationality β (`annotator_scale`, set by `reward/reliability.py`), and each step
may leave out its minibatch's highest losses (the trimmed likelihood of `reward/losses.py`).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlhflab.config import RewardConfig
from rlhflab.envs.wrappers import action_dim, action_features
from rlhflab.reward.fitting import Schedule, fit_members, split
from rlhflab.reward.fitting import is_validation as is_validation  # re-exported
from rlhflab.reward.losses import bradley_terry_loss, preference_probability
from rlhflab.reward.process import part_loss, part_targets
from rlhflab.stats import RunningMeanStd
from rlhflab.types import Comparison, Segment


class NonFiniteRewardError(RuntimeError):
    """The reward model produced NaN or infinity."""


class EnsembleMLP(nn.Module):
    """M independent MLPs evaluated as one batched network: [M, N, F] → [M, N]."""

    def __init__(self, members: int, inp: int, hidden: int, layers: int):
        super().__init__()
        widths = [inp] + [hidden] * layers + [1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for i, (a, b) in enumerate(itertools.pairwise(widths)):
            gain = 1.0 if i == layers else math.sqrt(2)
            w = torch.empty(members, a, b)
            for m in range(members):  # orthogonal init per member, as nn.init does per layer
                nn.init.orthogonal_(w[m].T, gain)
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(torch.zeros(members, 1, b)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [M, N, F] (one input per member) → [M, N]."""
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = torch.baddbmm(b, x, w)
            if i < len(self.weights) - 1:
                x = nn.functional.leaky_relu(x)
        return x.squeeze(-1)


@dataclass
class PairData:
    """Every usable comparison as tensors: standardised step features of both sides."""

    query_ids: list[int]
    left: torch.Tensor  # [n, k, F]
    right: torch.Tensor
    target: torch.Tensor  # [n]
    scale: torch.Tensor | float = 1.0  # [n] the annotator's rationality β (reward/reliability.py)
    parts: torch.Tensor | None = None  # [n, parts] process-feedback targets (reward/process.py)


@dataclass
class _Members:
    """The ensemble on one fit's comparisons, as `reward/fitting.py` sees it."""

    model: RewardEnsemble
    data: PairData

    def member_losses(self, idx: torch.Tensor, train: bool) -> torch.Tensor:
        return self.model._member_losses(self.data, idx)

    def member_parameters(self) -> list[list[torch.Tensor]]:
        params = list(self.model.net.parameters())
        return [[p[m] for p in params] for m in range(len(params[0]))]


class RewardEnsemble:
    def __init__(self, obs_dim: int, action_space: gym.Space, cfg: RewardConfig, seed: int = 0):
        self.cfg, self.action_space = cfg, action_space
        self.input_dim = obs_dim + (action_dim(action_space) if cfg.use_actions else 0)
        self.feature_dim = self.input_dim + 1  # + the absorbing indicator
        gen = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng():
            torch.manual_seed(int(torch.randint(2**31, (1,), generator=gen)))
            self.net = EnsembleMLP(cfg.ensemble, self.feature_dim, cfg.hidden, cfg.layers)
        self.optimizer = torch.optim.AdamW(
            self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        self.feature_rms = RunningMeanStd((self.input_dim,))
        self.rng = np.random.default_rng(seed)
        self.seen_queries: set[int] = set()
        self.trained_on: list[set[int]] = [set() for _ in range(cfg.ensemble)]
        self._raw: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.fits = 0
        self.member_scale = torch.zeros(2, cfg.ensemble, 1)  # per-member mean, std over labels
        self.member_scale[1] = 1.0
        self.annotator_scale: dict[str, float] = {}  # β per annotator (reward.annotators)
        self.cold = False  # reset_weights: the next fit starts afresh

    def reset_weights(self) -> None:
        """Fresh members and optimiser (the feature statistics kept); the next fit runs
        `min_steps` like a first. After labels are withdrawn (`reward/reliability.py`), a warm
        start would keep what they taught."""
        with torch.random.fork_rng():
            torch.manual_seed(int(self.rng.integers(2**31)))
            self.net = EnsembleMLP(
                len(self.trained_on), self.feature_dim, self.cfg.hidden, self.cfg.layers
            )
        self.optimizer = torch.optim.AdamW(
            self.net.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay
        )
        self.cold = True

    # -- features ---------------------------------------------------------------------
    def raw_features(
        self, obs: np.ndarray, actions: np.ndarray, absorbing: np.ndarray | None = None
    ) -> np.ndarray:
        """[..., F]: (obs, action) per step — actions one-hot when discrete — and the
        absorbing indicator; an absorbing step's observation and action are zeroed."""
        x = np.asarray(obs, np.float32)
        if self.cfg.use_actions:
            x = np.concatenate([x, action_features(self.action_space, actions)], axis=-1)
        flag = np.zeros(x.shape[:-1], bool) if absorbing is None else np.asarray(absorbing, bool)
        return np.concatenate([x, flag[..., None].astype(np.float32)], axis=-1)

    def standardise(self, raw: np.ndarray) -> torch.Tensor:
        """Standardised features: (obs, action) by the labelled steps' statistics, and zero
        at absorbing steps, so r̂(absorbing) is one learned value."""
        x, flag = raw[..., :-1], raw[..., -1:]
        return torch.as_tensor(
            np.concatenate([self.feature_rms.normalize(x) * (1.0 - flag), flag], axis=-1)
        )

    def features(
        self, obs: np.ndarray, actions: np.ndarray, absorbing: np.ndarray | None = None
    ) -> torch.Tensor:
        return self.standardise(self.raw_features(obs, actions, absorbing))

    def _segment_features(self, c: Comparison) -> tuple[np.ndarray, np.ndarray]:
        if c.query_id not in self._raw:  # computed once per query
            self._raw[c.query_id] = tuple(  # type: ignore[assignment]
                self.raw_features(s.obs, s.actions, s.absorbing_mask) for s in (c.left, c.right)
            )
        return self._raw[c.query_id]

    def _pairs(self, comparisons: list[Comparison]) -> PairData:
        raw = [self._segment_features(c) for c in comparisons]
        return PairData(
            [c.query_id for c in comparisons],
            self.standardise(np.stack([a for a, _ in raw])),
            self.standardise(np.stack([b for _, b in raw])),
            torch.tensor([c.judgement.target for c in comparisons], dtype=torch.float32),
            torch.tensor([self.annotator_scale.get(c.annotator, 1.0) for c in comparisons]),
            part_targets(comparisons),
        )

    # -- prediction -------------------------------------------------------------------
    def _member_rewards(self, x: torch.Tensor) -> torch.Tensor:
        """[M, ...] per-step rewards of every member for features [..., F]."""
        flat = x.reshape(1, -1, x.shape[-1]).expand(len(self.member_scale[0]), -1, -1)
        return self.net(flat).reshape(-1, *x.shape[:-1])

    @torch.no_grad()
    def predict(
        self, obs: np.ndarray, actions: np.ndarray, absorbing: np.ndarray | None = None
    ) -> np.ndarray:
        """r̂ per step for any batch shape [..., D] under `reward.objective` (default: the
        ensemble mean); raises on NaN/inf."""
        members = self._member_rewards(self.features(obs, actions, absorbing))
        if self.cfg.objective == "mean":
            r = members.mean(0)
        else:
            z = (members.reshape(len(members), -1) - self.member_scale[0]) / self.member_scale[1]
            if self.cfg.objective == "conservative":
                z = z.mean(0) - self.cfg.conservative_lambda * z.std(0, correction=0)
            else:
                z = z.min(0).values
            r = z.reshape(members.shape[1:])
        out = r.numpy()
        if not np.all(np.isfinite(out)):
            bad = int(np.sum(~np.isfinite(out)))
            raise NonFiniteRewardError(f"reward model produced {bad} non-finite rewards")
        return out

    def segment_returns(self, segments: list[Segment]) -> torch.Tensor:
        """[M, len(segments)] every member's return R̂(σ) = Σ r̂ of each segment."""
        return self.segment_rewards(segments).sum(-1)

    def segment_rewards(self, segments: list[Segment]) -> torch.Tensor:
        """[M, len(segments), k] every member's r̂ of each step of each (k-step) segment."""
        x = self.features(
            np.stack([s.obs for s in segments]),
            np.stack([s.actions for s in segments]),
            np.stack([s.absorbing_mask for s in segments]),
        )
        return self._member_rewards(x)

    @torch.no_grad()
    def disagreement(self, pairs: list[tuple[Segment, Segment]]) -> np.ndarray:
        """Std across members of P̂[left ≻ right], one value per pair."""
        if len(self.member_scale[0]) == 1:
            return np.zeros(len(pairs))
        returns = self.segment_returns([s for pair in pairs for s in pair])
        p = preference_probability(returns[:, 0::2], returns[:, 1::2])
        return p.std(0).numpy()

    @torch.no_grad()
    def member_preferences(self, pairs: list[tuple[Segment, Segment]]) -> np.ndarray:
        """[M, n] every member's P̂[left ≻ right] (active query selection)."""
        returns = self.segment_returns([s for pair in pairs for s in pair])
        return preference_probability(returns[:, 0::2], returns[:, 1::2]).numpy()

    @torch.no_grad()
    def held_out_preferences(self, comparisons: list[Comparison]) -> np.ndarray:
        """P̂[left ≻ right] of each comparison from the members that did not train on it
        (NaN where every member did): honest probabilities for calibration."""
        if not comparisons:
            return np.zeros(0)
        returns = self.segment_returns([s for c in comparisons for s in (c.left, c.right)])
        unseen = self._unseen([c.query_id for c in comparisons])
        left = (returns[:, 0::2] * unseen).sum(0) / unseen.sum(0)
        right = (returns[:, 1::2] * unseen).sum(0) / unseen.sum(0)
        return preference_probability(left, right, self.cfg.label_noise).numpy()

    @torch.no_grad()
    def held_out_margins(self, comparisons: list[Comparison]) -> np.ndarray:
        """Δ = R̂(left) − R̂(right) of each comparison, averaged over the members that did not
        train on its query (over every member where all did): the consensus an annotator is
        checked against (`reward/reliability.py`)."""
        returns = self.segment_returns([s for c in comparisons for s in (c.left, c.right)])
        delta = returns[:, 0::2] - returns[:, 1::2]  # [M, n]
        unseen = self._unseen([c.query_id for c in comparisons])
        unseen[:, unseen.sum(0) == 0] = 1.0
        return ((delta * unseen).sum(0) / unseen.sum(0)).numpy()

    def _unseen(self, query_ids: list[int]) -> torch.Tensor:
        """[M, n] 1 where member m did not train on query i (its out-of-bag mask)."""
        return torch.tensor(
            [[q not in seen for q in query_ids] for seen in self.trained_on]
        ).float()

    # -- fitting ----------------------------------------------------------------------
    def fit(self, comparisons: list[Comparison]) -> dict:
        """Refit every member on its bootstrap; report validation metrics."""
        cfg = self.cfg
        usable = [c for c in comparisons if c.judgement.target is not None]
        new = [c for c in usable if c.query_id not in self.seen_queries]
        if new:  # standardise inputs by the (live) steps of the segments labelled so far
            raw = np.concatenate([np.concatenate(self._segment_features(c)) for c in new])
            self.feature_rms.update(raw[raw[:, -1] == 0, :-1])
            self.seen_queries.update(c.query_id for c in new)
        parts = split(
            [c.query_id for c in usable],
            len(self.member_scale[0]),
            cfg.validation,
            cfg.val_fraction,
            self.rng,
        )
        if parts is None:
            return {}
        data = self._pairs(usable)
        schedule = Schedule(
            cfg.batch_size, cfg.max_epochs, cfg.patience, cfg.min_steps, cfg.robust_trim
        )
        fit_members(
            _Members(self, data),
            self.optimizer,
            parts,
            schedule,
            self.rng,
            self.fits == 0 or self.cold,
        )
        boot, held = parts.boot, parts.held
        train_idx = np.flatnonzero(~held)
        self.trained_on = [{data.query_ids[i] for i in b} for b in boot]
        self.fits += 1
        self.cold = False
        with torch.no_grad():
            steps = self._member_rewards(torch.cat([data.left[train_idx], data.right[train_idx]]))
            steps = steps.flatten(1)
            self.member_scale = torch.stack(
                [steps.mean(1, keepdim=True), steps.std(1, keepdim=True).clamp_min(1e-6)]
            )
        return {"rm_fits": self.fits, "rm_labels": len(usable), **self._metrics(data, held)}

    def _member_losses(self, data: PairData, idx: torch.Tensor) -> torch.Tensor:
        """[M, B] Bradley–Terry loss of member m on comparisons idx[m] (with the per-part loss
        of `reward/process.py` where they carry process feedback)."""
        M, B = idx.shape
        k, F = data.left.shape[1:]
        x = torch.cat([data.left[idx], data.right[idx]], dim=1).reshape(M, -1, F)
        steps = self.net(x).reshape(M, 2 * B, k)
        returns = steps.sum(-1)
        scale = data.scale[idx] if isinstance(data.scale, torch.Tensor) else data.scale
        noise = self.cfg.label_noise
        loss = bradley_terry_loss(
            returns[:, :B], returns[:, B:], data.target[idx], noise, "none", scale
        )
        if data.parts is not None:
            parts = part_loss(steps[:, :B], steps[:, B:], data.parts[idx], noise, scale)
            loss = loss + self.cfg.part_weight * parts
        return loss

    @torch.no_grad()
    def _metrics(self, data: PairData, held: np.ndarray) -> dict:
        """Training loss/accuracy of the ensemble mean, and validation loss/accuracy on
        comparisons the scoring members never trained on (out-of-bag or the held-out split)."""
        train = np.flatnonzero(~held)
        returns = self._member_rewards(torch.cat([data.left, data.right])).sum(-1)
        n = len(data.target)
        left, right = returns[:, :n], returns[:, n:]
        out = {"rm_train_loss": self._loss(left.mean(0), right.mean(0), data.target, train)}
        out["rm_train_acc"] = self._accuracy(left.mean(0), right.mean(0), data.target, train)
        unseen = self._unseen(data.query_ids)
        if self.cfg.validation == "held_out":
            unseen = torch.as_tensor(held, dtype=torch.float32).expand_as(unseen)
        rows = np.flatnonzero((unseen.sum(0) > 0).numpy())
        out["rm_val_pairs"] = len(rows)
        if len(rows):
            w = unseen / unseen.sum(0).clamp_min(1)
            lv, rv = (left * w).sum(0), (right * w).sum(0)
            out["rm_val_loss"] = self._loss(lv, rv, data.target, rows)
            out["rm_val_acc"] = self._accuracy(lv, rv, data.target, rows)
        return out

    def _loss(self, left, right, target, rows) -> float:
        rows = torch.as_tensor(rows, dtype=torch.long)
        return float(
            bradley_terry_loss(left[rows], right[rows], target[rows], self.cfg.label_noise)
        )

    @staticmethod
    def _accuracy(left, right, target, rows) -> float:
        """Share of strict preferences (not ties) whose side the returns get right."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        left, right, target = left[rows], right[rows], target[rows]
        strict = target != 0.5
        if not strict.any():
            return float("nan")
        return float(((left > right).float() == target)[strict].float().mean())

    # -- checkpoints ------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "net": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "feature_rms": self.feature_rms.state_dict(),
            "seen_queries": sorted(self.seen_queries),
            "trained_on": [sorted(s) for s in self.trained_on],
            "rng": self.rng.bit_generator.state,
            "fits": self.fits,
            "member_scale": self.member_scale,
            "annotator_scale": self.annotator_scale,
        }

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.feature_rms.load_state_dict(state["feature_rms"])
        self.seen_queries = set(state["seen_queries"])
        self.trained_on = [set(s) for s in state["trained_on"]]
        self.rng.bit_generator.state = state["rng"]
        self.fits = state["fits"]
        self.member_scale = state["member_scale"]
        self.annotator_scale = dict(state.get("annotator_scale", {}))
