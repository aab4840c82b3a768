"""The report of a demonstrations run, from its run directory alone: expert, learner and random
on the same axes, the training curve, and the method's own tables (identifiability, CIRL)."""

from __future__ import annotations

from pathlib import Path

from rlhflab.diagnostics.report_base import (
    Section,
    figure,
    fmt,
    img,
    load_run,
    png,
    render,
    write_pages,
)


def _table(headers, rows, caption: str = "") -> dict:
    return {"headers": headers, "rows": rows, "caption": caption}


def _section(title: str, tables: list[dict], fig_uri: str = "", alt: str = "") -> Section:
    figure_html = img(fig_uri, alt) if fig_uri else ""
    html = render("demonstrations_tables.html", tables=tables, figure=figure_html)
    md = render("demonstrations_tables.md", tables=tables)
    return Section(title, html, str(md))


def _returns_section(summary: dict) -> Section | None:
    tables, groups = [], []
    for key, caption in (
        ("true_return", "True return on the training distribution"),
        ("held_out_return", "True return (success rate) on held-out maze layouts"),
    ):
        if key in summary:
            rows = [[name, fmt(v, ".3g")] for name, v in summary[key].items()]
            tables.append(_table(["policy", "true return"], rows, caption))
            groups.append((caption, summary[key]))
    if not tables:
        return None
    fig, axes = figure(1, len(groups), width=5.0 * len(groups))
    for ax, (caption, values) in zip(axes, groups):
        ax.bar(list(values), list(values.values()), color="tab:blue")
        ax.set_title(caption, fontsize=9)
    return _section("Expert, learner and random", tables, png(fig), "true returns")


def _curve_section(metrics: list[dict], method: str) -> Section | None:
    x_key, y_key = (
        ("iteration", "rollout_return") if method == "dagger" else ("env_steps", "true_return")
    )
    pts = [(r[x_key], r[y_key]) for r in metrics if r.get("phase") == method and y_key in r]
    if not pts:
        return None
    fig, axes = figure(1, 1, width=6.0)
    axes[0].plot([p[0] for p in pts], [p[1] for p in pts], marker=".")
    axes[0].set_xlabel(x_key.replace("_", " "))
    axes[0].set_ylabel("true return of the learner's rollouts")
    return _section("Training", [], png(fig), "training curve")


def _method_tables(summary: dict) -> Section | None:
    tables = []
    if "identifiability" in summary:
        rows = [
            [
                r["reward"],
                fmt(r["epic"], ".3f"),
                fmt(r["demos_optimal"], ".2f"),
                fmt(r["normalised"], ".2f"),
            ]
            for r in summary["identifiability"]
        ]
        headers = [
            "reward",
            "EPIC to true",
            "demonstrated actions optimal",
            "retrained policy (normalised)",
        ]
        tables.append(_table(headers, rows, "Rewards that explain the demonstrations"))
    if "cirl" in summary:
        rows = [
            [
                r["human"],
                r["robot"],
                *(fmt(v, ".3f") for v in r["per_step"]),
                fmt(sum(r["per_step"]), ".3f"),
            ]
            for r in summary["cirl"]
        ]
        steps = [f"step {t}" for t in range(len(summary["cirl"][0]["per_step"]))]
        tables.append(
            _table(["human", "robot", *steps, "return"], rows, "Exact expected reward per step")
        )
    return _section("Method", tables) if tables else None


def build_demonstrations_report(run_dir: str | Path) -> Path:
    data = load_run(run_dir)
    summary = data.summary or {}
    method = summary.get("method", "")
    makers = [
        _returns_section(summary),
        _curve_section(data.metrics, method),
        _method_tables(summary),
    ]
    sections = [s for s in makers if s is not None]
    title = f"{summary.get('task', data.name)}: {method} on {summary.get('env', '')}"
    subtitle = f"seed {summary.get('seed')} · {summary.get('wall_seconds')} s"
    return write_pages(Path(run_dir) / "report.html", title, subtitle, sections)
