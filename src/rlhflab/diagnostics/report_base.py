"""What every run report shares: reading a run directory, figures as embedded PNG, sections,
and the page they are laid out on (`report.py` for control runs, `text_report.py` for language
models, `compare.py` for several runs)."""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from rlhflab.config import RunConfig
from rlhflab.diagnostics.alarms import no_acting_steps
from rlhflab.runs import RunDir
from rlhflab.types import Comparison

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
    # clips/iter_*.npz, with the rendered clip ("media": (mime, bytes): MP4, or GIF in older
    # runs), by iteration
    clips: list[dict] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def labels(self) -> int:
        """The labels the run gathered, counted one way everywhere: the judgements in its
        feedback store that train the reward model (gold questions excluded), as the summary
        records them at the end of the run."""
        if self.summary and isinstance(self.summary.get("labels"), int):
            return self.summary["labels"]
        return len(self.comparisons)

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
    if (run.path / "feedback.db").exists() or cfg.feedback.store:  # SQLite, or a database
        from rlhflab.feedback.store import FeedbackStore

        store = FeedbackStore(run.store_url)
        comparisons = store.comparisons()
        store.close()
    samples = [_load_npz(p) for p in sorted((run.path / "samples").glob("iter_*.npz"))]
    clips = []
    for p in sorted((run.path / "clips").glob("iter_*.npz")):
        clip = _load_npz(p)
        clip["media"] = next(
            ((mime, m.read_bytes()) for mime, m in _clip_files(p) if m.exists()), None
        )
        clips.append(clip)
    return RunData(run.path, cfg, run.metrics(), summary, comparisons, samples, clips)


def _clip_files(npz: Path) -> list[tuple[str, Path]]:
    """Where a saved episode's rendered clip may be: MP4 (`clips.encode_clip`), or GIF."""
    return [("video/mp4", npz.with_suffix(".mp4")), ("image/gif", npz.with_suffix(".gif"))]


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """'1 judgement', '2 judgements'."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


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


def img(uri: str, alt: str, note: str = "") -> Markup:
    """An embedded image (a data: URI), with an optional note under it."""
    return render("figure.html", uri=uri, alt=alt, note=note)


def fmt(x, spec: str = ".3g") -> str:
    return (
        "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)
    )


def md_escape(text) -> str:
    """Text for Markdown: no raw HTML gets through, and a table cell stays one cell."""
    return html.escape(str(text), quote=False).replace("|", "\\|").replace("\n", " ")


# -- templates ---------------------------------------------------------------------------
# One Jinja2 template per section (package data: rlhflab/diagnostics/templates/). HTML templates
# autoescape everything they are given; Markdown templates escape with the `md` filter.
TEMPLATES = Environment(
    loader=PackageLoader("rlhflab.diagnostics", "templates"),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    undefined=StrictUndefined,
)
TEMPLATES.filters["md"] = md_escape
TEMPLATES.filters["fmt"] = fmt


def render(name: str, **context) -> Markup:
    """A template rendered with `context`: HTML templates escape every value they are given."""
    return Markup(TEMPLATES.get_template(name).render(**context))


# -- sections ------------------------------------------------------------------------------
@dataclass
class Section:
    title: str
    html: Markup | str  # rendered by a template (or markupsafe), so already escaped
    md: str = ""


class BaseReport:
    """A report is a list of sections, each made by one method; a section that fails says so."""

    def __init__(self, data: RunData):
        self.data = data
        self.facts: dict = {}

    def _build(self, makers) -> list[Section]:
        out = []
        for make in makers:
            try:
                section = make()
            except Exception as exc:  # noqa: BLE001 - one broken section must not cost the report
                error = f"{type(exc).__name__}: {exc}"
                section = Section(
                    make.__name__.replace("_", " "),
                    render("section_error.html", error=error),
                    f"This section could not be built: {md_escape(exc)}\n",
                )
            if section is not None:
                out.append(section)
        return out

    def config(self) -> Section:
        text = (self.data.path / "config.yaml").read_text()
        return Section(
            "Config",
            render("config.html", text=text),
            "The resolved config is `config.yaml`.\n",
        )


def write_pages(out: Path, title: str, subtitle: str, sections: list[Section]) -> Path:
    """`out` (HTML) and the same name with .md: one page each, with every section."""
    out.write_text(render("page.html", title=title, subtitle=subtitle, sections=sections))
    md = render("page.md", title=title, subtitle=subtitle, sections=sections, html_name=out.name)
    out.with_suffix(".md").write_text(md)
    return out
