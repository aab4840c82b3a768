"""The report of a language-model run: methods compared on gold and proxy, PPO's path in
(√KL, gold, proxy) — the axes of Gao et al. 2022's over-optimisation curves — mode collapse
(response length, distinct-2, self-BLEU, token entropy), samples per method (escaped), and
the feedback's agreement statistics."""

from __future__ import annotations

from functools import partial

import numpy as np

from rlhflab.diagnostics import disclosure
from rlhflab.diagnostics.annotators import text_annotators_section
from rlhflab.diagnostics.report_base import BaseReport, Section, figure, fmt, img, png, render
from rlhflab.diagnostics.text_disclosure import text_disclosure_sheet
from rlhflab.feedback.agreement import annotator_report
from rlhflab.feedback.store import FeedbackStore
from rlhflab.runs import RunDir

METHOD_COLUMNS = ("gold", "proxy", "kl", "distinct_2", "response_words")


class TextReport(BaseReport):
    def sections(self) -> list[Section]:
        training = [partial(self.training, m) for m in ("ppo", "grpo", "rloo")]
        for make, name in zip(training, ("ppo", "grpo", "rloo")):
            make.__name__ = f"{name} training"  # type: ignore[attr-defined]
        return self._build(
            (
                self.methods,
                *training,
                self.samples,
                self.text_feedback,
                self.annotators,
                self.disclosure,
                self.config,
            )
        )

    def methods(self) -> Section:
        s = self.data.summary
        if not s:
            return Section(
                "Methods",
                "<p class='error'>No summary.json: the run did not finish.</p>",
                "No summary.json.\n",
            )
        rm = s.get("reward_model", {})
        note = (
            f"Reward model: held-out accuracy {fmt(rm.get('rm_val_acc'), '.2f')} on "
            f"{rm.get('rm_val_pairs', 0)} pairs, ECE {fmt(rm.get('rm_val_ece'), '.3f')}. "
            f"{s.get('labels')} labels · {fmt(s.get('wall_seconds'), '.0f')} s. "
            "Gold is the task's own reward; proxy is the reward model's; KL is from the SFT policy."
        )
        if any("undesirable" in m for m in s["methods"].values()):  # the task has a detector
            cols: tuple[str, ...] = (
                *METHOD_COLUMNS[:1],
                "undesirable",
                "red_team_undesirable",
                *METHOD_COLUMNS[1:],
            )
            note += (
                " Undesirable: the share of responses the task's gold detector flags, on the "
                "evaluation prompts and on the red-team prompts."
            )
        else:
            cols = METHOD_COLUMNS
        context = {"cols": cols, "methods": s["methods"], "note": note}
        return Section(
            "Methods", render("methods.html", **context), render("methods.md", **context)
        )

    def training(self, method: str = "ppo") -> Section | None:
        """One RL method's path: gold and proxy against √KL, length and entropy, diversity."""
        rl = [r for r in self.data.metrics if r.get("phase") == method]
        if not rl:
            return None
        name = method.upper()
        it = np.array([r["iteration"] for r in rl])
        fig, ax = figure(1, 3, height=3.3)
        d = np.sqrt(np.maximum([r["kl"] for r in rl], 0))
        ax[0].plot(d, [r.get("gold", np.nan) for r in rl], "o-", ms=3, label="gold")
        ax[0].plot(d, [r["proxy"] for r in rl], "s-", ms=3, label="proxy (r̂)")
        ax[0].set_xlabel("√KL from SFT (nats)")
        ax[0].set_title(f"{name}: gold and proxy against √KL")
        ax[0].legend(fontsize=8)
        ax[1].plot(it, [r["response_length"] for r in rl], label="response tokens")
        ax[1].plot(it, [r["entropy"] for r in rl], label="token entropy (policy)")
        ax[1].set_xlabel(f"{name} iteration")
        ax[1].legend(fontsize=8)
        for key in ("distinct_2", "self_bleu"):
            ax[2].plot(it, [r.get(key, np.nan) for r in rl], label=key)
        ax[2].set_title("diversity of samples (mode collapse)")
        ax[2].set_xlabel(f"{name} iteration")
        ax[2].legend(fontsize=8)
        last = rl[-1]
        md = (
            f"- last {name} iteration: gold {fmt(last.get('gold'))}, proxy {fmt(last['proxy'])}, "
            f"KL {fmt(last['kl'])}, β {fmt(last['beta'])}\n"
        )
        return Section(f"{name} training", img(png(fig), f"{name} training curves"), md)

    def samples(self) -> Section | None:
        s = self.data.summary
        if not s:
            return None
        methods = s["methods"]
        return Section(
            "Samples",
            render("samples.html", methods=methods),
            render("samples.md", methods=methods),
        )

    def _feedback_report(self) -> dict:
        """`annotator_report` of the run's pairwise judgements ({} without any)."""
        if not (self.data.path / "feedback.db").exists():
            return {}
        store = FeedbackStore(RunDir(self.data.path).store_url)
        rows = store.pair_judgement_records()
        store.close()
        return annotator_report(rows) if rows else {}

    def disclosure(self) -> Section:
        """The disclosure sheet (Casper et al. 2023 §5), also written to disclosure.md."""
        items = text_disclosure_sheet(
            self.data.cfg, self.data.summary, self._feedback_report(), self.data.metrics
        )
        self.facts["disclosure_md"] = disclosure.to_markdown(items)
        return Section(
            "Disclosure sheet",
            render("disclosure_note.html", sheet=disclosure.to_html(items)),
            self.facts["disclosure_md"].split("\n", 2)[2],
        )

    def annotators(self) -> Section | None:
        """The text reward model's per-annotator estimates and suspected annotators."""
        return text_annotators_section(self.data)

    def text_feedback(self) -> Section:
        rep = self._feedback_report()
        if not rep:
            return Section(
                "Feedback",
                "<p>No pairwise judgements (rankings only, or none).</p>",
                "No pairwise judgements.\n",
            )
        context = {
            "annotators": rep["annotators"],
            "overlapping": rep["overlapping_queries"],
            "alpha": rep["krippendorff_alpha"],
        }
        return Section(
            "Feedback",
            render("text_feedback.html", **context),
            render("text_feedback.md", **context),
        )
