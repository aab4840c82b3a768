"""Several runs side by side: their learning curves overlaid and their results in one table.

`build_comparison([RUN_A, RUN_B, …], OUT)` writes OUT/compare.html (self-contained, like the run
report) and OUT/compare.md, from the run directories alone.
"""

from __future__ import annotations

import html
from pathlib import Path

from rlhflab.diagnostics.disclosure import md_escape
from rlhflab.diagnostics.report import Section, figure, img, load_run, page, png

CURVES = {
    "eval_true_return": "gold (true) return, evaluation",
    "true_return": "gold (true) return, rollouts",
    "proxy_return": "proxy return Σ r̂",
    "kl": "KL(π‖π_ref) per step",
    "entropy": "policy entropy",
    "rm_val_acc": "reward model held-out accuracy",
    "rm_disagreement": "ensemble disagreement on policy samples",
    "labels": "labels",
}


def _names(paths: list[Path]) -> list[str]:
    """Short, distinct names: the directory name, with its parent where names repeat."""
    names = [p.name for p in paths]
    return [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else p.name for p in paths]


def build_comparison(run_dirs: list[str | Path], out: str | Path) -> Path:
    runs = [load_run(p) for p in run_dirs]
    names = _names([r.path.resolve() for r in runs])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    head = "<tr><th>run</th><th>env</th><th>labels</th><th>env steps</th><th>seed</th><th>RLHF</th><th>true-reward PPO</th><th>random</th><th>normalised score</th><th>alarms</th></tr>"
    rows, md = (
        [],
        "| run | env | labels | env steps | seed | RLHF | true-reward PPO | random | normalised score | alarms |\n|---|---|---|---|---|---|---|---|---|---|\n",
    )
    for name, run in zip(names, runs):
        s, cfg = run.summary or {}, run.cfg
        tr = s.get("true_return", {})
        alarms = sorted({a["alarm"] for r in run.metrics for a in r.get("alarms") or []})
        cells = [
            name,
            cfg.env.id,
            s.get("labels", cfg.feedback.labels),
            cfg.env_steps,
            cfg.seed,
            *(
                f"{tr[k]:.1f}" if k in tr else "–"
                for k in ("rlhf", "true_reward_baseline", "random")
            ),
            "–" if s.get("normalised_score") is None else f"{s['normalised_score']:.2f}",
            ", ".join(alarms) or "none",
        ]
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
        md += "| " + " | ".join(md_escape(c) for c in cells) + " |\n"

    keys = [k for k in CURVES if any(len(r.series(k)[0]) for r in runs)]
    cols = 3
    fig, ax = figure((len(keys) + cols - 1) // cols, cols)
    for a, key in zip(ax, keys):
        for name, run in zip(names, runs):
            x, y = run.series(key)
            a.plot(x, y, "o-" if key == "eval_true_return" else "-", ms=3, label=name)
        a.set_title(CURVES[key])
        a.set_xlabel("env steps")
    for a in ax[len(keys) :]:
        a.set_axis_off()
    if keys:
        ax[0].legend(fontsize=7)
    sections = [
        Section("Results", f"<table>{head}{''.join(rows)}</table>", md),
        Section(
            "Learning curves",
            img(png(fig), "learning curves of every run")
            + "<p class='note'>RLHF phase of each run. Proxy scales differ between runs and refits.</p>",
        ),
    ]
    title = f"rlhflab comparison of {len(runs)} runs"
    path = out / "compare.html"
    path.write_text(page(title, " · ".join(str(r.path.resolve()) for r in runs), sections))
    (out / "compare.md").write_text(f"# {title}\n\nPlots: `compare.html`.\n\n{md}")
    return path
