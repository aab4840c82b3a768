"""The run report: what a run did, built from its run directory alone.

`build_report(RUN_DIR)` writes
  RUN_DIR/report.html    one self-contained page: plots embedded as base64 PNG (clips as GIF),
                         no scripts, no external resources — it opens offline;
  RUN_DIR/report.md      the numbers as Markdown;
  RUN_DIR/disclosure.md  the Casper et al. 2023 §5 disclosure sheet, for the run's owner to complete.

Sections: results and alarms; learning curves (gold and proxy return, KL, entropy, labels against
env steps); over-optimisation (gold and proxy against √KL as in Gao et al. 2023, ensemble
disagreement on policy samples with its early band); the reward model (held-out accuracy over
refits, calibration, learned against true segment returns, EPIC distance to the true reward);
text diagnostics when a run logs them; feedback (labels per annotator, agreement, tie and can't-tell
rates, position bias, time per label); clips from the start and the end of training; the disclosure
sheet; the config. Every string read from the run directory is escaped.
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rlhflab.config import RunConfig
from rlhflab.diagnostics import disclosure
from rlhflab.diagnostics.alarms import ALARMS, AlarmMonitor, first_firings, no_acting_steps
from rlhflab.diagnostics.calibration import Reliability, reliability
from rlhflab.diagnostics.disclosure import md_escape
from rlhflab.diagnostics.epic import epic_distance
from rlhflab.feedback.agreement import annotator_stats, inter_annotator_agreement
from rlhflab.runs import RunDir
from rlhflab.types import Comparison, Judgement

POLICY_STATS = {"policy_loss", "value_loss", "entropy", "approx_kl", "clip_frac"}


# -- reading a run -------------------------------------------------------------------------
@dataclass
class RunData:
    path: Path
    cfg: RunConfig
    metrics: list[dict]
    summary: dict | None
    comparisons: list[Comparison] = field(default_factory=list)
    samples: list[dict] = field(default_factory=list)  # samples/iter_*.npz, by iteration
    clips: list[dict] = field(default_factory=list)  # clips/iter_*.npz (+ gif bytes), by iteration

    @property
    def name(self) -> str:
        return self.path.name

    def series(self, key: str, phase: str = "rlhf") -> tuple[np.ndarray, np.ndarray]:
        """(env steps, values) of one metric, records without a finite value left out (and policy
        statistics of rollouts that had no acting step)."""
        pts = [
            (r["env_steps"], r[key])
            for r in self.metrics
            if r.get("phase") == phase
            and isinstance(r.get(key), (int, float))
            and math.isfinite(r[key])
            and not (key in POLICY_STATS and no_acting_steps(r))
        ]
        return (
            (np.array([p[0] for p in pts], float), np.array([p[1] for p in pts], float))
            if pts
            else (np.array([]), np.array([]))
        )


def _load_npz(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def load_run(path: str | Path) -> RunData:
    if not (Path(path) / "config.yaml").exists():
        raise FileNotFoundError(f"{path}: not a run directory (no config.yaml)")
    run = RunDir(path)
    cfg = run.read_config()
    summary = run.summary() if run.summary_path.exists() else None
    comparisons = []
    if (run.path / "feedback.db").exists():
        from rlhflab.feedback.store import FeedbackStore

        store = FeedbackStore(run.store_url)
        comparisons = store.comparisons()
        store.close()
    samples = [_load_npz(p) for p in sorted((run.path / "samples").glob("iter_*.npz"))]
    clips = []
    for p in sorted((run.path / "clips").glob("iter_*.npz")):
        clip = _load_npz(p)
        gif = p.with_suffix(".gif")
        clip["gif"] = gif.read_bytes() if gif.exists() else None
        clips.append(clip)
    return RunData(run.path, cfg, run.metrics(), summary, comparisons, samples, clips)


# -- evaluation from saved data ------------------------------------------------------------------
def samples_epic(s: dict) -> float:
    """EPIC distance between the true reward and r̂ on one saved sample (NaN without counterfactual true rewards)."""
    true, r_hat = s["true"], s["r_hat"]
    if true.shape[1] < 2 or not np.isfinite(true).all() or not np.isfinite(r_hat).all():
        return float("nan")
    idx = np.arange(len(true))
    t = idx[:-1][
        s["episode"][:-1] == s["episode"][1:]
    ]  # transitions (i, a_i, i+1) inside one episode
    lookup = lambda table: lambda si, ai, _s2: table[si, ai]
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
    """(true, r̂, episode) sums over windows of `length` steps (taken actions) inside each saved episode."""
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
    from rlhflab.reward.losses import preference_probability
    from rlhflab.reward.model import RewardEnsemble, is_validation

    held_out = [
        c
        for c in data.comparisons
        if c.judgement in (Judgement.LEFT, Judgement.RIGHT)
        and is_validation(c.query_id, data.cfg.reward.val_fraction)
    ]
    if not held_out:
        return None, "no held-out judgements"
    env = make_env(data.cfg.env.id, data.cfg.env.horizon, data.cfg.env.kwargs)
    model = RewardEnsemble(
        int(np.prod(env.observation_space.shape)), env.action_space, data.cfg.reward
    )
    env.close()
    model.load_state_dict(torch.load(ckpt_path, weights_only=False)["reward_model"])
    left = torch.tensor([model.predict(c.left.obs, c.left.actions).sum() for c in held_out])
    right = torch.tensor([model.predict(c.right.obs, c.right.actions).sum() for c in held_out])
    p = preference_probability(left, right, data.cfg.reward.label_noise).numpy()
    return reliability(
        p, np.array([c.judgement == Judgement.LEFT for c in held_out], float)
    ), f"{len(held_out)} held-out judgements"


# -- figures -------------------------------------------------------------------------------
def figure(rows: int, cols: int, width: float = 12.0, height: float = 3.4):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height * rows), dpi=90, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes:
        ax.grid(alpha=0.3)
    return fig, axes


def png(fig) -> str:
    """A figure as a data: URI (PNG, base64)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def img(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{html.escape(alt)}">'


def _mark_alarms(ax, alarms: dict[str, dict]) -> None:
    for a in alarms.values():
        if a["env_steps"] is not None:
            ax.axvline(a["env_steps"], color="crimson", ls=":", lw=1)


def _fmt(x, spec: str = ".3g") -> str:
    return (
        "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)
    )


# -- sections ------------------------------------------------------------------------------
@dataclass
class Section:
    title: str
    html: str
    md: str = ""


class Report:
    def __init__(self, data: RunData):
        self.data = data
        self.alarms = first_firings(data.metrics)
        self.facts: dict = {}

    def sections(self) -> list[Section]:
        return self._build(
            (
                self.overview,
                self.learning_curves,
                self.overoptimisation,
                self.reward_model,
                self.feedback,
                self.clips,
                self.disclosure,
                self.config,
            )
        )

    def _build(self, makers) -> list[Section]:
        out = []
        for make in makers:
            try:
                section = make()
            except Exception as exc:  # noqa: BLE001 - one broken section must not cost the whole report; it says what broke
                section = Section(
                    make.__name__.replace("_", " "),
                    f"<p class='error'>This section could not be built: {html.escape(f'{type(exc).__name__}: {exc}')}</p>",
                    f"This section could not be built: {md_escape(exc)}\n",
                )
            if section is not None:
                out.append(section)
        return out

    # results and alarms
    def overview(self) -> Section:
        d, s = self.data, self.data.summary
        names = {
            "rlhf": "RLHF (learned reward)",
            "true_reward_baseline": "PPO on the true reward",
            "random": "random",
        }
        if s:
            rows = "".join(
                f"<tr><td>{html.escape(names.get(k, k))}</td><td class='num'>{v:.1f}</td></tr>"
                for k, v in s["true_return"].items()
            )
            table = f"<table><tr><th>policy</th><th>true return</th></tr>{rows}</table>"
            score = f"<p>Normalised score (random = 0, true-reward PPO = 1): <b>{_fmt(s.get('normalised_score'), '.2f')}</b> · {s.get('labels')} labels · {_fmt(s.get('wall_seconds'), '.0f')} s</p>"
            md = "| policy | true return |\n|---|---|\n" + "".join(
                f"| {names.get(k, k)} | {v:.1f} |\n" for k, v in s["true_return"].items()
            )
            md += f"\nNormalised score: {_fmt(s.get('normalised_score'), '.2f')}\n"
        else:
            table, score, md = (
                "<p class='error'>No summary.json: the run did not finish.</p>",
                "",
                "No summary.json: the run did not finish.\n",
            )
        last = next((r for r in reversed(d.metrics) if r.get("phase") == "rlhf"), None)
        if (
            last
            and last["env_steps"] < d.cfg.env_steps
            and d.cfg.alarms.stop
            and last.get("alarms")
        ):
            stopped = f"<p class='alarm'>The run stopped at {last['env_steps']} of {d.cfg.env_steps} env steps because an alarm fired (alarms.stop = true).</p>"
            md += (
                f"\n**The run stopped at {last['env_steps']} env steps because an alarm fired.**\n"
            )
        else:
            stopped = ""
        if self.alarms:
            items = "".join(
                f"<li><b>{html.escape(n)}</b> at {a['env_steps']} env steps: {html.escape(a['message'])}</li>"
                for n, a in self.alarms.items()
            )
            alarms = f"<h3>Alarms</h3><ul class='alarm'>{items}</ul>"
            md += "\n### Alarms\n\n" + "".join(
                f"- **{md_escape(n)}** at {a['env_steps']} env steps: {md_escape(a['message'])}\n"
                for n, a in self.alarms.items()
            )
        else:
            alarms = "<h3>Alarms</h3><p>No over-optimisation alarm fired.</p>"
            md += "\nNo over-optimisation alarm fired.\n"
        return Section("Results", table + score + stopped + alarms, md)

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
        names = list(ALARMS)
        for r in d.metrics:
            for a in r.get("alarms") or []:
                ax[5].plot(
                    r["env_steps"],
                    names.index(a["alarm"]) if a["alarm"] in names else -1,
                    "|",
                    color="crimson",
                    ms=12,
                )
        ax[5].set_yticks(range(len(names)), [n.replace("_", " ") for n in names], fontsize=8)
        ax[5].set_ylim(-0.5, len(names) - 0.5)
        ax[5].set_xlim(ax[4].get_xlim())
        ax[5].set_title("alarms firing")
        for a in ax:
            a.set_xlabel("env steps")
            _mark_alarms(a, self.alarms)
            if a.get_legend_handles_labels()[0]:
                a.legend(fontsize=7)
        return Section(
            "Learning curves",
            img(png(fig), "learning curves")
            + "<p class='note'>Dotted red lines: the first firing of each alarm. "
            "The proxy's scale is arbitrary (Bradley–Terry fixes only differences) and shifts at every refit; watch its trend against the gold.</p>",
        )

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
        return Section(
            "Over-optimisation",
            img(png(fig), "over-optimisation")
            + "<p class='note'>π_ref is the policy as initialised. "
            "A proxy that keeps rising while the gold stalls or falls is over-optimisation; rising disagreement means the policy has gone where the reward model has few labels.</p>",
        )

    def reward_model(self) -> Section:
        d = self.data
        fig, ax = figure(1, 4, width=16, height=3.8)
        refits = {}
        for r in d.metrics:
            if (
                r.get("phase") == "rlhf"
                and r.get("rm_fits") is not None
                and isinstance(r.get("rm_val_acc"), float)
            ):
                refits.setdefault(
                    r["rm_fits"],
                    (r["env_steps"], r["rm_val_acc"], r.get("rm_train_acc"), r.get("rm_val_pairs")),
                )
        if refits:
            fits = sorted(refits)
            ax[0].plot(fits, [refits[f][1] for f in fits], "o-", label="held-out")
            ax[0].plot(fits, [refits[f][2] for f in fits], "x--", alpha=0.6, label="training")
            ax[0].legend(fontsize=7)
        ax[0].set_title("accuracy over refits")
        ax[0].set_xlabel("refit")
        rel, about = rm_calibration(d)
        if rel is not None:
            ok = rel.count > 0
            ax[1].plot([0, 1], [0, 1], color="gray", lw=1)
            ax[1].bar(
                (rel.edges[:-1] + rel.edges[1:])[ok] / 2,
                rel.frequency[ok],
                width=np.diff(rel.edges)[ok] * 0.9,
                alpha=0.6,
                edgecolor="k",
            )
            ax[1].plot(rel.mean_prediction[ok], rel.frequency[ok], "o", color="k")
            self.facts["ece"] = rel.ece
        ax[1].set_title(f"reliability: ECE {_fmt(rel.ece if rel else None)} ({about})", fontsize=9)
        ax[1].set_xlabel("predicted P̂[left ≻ right]")
        ax[1].set_ylabel("share judged left")
        if d.samples:
            s = d.samples[-1]
            true, pred, episode = segment_returns(s, d.cfg.feedback.segment_length)
            for e, name in enumerate(s["source"]):
                ax[2].plot(
                    true[episode == e], pred[episode == e], ".", alpha=0.6, label=f"{name} episode"
                )
            rho = (
                np.corrcoef(true, pred)[0, 1]
                if len(true) > 1 and np.std(true) > 0 and np.std(pred) > 0
                else float("nan")
            )
            ax[2].set_title(
                f"learned vs true, {d.cfg.feedback.segment_length}-step segments (ρ = {_fmt(rho, '.2f')})",
                fontsize=9,
            )
            ax[2].set_xlabel(f"true segment return (iteration {int(s['iteration'])})")
            ax[2].set_ylabel("Σ r̂")
            ax[2].legend(fontsize=7)
            epic = [(int(s["env_steps"]), samples_epic(s)) for s in d.samples]
            ax[3].plot([e[0] for e in epic], [e[1] for e in epic], "o-")
            ax[3].set_ylim(0, 1)
            self.facts["epic"] = epic[-1][1] if math.isfinite(epic[-1][1]) else None
            self.facts["epic_series"] = epic
        ax[3].set_title("EPIC distance to the true reward")
        ax[3].set_xlabel("env steps")
        last = next(
            (
                r
                for r in reversed(d.metrics)
                if r.get("phase") == "rlhf" and isinstance(r.get("rm_val_acc"), float)
            ),
            {},
        )
        self.facts |= {"val_acc": last.get("rm_val_acc"), "val_pairs": last.get("rm_val_pairs")}
        md = (
            f"- held-out accuracy (last refit): {_fmt(last.get('rm_val_acc'), '.3f')} on {last.get('rm_val_pairs', 'n/a')} held-out queries\n"
            f"- expected calibration error: {_fmt(self.facts.get('ece'), '.3f')} ({about})\n"
            f"- EPIC distance to the true reward (last checkpoint): {_fmt(self.facts.get('epic'), '.3f')}\n"
        )
        note = (
            "<p class='note'>Calibration: the final reward model (checkpoint) on the held-out judgements, P̂ with the ε error term; held-out data also "
            "chose when to stop fitting, so this is slightly optimistic. EPIC (Gleave et al. 2020): 0 means the same reward up to potential shaping and "
            "scale, 1 opposite; computed on the saved samples (one episode of the policy and one of a random policy per checkpoint)"
            + (
                ", not available for this env (its state cannot be copied to ask for the true reward of untaken actions)"
                if self.facts.get("epic") is None and d.samples
                else ""
            )
            + ".</p>"
        )
        return Section(
            "Reward model", img(png(fig), "reward model evaluation") + note + md_to_list(md), md
        )

    def feedback(self) -> Section:
        d = self.data
        stats = annotator_stats(d.comparisons)
        inter = inter_annotator_agreement(d.comparisons)
        self.facts["annotators"], self.facts["inter_rater"] = stats, inter
        if not stats:
            return Section(
                "Feedback", "<p>No judgements in the feedback store.</p>", "No judgements.\n"
            )
        head = "<tr><th>annotator</th><th>labels</th><th>left</th><th>right</th><th>equal</th><th>can't tell</th><th>agrees with gold</th><th>says left (strict)</th><th>median s/label</th></tr>"
        rows, md = (
            [],
            "| annotator | labels | equal | can't tell | agrees with gold | says left | s/label |\n|---|---|---|---|---|---|---|\n",
        )
        for s in stats:
            bias = (
                "n/a"
                if s.left_share is None
                else f"{s.left_share:.0%} ± {s.left_share_halfwidth:.0%}"
            )
            rates = [f"{s.rate(j):.0%}" for j in Judgement]
            seconds = "not recorded" if s.median_seconds is None else f"{s.median_seconds:.1f}"
            rows.append(
                f"<tr><td>{html.escape(s.annotator)}</td><td class='num'>{s.labels}</td>"
                + "".join(f"<td class='num'>{r}</td>" for r in rates)
                + f"<td class='num'>{_fmt(s.gold_agreement, '.0%')} of {s.gold_pairs}</td><td class='num'>{bias}</td><td class='num'>{seconds}</td></tr>"
            )
            md += f"| {md_escape(s.annotator)} | {s.labels} | {rates[2]} | {rates[3]} | {_fmt(s.gold_agreement, '.0%')} | {bias} | {seconds} |\n"
        inter_text = (
            f"Inter-annotator agreement: {inter[0]:.0%} over {inter[1]} pairs of judgements of the same query."
            if inter[1]
            else "No query was judged by more than one annotator, so inter-annotator agreement cannot be measured."
        )
        md += f"\n{inter_text}\n"
        fig, ax = figure(1, 3, height=3.2)
        bottom = np.zeros(len(stats))
        for j in Judgement:
            counts = np.array([s.counts.get(j.value, 0) for s in stats], float)
            ax[0].bar(
                [s.annotator for s in stats],
                counts,
                bottom=bottom,
                label=disclosure.LABELS[j.value],
            )
            bottom += counts
        ax[0].set_title("labels per annotator")
        ax[0].legend(fontsize=7)
        steps = sorted(c.left.env_steps for c in d.comparisons)
        ax[1].plot(steps, np.arange(1, len(steps) + 1), drawstyle="steps-post")
        ax[1].set_title("labels against the env steps of their segments")
        ax[1].set_xlabel("env steps")
        seconds = [
            c.extra.get("seconds") for c in d.comparisons if c.extra.get("seconds") is not None
        ]
        if seconds:
            ax[2].hist(seconds, bins=20)
            ax[2].set_title("time per label (s)")
        else:
            ax[2].text(
                0.5,
                0.5,
                "time per label not recorded\n(simulated annotator)",
                ha="center",
                va="center",
                transform=ax[2].transAxes,
            )
            ax[2].set_axis_off()
        body = (
            f"<table>{head}{''.join(rows)}</table><p>{html.escape(inter_text)}</p>"
            + img(png(fig), "feedback")
            + "<p class='note'>Agrees with gold: strict answers that pick the segment with the larger true return. Says left: the position bias "
            "(50% expected, since pairs are shown in random order), with a 95% interval.</p>"
        )
        return Section("Feedback", body, md)

    def clips(self) -> Section | None:
        d = self.data
        if not d.clips:
            return None
        chosen = [d.clips[0]] + ([d.clips[-1]] if len(d.clips) > 1 else [])
        cells, md = [], ""
        for clip, when in zip(chosen, ("start of training", "end of training")):
            caption = (
                f"{when}: iteration {int(clip['iteration'])}, {int(clip['env_steps'])} env steps · true return {float(np.sum(clip['true'])):.1f} · "
                f"Σ r̂ {_fmt(float(np.nansum(clip['r_hat'])), '.2f')}"
            )
            if clip["gif"]:
                body = img(
                    "data:image/gif;base64," + base64.b64encode(clip["gif"]).decode(), caption
                )
            else:
                body = (
                    f"<p class='note'>The env could not render ({html.escape(str(clip['render_error']))}); the first steps as numbers:</p>"
                    + steps_table(clip)
                )
            cells.append(f"<figure>{body}<figcaption>{html.escape(caption)}</figcaption></figure>")
            md += (
                f"- {caption}: `clips/iter_{int(clip['iteration']):04d}."
                + ("gif`" if clip["gif"] else "npz` (the env could not render)")
                + "\n"
            )
        return Section(
            "Clips",
            "<p class='note'>One episode of the deterministic policy (every second frame).</p><div class='clips'>"
            + "".join(cells)
            + "</div>",
            md,
        )

    def disclosure(self) -> Section:
        d = self.data
        if "annotators" not in self.facts:
            self.facts["annotators"], self.facts["inter_rater"] = (
                annotator_stats(d.comparisons),
                inter_annotator_agreement(d.comparisons),
            )
        items = disclosure.disclosure_sheet(
            d.cfg,
            d.summary,
            self.alarms,
            self.facts["annotators"],
            self.facts["inter_rater"],
            self.facts,
        )
        self.facts["disclosure_md"] = disclosure.to_markdown(items)
        return Section(
            "Disclosure sheet",
            "<p class='note'>After Casper et al. 2023, §5. Filled from the run; ⚠ marks what its owner must complete "
            "(also in <code>disclosure.md</code>).</p>" + disclosure.to_html(items),
            self.facts["disclosure_md"].split("\n", 2)[2],
        )

    def config(self) -> Section:
        text = (self.data.path / "config.yaml").read_text()
        return Section(
            "Config",
            f"<details><summary>config.yaml</summary><pre>{html.escape(text)}</pre></details>",
            "The resolved config is `config.yaml`.\n",
        )


def steps_table(clip: dict, rows: int = 25) -> str:
    """The first steps of a saved episode as an HTML table of numbers."""
    head = "<tr><th>t</th><th>observation</th><th>action</th><th>true r</th><th>r̂</th></tr>"
    body = "".join(
        f"<tr><td>{t}</td><td>{html.escape(np.array2string(clip['obs'][t], precision=2, separator=', '))}</td>"
        f"<td>{html.escape(np.array2string(np.asarray(clip['actions'][t]), precision=2))}</td><td class='num'>{clip['true'][t]:.2f}</td><td class='num'>{clip['r_hat'][t]:.2f}</td></tr>"
        for t in range(min(rows, len(clip["obs"])))
    )
    return f"<table class='steps'>{head}{body}</table>"


def md_to_list(md: str) -> str:
    """Render our own '- item' lines (already escaped) as an HTML list."""
    return (
        "<ul>"
        + "".join(f"<li>{line[2:]}</li>" for line in md.splitlines() if line.startswith("- "))
        + "</ul>"
    )


CSS = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.1em; } h2 { border-bottom: 1px solid #ddd; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.8em 0; } td, th { border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; } img { max-width: 100%; }
.note { color: #555; font-size: 0.9em; } .alarm, .error { color: #b00020; } .todo { color: #8a5300; font-weight: 600; }
.asks { font-weight: normal; color: #666; font-size: 0.85em; } table.disclosure th { width: 28%; }
.clips { display: flex; gap: 2em; flex-wrap: wrap; } figure { margin: 0; } figcaption { font-size: 0.9em; color: #444; }
table.steps td { font-family: ui-monospace, monospace; font-size: 0.8em; } pre { background: #f6f6f6; padding: 1em; overflow-x: auto; }
nav a { margin-right: 1em; }
"""


def page(title: str, subtitle: str, sections: list[Section]) -> str:
    """A whole HTML page; `title`, `subtitle` and section titles are escaped here, section bodies by their makers."""
    nav = "".join(f'<a href="#s{i}">{html.escape(s.title)}</a>' for i, s in enumerate(sections))
    body = "".join(
        f'<section id="s{i}"><h2>{html.escape(s.title)}</h2>{s.html}</section>'
        for i, s in enumerate(sections)
    )
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{CSS}</style></head>'
        f"<body><h1>{html.escape(title)}</h1><p class='note'>{html.escape(subtitle)}</p><nav>{nav}</nav>{body}</body></html>\n"
    )


def build_report(run_dir: str | Path) -> Path:
    """Write report.html, report.md and disclosure.md into the run directory; return the HTML path."""
    from rlhflab.diagnostics.text_report import TextReport

    data = load_run(run_dir)
    cfg = data.cfg
    report = TextReport(data) if cfg.text else Report(data)
    sections = report.sections()
    title = f"rlhflab report: {cfg.task}"
    subtitle = (
        f"{data.path.resolve()} · {cfg.text.model if cfg.text else cfg.env.id} · "
        + (
            f"{cfg.text.labels} comparisons"
            if cfg.text
            else f"{cfg.feedback.labels} labels · {cfg.env_steps} env steps"
        )
        + f" · seed {cfg.seed}"
    )
    out = data.path / "report.html"
    out.write_text(page(title, subtitle, sections))
    md = f"# {md_escape(title)}\n\n{md_escape(subtitle)}\n\nPlots: `report.html`.\n\n" + "".join(
        f"## {md_escape(s.title)}\n\n{s.md}\n" for s in sections if s.md
    )
    (data.path / "report.md").write_text(md)
    if "disclosure_md" in report.facts:
        (data.path / "disclosure.md").write_text(report.facts["disclosure_md"])
    return out
