"""Several runs side by side: their learning curves overlaid and their results in one table.

`build_comparison([RUN_A, RUN_B, …], OUT)` writes OUT/compare.html (self-contained, like the run
report) and OUT/compare.md, from the run directories alone.
"""

from __future__ import annotations

from pathlib import Path

from rlhflab.diagnostics.report_base import (
    RunData,
    Section,
    figure,
    img,
    load_run,
    png,
    render,
    write_pages,
)

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


HEAD = (
    "run",
    "env",
    "labels",
    "env steps",
    "seed",
    "RLHF",
    "true-reward PPO",
    "random",
    "normalised score",
    "alarms",
)


def _cells(name: str, run: RunData) -> list:
    """One run's row of the results table."""
    s, cfg = run.summary or {}, run.cfg
    tr = s.get("true_return", {})
    alarms = sorted({a["alarm"] for r in run.metrics for a in r.get("alarms") or []})
    return [
        name,
        cfg.env.id,
        s.get("labels", cfg.feedback.labels),
        cfg.env_steps,
        cfg.seed,
        *(f"{tr[k]:.1f}" if k in tr else "–" for k in ("rlhf", "true_reward_baseline", "random")),
        "–" if s.get("normalised_score") is None else f"{s['normalised_score']:.2f}",
        ", ".join(alarms) or "none",
    ]


def _curves(names: list[str], runs: list[RunData]):
    """Every logged curve of `CURVES`, one panel each, the runs overlaid."""
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
    return fig


def build_comparison(run_dirs: list[str | Path], out: str | Path) -> Path:
    runs = [load_run(p) for p in run_dirs]
    names = _names([r.path.resolve() for r in runs])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = {"head": HEAD, "rows": [_cells(n, r) for n, r in zip(names, runs)]}
    note = "RLHF phase of each run. Proxy scales differ between runs and refits."
    sections = [
        Section(
            "Results",
            render("compare_results.html", **table),
            render("compare_results.md", **table),
        ),
        Section(
            "Learning curves", img(png(_curves(names, runs)), "learning curves of every run", note)
        ),
    ]
    title = f"rlhflab comparison of {len(runs)} runs"
    subtitle = " · ".join(str(r.path.resolve()) for r in runs)
    return write_pages(out / "compare.html", title, subtitle, sections)
