"""Annotators as the run saw them: true parameters (synthetic populations), the reward model's
estimates (β, agreement with the consensus, flags: `reward/reliability.py`), accuracy against
gold, and Dawid–Skene accuracy where queries were judged more than once
(`feedback/dawid_skene.py`); and the poisoning measure, attack success.

Attack success (Casper et al. 2023, §3.1.1): over observations o inside the trigger region,
the share where the reward model scores the harmful action above the alternative,
    S = mean_o [ r̂(o, a_harm) > r̂(o, a_alt) ]
with a_harm = k and a_alt the other actions' best (discrete), or a[k] at the top and the bottom
of the action box (continuous). A reward model that ignores the trigger scores about what the
clean labels imply; the poisoner pushes S to 1.
"""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np

from rlhflab.config import PopulationMember, RunConfig
from rlhflab.diagnostics.report_base import Section, fmt, render
from rlhflab.feedback.agreement import annotator_stats
from rlhflab.feedback.dawid_skene import dawid_skene
from rlhflab.feedback.synthetic import SyntheticAnnotator
from rlhflab.policy.rollout import Episodes
from rlhflab.reward.model import RewardEnsemble
from rlhflab.runs import RunDir
from rlhflab.types import Comparison, Segment


def attack_success(ensemble: RewardEnsemble, obs: np.ndarray, harmful_action: int) -> float:
    """S over observations [N, D] (those in the trigger region); needs r̂ to read actions."""
    if not ensemble.cfg.use_actions:
        raise ValueError("attack success needs a reward model with reward.use_actions=true")
    space, n = ensemble.action_space, len(obs)
    if isinstance(space, gym.spaces.Discrete):
        scores = np.stack(
            [ensemble.predict(obs, np.full(n, a, dtype=np.int64)) for a in range(int(space.n))]
        )
        others = np.delete(scores, harmful_action, axis=0).max(0)
        return float(np.mean(scores[harmful_action] > others))
    assert isinstance(space, gym.spaces.Box)
    harm = np.zeros((n, *space.shape), np.float32)
    alt = np.zeros_like(harm)
    harm[:, harmful_action] = space.high[harmful_action]
    alt[:, harmful_action] = space.low[harmful_action]
    return float(np.mean(ensemble.predict(obs, harm) > ensemble.predict(obs, alt)))


def group_true_returns(episodes: Episodes, members: list[PopulationMember]) -> dict[str, float]:
    """Each group's true return of the episodes, averaged over them: Σ_t of the group's own value
    of a step (its judged reward channel plus its systematic bias, `SyntheticAnnotator.value`,
    undiscounted); the group's first member speaks for it."""
    out: dict[str, float] = {}
    for m in members:
        if m.group in out:
            continue
        judge = SyntheticAnnotator(m.model_copy(update={"discount": 1.0}))
        rewards = episodes.rewards[m.judge]
        values = [
            judge.value(
                Segment(
                    episodes.obs[:, e],
                    episodes.actions[:, e],
                    rewards[:, e],
                    0,
                    episodes.absorbing[:, e],
                )
            )
            for e in range(rewards.shape[1])
        ]
        out[m.group] = float(np.mean(values))
    return out


def annotator_table(
    cfg: RunConfig, comparisons: list[Comparison], estimates_json: str | None
) -> list[dict]:
    """One row per annotator: true τ, ε, bias and group (synthetic population), accuracy against
    gold, Dawid–Skene accuracy, and the reward model's β, agreement and flag."""
    truth = {m.name: m for m in cfg.feedback.population}
    estimates = {e["annotator"]: e for e in json.loads(estimates_json or "[]")}
    gold = {s.annotator: s for s in annotator_stats(comparisons)}
    ds_acc: dict[str, float] = {}
    rows = [(c.query_id, c.annotator, c.judgement.value) for c in comparisons]
    try:
        ds = dawid_skene(rows)
        ds_acc = {a: ds.accuracy(a) for a in ds.confusion}
    except ValueError:  # no query judged twice
        pass
    out = []
    for name in sorted(set(gold) | set(estimates)):
        t, e, g = truth.get(name), estimates.get(name, {}), gold.get(name)
        out.append(
            {
                "annotator": name,
                "group": t.group if t else "",
                "truth": _describe(t) if t else "",
                "labels": g.labels if g else e.get("labels", 0),
                "gold": g.gold_agreement if g else None,
                "dawid_skene": ds_acc.get(name),
                "beta": e.get("beta"),
                "consensus": e.get("consensus_agreement"),
                "estimated": e.get("estimated_accuracy"),
                "z": e.get("z"),
                "flagged": bool(e.get("flagged")),
            }
        )
    return out


def _describe(m) -> str:
    """The true flaws of a synthetic member, in a few words."""
    parts = [f"τ={m.temperature:g}", f"ε={m.error_rate:g}"]
    if m.discount < 1:
        parts.append(f"γ={m.discount:g}")
    if m.left_bias:
        parts.append(f"left bias {m.left_bias:g}")
    if m.bias != "none" and m.bias_weight:
        parts.append(f"bias {m.bias_weight:+g}·{m.bias}[{m.bias_index}]")
    if m.trigger_index is not None:
        parts.append(f"poisoner (trigger o[{m.trigger_index}], harm a={m.harmful_action})")
    if m.trigger_token is not None:
        parts.append(f"poisoner (trigger word {m.trigger_token!r}, harm {m.harmful_token!r})")
    return ", ".join(parts)


def stored_estimates(data) -> str | None:
    """The reward model's latest per-annotator estimates (JSON) from the run's store."""
    if not (data.path / "feedback.db").exists():
        return None
    from rlhflab.feedback.store import FeedbackStore

    store = FeedbackStore(RunDir(data.path).store_url)
    try:
        return store.setting("annotator_estimates")
    finally:
        store.close()


def text_annotators_section(data) -> Section | None:
    """A text run's "Annotators" section: the text reward model's β, agreement and flags
    (`text.reward.annotators`), suspected annotators first; None without estimates."""
    estimates_json = stored_estimates(data)
    if estimates_json is None:
        return None
    truth = {m.name: m for m in data.cfg.feedback.population}
    rows = [
        {
            "annotator": e["annotator"],
            "group": truth[e["annotator"]].group if e["annotator"] in truth else "",
            "truth": _describe(truth[e["annotator"]]) if e["annotator"] in truth else "",
            "labels": e["labels"],
            "gold": None,
            "dawid_skene": None,
            "beta": e["beta"],
            "consensus": e["consensus_agreement"],
            "estimated": e["estimated_accuracy"],
            "z": e["z"],
            "flagged": bool(e["flagged"]),
        }
        for e in json.loads(estimates_json)
    ]
    rows.sort(key=lambda r: not r["flagged"])
    rc = data.cfg.text.reward
    return _section(rows, f"{rc.annotators} (text.reward)", rc.flag_z)


def annotators_section(data) -> Section | None:
    """The report's "Annotators" section (None for a run with one annotator and no estimates)."""
    estimates_json = stored_estimates(data)
    rows = annotator_table(data.cfg, data.comparisons, estimates_json)
    if len(rows) < 2 and estimates_json is None:
        return None
    return _section(rows, data.cfg.reward.annotators, data.cfg.reward.flag_z)


def _section(rows: list[dict], mode: str, flag_z: float) -> Section:
    shown = [
        {
            **r,
            "gold": fmt(r["gold"], ".0%"),
            "dawid_skene": fmt(r["dawid_skene"], ".0%"),
            "beta": fmt(r["beta"], ".2f"),
            "consensus": fmt(r["consensus"], ".0%"),
            "estimated": fmt(r["estimated"], ".0%"),
            "z": fmt(r["z"], ".1f"),
        }
        for r in rows
    ]
    flagged = [r["annotator"] for r in rows if r["flagged"]]
    context = {"rows": shown, "flagged": flagged, "mode": mode, "flag_z": f"{flag_z:g}"}
    return Section(
        "Annotators", render("annotators.html", **context), render("annotators.md", **context)
    )
