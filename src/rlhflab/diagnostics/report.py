"""The run report: what a run did, built from its run directory alone.

`build_report(RUN_DIR)` writes
  RUN_DIR/report.html    one self-contained page: plots embedded as base64 PNG, clips as H.264
                         MP4 (GIF in older runs); no scripts, no external resources — it opens
                         offline;
  RUN_DIR/report.md      the numbers as Markdown;
  RUN_DIR/disclosure.md  the Casper et al. 2023 §5 disclosure sheet, for the run's owner.

Sections of a control run (`Report`): results and alarms; learning curves (gold and proxy return,
KL, entropy, labels against env steps); over-optimisation (gold and proxy against √KL as in Gao
et al. 2023, ensemble disagreement on policy samples with its early band); the reward model
(held-out accuracy over refits, calibration, learned against true segment returns, EPIC distance
to the true reward); feedback (labels per annotator, agreement, tie and can't-tell rates, position
bias, time per label); clips from the start and the end of training; the disclosure sheet; the
config. Language-model runs get `text_report.TextReport`. Each section is laid out by a Jinja2
template (`templates/`), which escapes every string read from the run directory.
"""

from __future__ import annotations

import base64
import math
from pathlib import Path

import numpy as np

from rlhflab.diagnostics import disclosure
from rlhflab.diagnostics.alarms import ALARMS, AlarmMonitor, first_firings
from rlhflab.diagnostics.annotators import annotators_section
from rlhflab.diagnostics.calibration import Reliability, reliability
from rlhflab.diagnostics.epic import epic_distance
from rlhflab.diagnostics.report_base import (
    BaseReport,
    RunData,
    Section,
    counted,
    figure,
    fmt,
    img,
    load_run,
    png,
    render,
    write_pages,
)
from rlhflab.diagnostics.text_report import TextReport
from rlhflab.feedback.agreement import annotator_stats, inter_annotator_agreement
from rlhflab.types import Judgement

POLICY_NAMES = {
    "rlhf": "RLHF (learned reward)",
    "true_reward_baseline": "PPO on the true reward",
    "random": "random",
}


# -- evaluation from saved data ------------------------------------------------------------------
def samples_epic(s: dict) -> float:
    """EPIC distance between the true reward and r̂ on one saved sample (NaN without
    counterfactual true rewards)."""
    true, r_hat = s["true"], s["r_hat"]
    if true.shape[1] < 2 or not np.isfinite(true).all() or not np.isfinite(r_hat).all():
        return float("nan")
    idx = np.arange(len(true))
    t = idx[:-1][s["episode"][:-1] == s["episode"][1:]]  # transitions (i, a_i, i+1) in one episode

    def lookup(table: np.ndarray):
        """States and actions are indices into the saved table."""
        return lambda si, ai, _s2: table[si, ai]

    return epic_distance(
        lookup(true),
        lookup(r_hat),
        t,
        np.zeros_like(t),
        t + 1,
        idx,
        np.arange(1, true.shape[1]),
        float(s["gamma"]),
    )


def segment_returns(
    s: dict, length: int, stride: int = 5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(true, r̂, episode) sums over windows of `length` steps (taken actions) inside each saved
    episode."""
    out = []
    for e in np.unique(s["episode"]):
        rows = np.flatnonzero(s["episode"] == e)
        for start in range(0, len(rows) - length + 1, stride):
            w = rows[start : start + length]
            out.append((s["true"][w, 0].sum(), s["r_hat"][w, 0].sum(), e))
    a = np.array(out, float).reshape(-1, 3)
    return a[:, 0], a[:, 1], a[:, 2]


def rm_calibration(data: RunData) -> tuple[Reliability | None, str]:
    """Reliability of the final reward model (checkpoint) on the held-out strict judgements."""
    ckpt_path = data.path / "checkpoints" / "latest.pt"
    if not ckpt_path.exists():
        return None, "no checkpoint"
    import torch

    from rlhflab.envs.wrappers import make_env
    from rlhflab.reward.model import RewardEnsemble, is_validation

    held_out = [
        c
        for c in data.comparisons
        if c.judgement in (Judgement.LEFT, Judgement.RIGHT)
        and (
            data.cfg.reward.validation == "out_of_bag"
            or is_validation(c.query_id, data.cfg.reward.val_fraction)
        )
    ]
    if not held_out:
        return None, "no held-out judgements"
    env = make_env(data.cfg.env.id, data.cfg.env.horizon, data.cfg.env.kwargs)
    obs_dim = int(np.prod(env.observation_space.shape or ()))
    model = RewardEnsemble(obs_dim, env.action_space, data.cfg.reward)
    env.close()
    model.load_state_dict(torch.load(ckpt_path, weights_only=False)["reward_model"])
    p = model.held_out_preferences(held_out)
    keep = ~np.isnan(p)  # judgements every member trained on have no honest probability
    if not keep.any():
        return None, "no held-out judgements"
    labels = np.array([c.judgement == Judgement.LEFT for c in held_out], float)
    return reliability(p[keep], labels[keep]), f"{int(keep.sum())} held-out judgements"


def _mark_alarms(ax, alarms: dict[str, dict]) -> None:
    for a in alarms.values():
        if a["env_steps"] is not None:
            ax.axvline(a["env_steps"], color="crimson", ls=":", lw=1)


def _last_rlhf(metrics: list[dict], key: str | None = None) -> dict:
    """The last RLHF record (that has a float `key`, when given); {} if there is none."""
    for r in reversed(metrics):
        if r.get("phase") == "rlhf" and (key is None or isinstance(r.get(key), float)):
            return r
    return {}


def _plot_refits(ax, metrics: list[dict]) -> None:
    """Held-out and training accuracy of the reward model at each refit."""
    refits: dict[int, tuple] = {}
    for r in metrics:
        if (
            r.get("phase") == "rlhf"
            and r.get("rm_fits") is not None
            and isinstance(r.get("rm_val_acc"), float)
        ):
            refits.setdefault(r["rm_fits"], (r["rm_val_acc"], r.get("rm_train_acc")))
    if refits:
        fits = sorted(refits)
        ax.plot(fits, [refits[f][0] for f in fits], "o-", label="held-out")
        ax.plot(fits, [refits[f][1] for f in fits], "x--", alpha=0.6, label="training")
        ax.legend(fontsize=7)
    ax.set_title("accuracy over refits")
    ax.set_xlabel("refit")


def _plot_reliability(ax, rel: Reliability | None, about: str) -> None:
    if rel is not None:
        ok = rel.count > 0
        ax.plot([0, 1], [0, 1], color="gray", lw=1)
        centres = (rel.edges[:-1] + rel.edges[1:])[ok] / 2
        width = np.diff(rel.edges)[ok] * 0.9
        ax.bar(centres, rel.frequency[ok], width=width, alpha=0.6, edgecolor="k")
        ax.plot(rel.mean_prediction[ok], rel.frequency[ok], "o", color="k")
    ax.set_title(f"reliability: ECE {fmt(rel.ece if rel else None)} ({about})", fontsize=9)
    ax.set_xlabel("predicted P̂[left ≻ right]")
    ax.set_ylabel("share judged left")


def _plot_learned_vs_true(ax, s: dict, length: int) -> None:
    true, pred, episode = segment_returns(s, length)
    for e, name in enumerate(s["source"]):
        ax.plot(true[episode == e], pred[episode == e], ".", alpha=0.6, label=f"{name} episode")
    spread = len(true) > 1 and np.std(true) > 0 and np.std(pred) > 0
    rho = np.corrcoef(true, pred)[0, 1] if spread else float("nan")
    ax.set_title(f"learned vs true, {length}-step segments (ρ = {fmt(rho, '.2f')})", fontsize=9)
    ax.set_xlabel(f"true segment return (iteration {int(s['iteration'])})")
    ax.set_ylabel("Σ r̂")
    ax.legend(fontsize=7)


def _plot_feedback(ax, stats, comparisons) -> None:
    """Labels per annotator by answer, labels over env steps, and time per label."""
    bottom = np.zeros(len(stats))
    for j in Judgement:
        counts = np.array([s.counts.get(j.value, 0) for s in stats], float)
        names = [s.annotator for s in stats]
        ax[0].bar(names, counts, bottom=bottom, label=disclosure.LABELS[j.value])
        bottom += counts
    ax[0].set_title("labels per annotator")
    ax[0].legend(fontsize=7)
    steps = sorted(c.left.env_steps for c in comparisons)
    ax[1].plot(steps, np.arange(1, len(steps) + 1), drawstyle="steps-post")
    ax[1].set_title("labels against the env steps of their segments")
    ax[1].set_xlabel("env steps")
    seconds = [c.extra["seconds"] for c in comparisons if c.extra.get("seconds") is not None]
    if seconds:
        ax[2].hist(seconds, bins=20)
        ax[2].set_title("time per label (s)")
    else:
        message = "time per label not recorded\n(simulated annotator)"
        ax[2].text(0.5, 0.5, message, ha="center", va="center", transform=ax[2].transAxes)
        ax[2].set_axis_off()


def _annotator_row(s) -> dict:
    """One annotator's line of the feedback table, formatted."""
    bias = "n/a" if s.left_share is None else f"{s.left_share:.0%} ± {s.left_share_halfwidth:.0%}"
    return {
        "annotator": s.annotator,
        "labels": s.labels,
        "rates": [f"{s.rate(j):.0%}" for j in Judgement],
        "gold": fmt(s.gold_agreement, ".0%"),
        "gold_pairs": s.gold_pairs,
        "bias": bias,
        "seconds": "not recorded" if s.median_seconds is None else f"{s.median_seconds:.1f}",
    }


def _clip_view(clip: dict, when: str, rows: int = 25) -> dict:
    """What the clips template shows of one saved episode: its clip, or its first steps."""
    caption = (
        f"{when}: iteration {int(clip['iteration'])}, {int(clip['env_steps'])} env steps · "
        f"true return {float(np.sum(clip['true'])):.1f} · "
        f"Σ r̂ {fmt(float(np.nansum(clip['r_hat'])), '.2f')}"
    )
    media = clip.get("media")
    src = media and f"data:{media[0]};base64," + base64.b64encode(media[1]).decode()
    steps = [
        {
            "t": t,
            "obs": np.array2string(clip["obs"][t], precision=2, separator=", "),
            "action": np.array2string(np.asarray(clip["actions"][t]), precision=2),
            "true": clip["true"][t],
            "r_hat": clip["r_hat"][t],
        }
        for t in range(min(rows, len(clip["obs"])) if not src else 0)
    ]
    return {
        "caption": caption,
        "src": src,
        "video": media is not None and media[0].startswith("video/"),
        "suffix": "mp4" if media is not None and media[0] == "video/mp4" else "gif",
        "iteration": int(clip["iteration"]),
        "render_error": str(clip.get("render_error", "")),
        "steps": steps,
    }


class Report(BaseReport):
    """The report of a control run."""

    def __init__(self, data: RunData):
        super().__init__(data)
        self.alarms = first_firings(data.metrics)

    def sections(self) -> list[Section]:
        return self._build(
            (
                self.overview,
                self.learning_curves,
                self.overoptimisation,
                self.reward_model,
                self.feedback,
                self.annotators,
                self.clips,
                self.disclosure,
                self.config,
            )
        )

    # results and alarms
    def overview(self) -> Section:
        d, s = self.data, self.data.summary
        last = _last_rlhf(d.metrics)
        early_stop = (
            last
            and last["env_steps"] < d.cfg.env_steps
            and d.cfg.alarms.stop
            and last.get("alarms")
        )
        context = {
            "summary": s,
            "returns": [
                (POLICY_NAMES.get(k, k), v) for k, v in (s or {}).get("true_return", {}).items()
            ]
            + [  # with groups of annotators: what each group's own true reward says
                (f"RLHF, by group {g}'s true reward", v)
                for g, v in (s or {}).get("group_true_return", {}).items()
            ],
            "stopped": last["env_steps"] if early_stop else None,
            "env_steps": d.cfg.env_steps,
            "alarms": self.alarms,
            "labels": counted(d.labels, "label"),
        }
        return Section(
            "Results", render("overview.html", **context), render("overview.md", **context)
        )

    def learning_curves(self) -> Section:
        d = self.data
        fig, ax = figure(2, 3)
        for phase, style, label in (("rlhf", "-", "RLHF"), ("baseline", "--", "true-reward PPO")):
            x, y = d.series("true_return", phase)
            ax[0].plot(x, y, style, alpha=0.5, label=f"{label} (rollouts)")
            x, y = d.series("eval_true_return", phase)
            ax[0].plot(x, y, "o" + style, label=f"{label} (evaluation)")
            x, y = d.series("entropy", phase)
            ax[3].plot(x, y, style, label=label)
        if d.summary and "random" in d.summary["true_return"]:
            ax[0].axhline(d.summary["true_return"]["random"], color="gray", lw=1, label="random")
        ax[0].set_title("gold (true) return")
        ax[1].plot(*d.series("proxy_return"))
        ax[1].set_title("proxy return Σ r̂ (policy's objective)")
        ax[2].plot(*d.series("kl"), label="KL(π‖π_ref)")
        ax[2].plot(*d.series("approx_kl"), label="KL per update")
        ax[2].set_title("KL (nats per step)")
        ax[3].set_title("policy entropy (nats)")
        ax[4].plot(*d.series("labels"), drawstyle="steps-post")
        ax[4].set_title("labels")
        self._plot_alarms(ax[5], ax[4].get_xlim())
        for a in ax:
            a.set_xlabel("env steps")
            _mark_alarms(a, self.alarms)
            if a.get_legend_handles_labels()[0]:
                a.legend(fontsize=7)
        note = (
            "Dotted red lines: the first firing of each alarm. The proxy's scale is arbitrary "
            "(Bradley–Terry fixes only differences) and shifts at every refit; watch its trend "
            "against the gold."
        )
        return Section("Learning curves", img(png(fig), "learning curves", note))

    def _plot_alarms(self, ax, xlim) -> None:
        names = list(ALARMS)
        for r in self.data.metrics:
            for a in r.get("alarms") or []:
                row = names.index(a["alarm"]) if a["alarm"] in names else -1
                ax.plot(r["env_steps"], row, "|", color="crimson", ms=12)
        ax.set_yticks(range(len(names)), [n.replace("_", " ") for n in names], fontsize=8)
        ax.set_ylim(-0.5, len(names) - 0.5)
        ax.set_xlim(xlim)
        ax.set_title("alarms firing")

    def overoptimisation(self) -> Section:
        d = self.data
        fig, ax = figure(1, 2)
        xs, kl = d.series("kl")
        steps = {r["env_steps"]: r for r in d.metrics if r.get("phase") == "rlhf"}
        if len(kl):
            root = np.sqrt(kl)
            gold = [steps[x].get("true_return") for x in xs]
            proxy = [steps[x].get("proxy_return") for x in xs]
            ax[0].plot(root, gold, ".", label="gold (true return)")
            twin = ax[0].twinx()
            twin.plot(root, proxy, ".", color="tab:orange", label="proxy return")
            twin.set_ylabel("proxy", color="tab:orange")
            ax[0].set_xlabel("√KL(π‖π_ref)")
            ax[0].legend(fontsize=7, loc="upper left")
        ax[0].set_title("gold and proxy against √KL (Gao et al. 2023)")
        x, y = d.series("rm_disagreement")
        ax[1].plot(x, y, label="disagreement on policy samples")
        monitor = AlarmMonitor(d.cfg.alarms, [r for r in d.metrics if r.get("phase") == "rlhf"])
        band = monitor.disagreement_band()
        if band is not None:
            ax[1].axhspan(0, band, color="tab:green", alpha=0.12, label="early band")
        ax[1].set_title("ensemble disagreement std P̂ on fresh policy segments")
        ax[1].set_xlabel("env steps")
        ax[1].legend(fontsize=7)
        _mark_alarms(ax[1], self.alarms)
        note = (
            "π_ref is the policy as initialised. A proxy that keeps rising while the gold stalls "
            "or falls is over-optimisation; rising disagreement means the policy has gone where "
            "the reward model has few labels."
        )
        return Section("Over-optimisation", img(png(fig), "over-optimisation", note))

    def reward_model(self) -> Section:
        d = self.data
        fig, ax = figure(1, 4, width=16, height=3.8)
        _plot_refits(ax[0], d.metrics)
        rel, about = rm_calibration(d)
        if rel is not None:
            self.facts["ece"] = rel.ece
        _plot_reliability(ax[1], rel, about)
        if d.samples:
            _plot_learned_vs_true(ax[2], d.samples[-1], d.cfg.feedback.segment_length)
            epic = [(int(s["env_steps"]), samples_epic(s)) for s in d.samples]
            ax[3].plot([e[0] for e in epic], [e[1] for e in epic], "o-")
            ax[3].set_ylim(0, 1)
            self.facts["epic"] = epic[-1][1] if math.isfinite(epic[-1][1]) else None
            self.facts["epic_series"] = epic
        ax[3].set_title("EPIC distance to the true reward")
        ax[3].set_xlabel("env steps")
        last = _last_rlhf(d.metrics, "rm_val_acc")
        self.facts |= {"val_acc": last.get("rm_val_acc"), "val_pairs": last.get("rm_val_pairs")}
        context = {
            "val_acc": last.get("rm_val_acc"),
            "val_pairs": last.get("rm_val_pairs", "n/a"),
            "ece": self.facts.get("ece"),
            "about": about,
            "epic": self.facts.get("epic"),
            "no_epic": self.facts.get("epic") is None and bool(d.samples),
            "figure": img(png(fig), "reward model evaluation"),
        }
        return Section(
            "Reward model",
            render("reward_model.html", **context),
            render("reward_model.md", **context),
        )

    def _annotators(self):
        if "annotators" not in self.facts:
            comparisons = self.data.comparisons
            self.facts["annotators"] = annotator_stats(comparisons)
            self.facts["inter_rater"] = inter_annotator_agreement(comparisons)
        return self.facts["annotators"], self.facts["inter_rater"]

    def feedback(self) -> Section:
        d = self.data
        stats, inter = self._annotators()
        if not stats:
            return Section(
                "Feedback", "<p>No judgements in the feedback store.</p>", "No judgements.\n"
            )
        inter_text = (
            f"Inter-annotator agreement: {inter[0]:.0%} over {inter[1]} pairs of judgements of "
            "the same query."
            if inter[1]
            else "No query was judged by more than one annotator, so inter-annotator agreement "
            "cannot be measured."
        )
        fig, ax = figure(1, 3, height=3.2)
        _plot_feedback(ax, stats, d.comparisons)
        context = {
            "rows": [_annotator_row(s) for s in stats],
            "inter_text": inter_text,
            "figure": img(png(fig), "feedback"),
        }
        return Section(
            "Feedback", render("feedback.html", **context), render("feedback.md", **context)
        )

    def annotators(self) -> Section | None:
        """Per-annotator truth and estimates (populations, reliability, flags)."""
        return annotators_section(self.data)

    def clips(self) -> Section | None:
        d = self.data
        if not d.clips:
            return None
        chosen = [d.clips[0]] + ([d.clips[-1]] if len(d.clips) > 1 else [])
        whens = ("start of training", "end of training")
        views = [_clip_view(clip, when) for clip, when in zip(chosen, whens)]
        return Section("Clips", render("clips.html", clips=views), render("clips.md", clips=views))

    def disclosure(self) -> Section:
        d = self.data
        stats, inter = self._annotators()
        items = disclosure.disclosure_sheet(d.cfg, d.summary, self.alarms, stats, inter, self.facts)
        self.facts["disclosure_md"] = disclosure.to_markdown(items)
        return Section(
            "Disclosure sheet",
            render("disclosure_note.html", sheet=disclosure.to_html(items)),
            self.facts["disclosure_md"].split("\n", 2)[2],
        )


def build_report(run_dir: str | Path) -> Path:
    """Write report.html, report.md and disclosure.md into the run directory; return the HTML
    path."""
    data = load_run(run_dir)
    cfg = data.cfg
    report = TextReport(data) if cfg.text else Report(data)
    sections = report.sections()
    title = f"rlhflab report: {cfg.task}"
    if cfg.text:
        what = f"{cfg.text.model} · {cfg.text.labels} comparisons"
    else:
        n, wanted = data.labels, cfg.feedback.labels
        labels = counted(n, "label") + ("" if n == wanted else f" (of {wanted} configured)")
        what = f"{cfg.env.id} · {labels} · {cfg.env_steps} env steps"
    subtitle = f"{data.path.resolve()} · {what} · seed {cfg.seed}"
    out = write_pages(data.path / "report.html", title, subtitle, sections)
    if "disclosure_md" in report.facts:
        (data.path / "disclosure.md").write_text(report.facts["disclosure_md"])
    return out
