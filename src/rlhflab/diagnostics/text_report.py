"""The report of a language-model run: methods compared on gold and proxy, PPO's path in
(√KL, gold, proxy) — the axes of Gao et al. 2022's over-optimisation curves — mode collapse
(response length, distinct-2, self-BLEU, token entropy), samples per method (escaped), and
the feedback's agreement statistics."""

from __future__ import annotations

import html

import numpy as np

from rlhflab.diagnostics.disclosure import md_escape
from rlhflab.diagnostics.report import Report, Section, _fmt, figure, img, png
from rlhflab.feedback.agreement import annotator_report
from rlhflab.feedback.store import PAIR_KINDS, FeedbackStore
from rlhflab.runs import RunDir


class TextReport(Report):
    def sections(self) -> list[Section]:
        return self._build(
            (self.methods, self.training, self.samples, self.text_feedback, self.config)
        )

    def methods(self) -> Section:
        s = self.data.summary
        if not s:
            return Section(
                "Methods",
                "<p class='error'>No summary.json: the run did not finish.</p>",
                "No summary.json.\n",
            )
        cols = ("gold", "proxy", "kl", "distinct_2", "response_words")
        head = "<tr><th>method</th>" + "".join(f"<th>{c}</th>" for c in cols) + "</tr>"
        rows = "".join(
            f"<tr><td>{html.escape(name)}</td>"
            + "".join(f"<td class='num'>{_fmt(m.get(c))}</td>" for c in cols)
            + "</tr>"
            for name, m in s["methods"].items()
        )
        md = "| method | " + " | ".join(cols) + " |\n|" + "---|" * (len(cols) + 1) + "\n"
        md += "".join(
            f"| {md_escape(name)} | " + " | ".join(_fmt(m.get(c)) for c in cols) + " |\n"
            for name, m in s["methods"].items()
        )
        rm = s.get("reward_model", {})
        note = (
            f"Reward model: held-out accuracy {_fmt(rm.get('rm_val_acc'), '.2f')} on {rm.get('rm_val_pairs', 0)} pairs, "
            f"ECE {_fmt(rm.get('rm_val_ece'), '.3f')}. {s.get('labels')} labels · {_fmt(s.get('wall_seconds'), '.0f')} s. "
            "Gold is the task's own reward; proxy is the reward model's; KL is from the SFT policy."
        )
        return Section(
            "Methods",
            f"<table>{head}{rows}</table><p class='note'>{html.escape(note)}</p>",
            md + "\n" + md_escape(note) + "\n",
        )

    def training(self) -> Section | None:
        ppo = [r for r in self.data.metrics if r.get("phase") == "ppo"]
        if not ppo:
            return None
        it = np.array([r["iteration"] for r in ppo])
        fig, ax = figure(1, 3, height=3.3)
        d = np.sqrt(np.maximum([r["kl"] for r in ppo], 0))
        ax[0].plot(d, [r.get("gold", np.nan) for r in ppo], "o-", ms=3, label="gold")
        ax[0].plot(d, [r["proxy"] for r in ppo], "s-", ms=3, label="proxy (r̂)")
        ax[0].set_xlabel("√KL from SFT (nats)")
        ax[0].set_title("PPO: gold and proxy against √KL")
        ax[0].legend(fontsize=8)
        ax[1].plot(it, [r["response_length"] for r in ppo], label="response tokens")
        ax[1].plot(it, [r["entropy"] for r in ppo], label="token entropy (policy)")
        ax[1].set_xlabel("PPO iteration")
        ax[1].legend(fontsize=8)
        for key in ("distinct_2", "self_bleu"):
            ax[2].plot(it, [r.get(key, np.nan) for r in ppo], label=key)
        ax[2].set_title("diversity of samples (mode collapse)")
        ax[2].set_xlabel("PPO iteration")
        ax[2].legend(fontsize=8)
        last = ppo[-1]
        md = f"- last PPO iteration: gold {_fmt(last.get('gold'))}, proxy {_fmt(last['proxy'])}, KL {_fmt(last['kl'])}, β {_fmt(last['beta'])}\n"
        return Section("PPO training", img(png(fig), "PPO training curves"), md)

    def samples(self) -> Section | None:
        s = self.data.summary
        if not s:
            return None
        parts, md = [], ""
        for name, m in s["methods"].items():
            items = "".join(f"<li><code>{html.escape(t)}</code></li>" for t in m.get("samples", []))
            parts.append(f"<h3>{html.escape(name)}</h3><ul>{items}</ul>")
            md += (
                f"**{md_escape(name)}**\n\n"
                + "".join(f"- {md_escape(t)}\n" for t in m.get("samples", []))
                + "\n"
            )
        return Section("Samples", "".join(parts), md)

    def text_feedback(self) -> Section:
        store = FeedbackStore(RunDir(self.data.path).store_url)
        rows = [
            {
                "query_id": r.query_id,
                "annotator": r.annotator,
                "label": r.label,
                "shown_swapped": r.shown_swapped,
                "seconds": r.seconds,
            }
            for r in store.judgement_rows()
            if r.query.kind in PAIR_KINDS
        ]
        store.close()
        if not rows:
            return Section(
                "Feedback",
                "<p>No pairwise judgements (rankings only, or none).</p>",
                "No pairwise judgements.\n",
            )
        rep = annotator_report(rows)
        md = "".join(
            f"- {md_escape(n)}: {a['count']} labels, ties {_fmt(a['tie_rate'], '.0%')}, can't tell {_fmt(a['cant_tell_rate'], '.0%')}, "
            f"shown-left wins {_fmt(a['left_shown_win_rate'], '.0%')}, median {_fmt(a['median_seconds'])} s\n"
            for n, a in rep["annotators"].items()
        )
        md += f"- queries judged more than once: {rep['overlapping_queries']} · Krippendorff's α {_fmt(rep['krippendorff_alpha'])}\n"
        return Section(
            "Feedback",
            "<ul>" + "".join(f"<li>{line[2:]}</li>" for line in md.splitlines()) + "</ul>",
            md,
        )
