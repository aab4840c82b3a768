"""Rich progress display and result tables."""

from __future__ import annotations

import os
import time

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text


def headless_rendering() -> None:
    """Render envs off-screen without a display or sound: pygame's SDL (classic control) would
    otherwise print "XDG_RUNTIME_DIR is invalid or not set" when there is no session."""
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    if not os.environ.get("XDG_RUNTIME_DIR") and not os.environ.get("DISPLAY"):
        os.environ.setdefault("MUJOCO_GL", "osmesa")


class _ProgressDisplay:
    """A rich Progress used as a context manager and called with each metrics record.

    Without a terminal (output to a file or pipe) live bars cannot redraw and would be cut to
    the 80-column default ("0:0…"); there each phase's line is printed whole instead, at most
    every `plain_every` seconds and once at the end."""

    plain_every = 10.0
    console: Console
    progress: Progress
    tasks: dict[str, TaskID]

    def __enter__(self):
        self.plain = not self.console.is_terminal
        self._printed: dict[str, tuple[float, str]] = {}
        if not self.plain:
            self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        if self.plain:
            for phase in self._printed:
                self._plain_line(phase, force=True)
        else:
            self.progress.__exit__(*exc)

    def _plain_line(self, phase: str, force: bool = False) -> None:
        """One whole line for a phase: what its bar would show, never cut to the width."""
        task = next(t for t in self.progress.tasks if t.id == self.tasks[phase])
        total = f"/{task.total:.0f}" if task.total else ""
        info = Text.from_markup(task.fields.get("info", "")).plain
        line = f"{phase:<8} {task.completed:.0f}{total} {info}"
        last_time, last_line = self._printed.get(phase, (float("-inf"), ""))
        now = time.monotonic()
        if line != last_line and (force or now - last_time >= self.plain_every):
            text = f"{line} · {task.elapsed or 0:.0f} s"
            self.console.print(text, markup=False, highlight=False, soft_wrap=True)
            self._printed[phase] = (now, line)
        elif phase not in self._printed:
            self._printed[phase] = (float("-inf"), "")

    def _shown(self, phase: str) -> None:
        if getattr(self, "plain", False):
            self._plain_line(phase)


class RunDisplay(_ProgressDisplay):
    """A progress bar per phase (RLHF, baseline) with the latest labels and returns."""

    def __init__(self, console: Console | None = None, total_steps: int = 0):
        self.console = console or Console()
        self.total = total_steps
        self.progress = Progress(
            TextColumn("[bold]{task.fields[phase]:<8}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
        )
        self.tasks = {}
        self.alarms_seen: set[str] = set()

    def __call__(self, record: dict) -> None:
        phase = record.get("phase", "run")
        if phase not in self.tasks:
            self.tasks[phase] = self.progress.add_task("", total=self.total, phase=phase, info="")
        if phase == "waiting":
            self.progress.update(
                self.tasks[phase],
                completed=record["labels"],
                total=record["waiting_for"],
                info=f"waiting for people: {record['labels']}/{record['waiting_for']} labels "
                f"before RL",
            )
            self._shown(phase)
            return
        parts = []
        if "labels" in record:
            parts.append(f"labels {record['labels']}")
        if record.get("rm_val_acc") is not None:
            parts.append(f"rm acc {record['rm_val_acc']:.2f}")
        parts.append(f"true {record['true_return']:.1f}")
        if "proxy_return" in record:
            parts.append(f"proxy {record['proxy_return']:.1f}")
        alarms = [a["alarm"] for a in record.get("alarms") or []]
        if alarms:
            parts.append(f"[bold red]alarm: {', '.join(alarms)}[/]")
        for a in record.get("alarms") or []:
            if a["alarm"] not in self.alarms_seen:  # say each alarm once in full, above the bars
                self.alarms_seen.add(a["alarm"])
                self.console.print(
                    f"[bold red]alarm[/] at {record['env_steps']} env steps — "
                    f"{escape(a['message'])}"
                )
        self.progress.update(
            self.tasks[phase], completed=record["env_steps"], info=" · ".join(parts)
        )
        self._shown(phase)


def summary_table(summary: dict) -> Table:
    table = Table(
        title=f"{summary['task']}: {summary['env']} · {summary['labels']} labels · "
        f"{summary['env_steps']} env steps · seed {summary['seed']}",
        min_width=60,
    )
    table.add_column("policy")
    table.add_column("true return", justify="right")
    names = {
        "rlhf": "RLHF (learned reward)",
        "true_reward_baseline": "PPO on the true reward",
        "random": "random",
    }
    for key, value in summary["true_return"].items():
        table.add_row(names.get(key, key), f"{value:.1f}")
    if summary.get("normalised_score") is not None:
        table.caption = (
            f"normalised score (random = 0, true-reward PPO = 1): "
            f"{summary['normalised_score']:.2f} · {summary['wall_seconds']:.0f} s"
        )
    return table


class TextDisplay(_ProgressDisplay):
    """One line per phase of a text run (pretrain, SFT, reward model, PPO, DPO, evaluation)."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console()
        self.progress = Progress(
            TextColumn("[bold]{task.fields[phase]:<12}"),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=self.console,
        )
        self.tasks = {}

    def __call__(self, record: dict) -> None:
        phase = record.get("phase", "run")
        if phase == "eval":
            phase = f"eval {record['method']}"
        if phase not in self.tasks:
            self.tasks[phase] = self.progress.add_task("", total=None, phase=phase, info="")
        shown = {
            k: v
            for k, v in record.items()
            if k not in ("phase", "method") and isinstance(v, (int, float))
        }
        self.progress.update(
            self.tasks[phase],
            info=" · ".join(
                f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in shown.items()
            ),
        )
        self._shown(phase)


def text_table(summary: dict) -> Table:
    table = Table(
        title=f"{summary['task']}: {summary['labels']} labels · seed {summary['seed']} · "
        f"{summary['wall_seconds']:.0f} s",
        min_width=60,
    )
    proxy = "reward functions" if summary.get("reward_functions") else "proxy (r̂)"
    for col in ("method", "gold ↑", proxy, "KL from SFT", "distinct-2", "words"):
        table.add_column(col, justify="right")
    for name, m in summary["methods"].items():
        table.add_row(
            name,
            f"{m['gold']:.3f}",
            f"{m['proxy']:.3f}",
            f"{m['kl']:.2f}",
            f"{m['distinct_2']:.3f}",
            f"{m['response_words']:.1f}",
        )
    rm = summary.get("reward_model", {})
    if "rm_val_acc" in rm:
        table.caption = (
            f"reward model: held-out accuracy {rm['rm_val_acc']:.2f} on "
            f"{rm['rm_val_pairs']} pairs, ECE "
            f"{rm.get('rm_val_ece', float('nan')):.3f}"
        )
    return table
