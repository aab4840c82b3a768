"""Over-optimisation alarms, checked on every metrics record while the policy trains.

Optimising a learned reward r̂ hard enough finds where it is wrong: the proxy return keeps
rising while the gold score stalls or falls (Goodhart's law; Gao et al. 2023, "Scaling laws
for reward model overoptimization"; Casper et al. 2023 §3.3–3.4). Without the gold score,
four signs are visible during training:

  proxy_vs_disagreement  the proxy return rises (least-squares slope over the last W records > 0)
                         while the ensemble's disagreement on fresh policy samples d_t leaves its
                         early band:  d_t > μ₀ + k·max(σ₀, μ₀/10),  μ₀, σ₀ over the first E records.
                         The policy is going where the reward model has no labels (the same spread
                         of P̂ picks queries in Christiano et al. 2017 §2.2.4);
  kl_budget              KL(π‖π_ref) per step above a budget;
  entropy_collapse       the policy's entropy below a share of its first value (mode collapse);
  rm_accuracy_drop       held-out reward-model accuracy below its best earlier value by more than
                         max(δ, 2 s.e.) (the standard error of a difference of two
                         proportions) — the distribution shift of training reward model and
                         policy together (Casper et al. 2023 §3.4).

A condition must hold for `patience` consecutive records before its alarm fires, and the alarm
stays on while it holds. The monitor is a function of the records alone, so a resumed run or a
report rebuilds it from `metrics.jsonl`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from rlhflab.config import AlarmConfig

ALARMS = {
    "proxy_vs_disagreement": (
        "proxy rising while ensemble disagreement on policy samples leaves its early band"
    ),
    "kl_budget": "KL to the reference policy beyond the budget",
    "entropy_collapse": "policy entropy collapsed",
    "rm_accuracy_drop": "reward-model held-out accuracy fell after a refit",
}


def no_acting_steps(record: dict) -> bool:
    """A rollout spent wholly in absorbing states: the update had no acting step and reports
    zeros."""
    return (
        record.get("entropy") == 0.0
        and record.get("policy_loss") == 0.0
        and record.get("approx_kl") == 0.0
    )


def _num(value) -> float | None:
    """A finite float, or None for missing, None or NaN."""
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


class AlarmMonitor:
    def __init__(self, cfg: AlarmConfig, history: Sequence[dict] = ()):
        self.cfg = cfg
        self.history: list[dict] = []
        self.streak = {name: 0 for name in ALARMS}
        for record in history:  # replayed silently (a resumed run)
            self.check(record)

    def check(self, record: dict) -> list[dict]:
        """Add one metrics record; return the alarms firing now as {alarm, message} dicts."""
        self.history.append(record)
        fired = []
        for name in ALARMS:
            message = getattr(self, "_" + name)(record)
            self.streak[name] = self.streak[name] + 1 if message else 0
            if message and self.streak[name] >= self.cfg.patience:
                fired.append({"alarm": name, "message": message})
        return fired

    def _series(self, key: str) -> list[float]:
        return [v for r in self.history if (v := _num(r.get(key))) is not None]

    def disagreement_band(self) -> float | None:
        """Upper edge of the early band of ensemble disagreement, once the early records are in."""
        early = self._series("rm_disagreement")[: self.cfg.early_iterations]
        if len(early) < self.cfg.early_iterations:
            return None
        mean = float(np.mean(early))
        return mean + self.cfg.band_width * max(float(np.std(early)), mean / 10)

    def _proxy_vs_disagreement(self, record: dict) -> str | None:
        d, band = _num(record.get("rm_disagreement")), self.disagreement_band()
        proxy = self._series("proxy_return")[-self.cfg.trend_window :]
        if d is None or band is None or d <= band or len(proxy) < self.cfg.trend_window:
            return None
        slope = np.polyfit(np.arange(len(proxy)), proxy, 1)[0]
        if slope <= 0:
            return None
        return (
            f"proxy return rising ({slope:+.3g}/iteration) while ensemble disagreement on "
            f"policy samples {d:.3g} is above its early band (≤ {band:.3g})"
        )

    def _kl_budget(self, record: dict) -> str | None:
        kl = _num(record.get("kl"))
        if self.cfg.kl_budget is None or kl is None or kl <= self.cfg.kl_budget:
            return None
        return f"KL(π‖π_ref) {kl:.3g} nats per step is beyond the budget {self.cfg.kl_budget:.3g}"

    def _entropy_collapse(self, record: dict) -> str | None:
        entropy = None if no_acting_steps(record) else _num(record.get("entropy"))
        series = [
            v
            for r in self.history
            if not no_acting_steps(r) and (v := _num(r.get("entropy"))) is not None
        ]
        if (
            entropy is None
            or not series
            or series[0] <= 0
            or entropy >= self.cfg.entropy_collapse * series[0]
        ):
            return None
        return (
            f"policy entropy {entropy:.3g} is below {self.cfg.entropy_collapse:.0%} of its "
            f"first value {series[0]:.3g}"
        )

    def _rm_accuracy_drop(self, record: dict) -> str | None:
        acc = _num(record.get("rm_val_acc"))
        earlier = [
            (v, _num(r.get("rm_val_pairs")))
            for r in self.history[:-1]
            if (v := _num(r.get("rm_val_acc"))) is not None
        ]
        if acc is None or not earlier:
            return None
        best, n_best = max(earlier, key=lambda e: e[0])
        n = _num(record.get("rm_val_pairs"))
        se = math.sqrt(best * (1 - best) / n_best + acc * (1 - acc) / n) if n and n_best else 0.0
        margin = max(self.cfg.rm_acc_drop, 2 * se)
        if best - acc <= margin:
            return None
        return (
            f"reward-model held-out accuracy {acc:.2f} is {best - acc:.2f} below its best "
            f"{best:.2f} (allowed {margin:.2f})"
        )


def first_firings(records: list[dict]) -> dict[str, dict]:
    """For each alarm that fired in a run's records: the first record it fired in and its
    message."""
    first: dict[str, dict] = {}
    for r in records:
        for a in r.get("alarms") or []:
            first.setdefault(
                a["alarm"],
                {
                    "env_steps": r.get("env_steps"),
                    "iteration": r.get("iteration"),
                    "message": a["message"],
                },
            )
    return first
