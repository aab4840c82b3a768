"""The `rlhflab` command."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from rich.console import Console

from rlhflab.config import SHORT_NAMES, ConfigError, build_config, field_help, to_yaml
from rlhflab.diagnostics.commands import add_commands

console = Console()


def _keys_epilog() -> str:
    short = {v: k for k, v in SHORT_NAMES.items()}
    lines = ["config keys (override with key=value):"]
    for key, default, help_ in field_help():
        alias = f" (short: {short[key]})" if key in short else ""
        lines.append(f"  {key}={default!s:<14} {help_}{alias}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rlhflab", description="Reinforcement learning from human feedback.")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run", help="run an experiment (default: preferences on fixed-horizon CartPole)",
        epilog=_keys_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--config", help="YAML config file")
    run.add_argument("--out", help="run directory (default: runs/<task>-<time>)")
    run.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its last checkpoint")
    run.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. env=Pendulum-v1 labels=350 seed=1")
    cfg = sub.add_parser("config", help="show configs")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True)
    show = cfg_sub.add_parser("show", help="print the resolved config as YAML")
    show.add_argument("--config")
    show.add_argument("overrides", nargs="*", metavar="key=value")
    add_commands(sub)
    return p


def _cmd_run(args) -> int:
    from rlhflab.display import RunDisplay, summary_table
    from rlhflab.loop import run_experiment
    from rlhflab.runs import RunDir

    if args.resume:
        run = RunDir(args.resume)
        cfg = run.read_config(args.overrides)
    else:
        cfg = build_config(args.config, args.overrides)
        out = args.out or f"runs/{cfg.task}-{datetime.now():%Y%m%d-%H%M%S}"
        run = RunDir(out)
    console.print(f"run directory: [bold]{run.path}[/]")
    total = cfg.env_steps
    with RunDisplay(console, total) as display:
        summary = run_experiment(cfg, run, display, resume=bool(args.resume))
    console.print(summary_table(summary))
    console.print(f"summary: {run.summary_path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if hasattr(args, "handler"):
            return args.handler(args)
        if args.command == "run":
            return _cmd_run(args)
        if args.command == "config":
            print(to_yaml(build_config(args.config, args.overrides)), end="")
            return 0
    except (ConfigError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the run directory holds a checkpoint — continue with `rlhflab run --resume DIR`", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - shown, not swallowed: the traceback is one flag away
        from rlhflab.envs.wrappers import UnsupportedEnvError
        from rlhflab.loop import RunError

        if isinstance(exc, (RunError, UnsupportedEnvError)):
            print(f"error: {exc}", file=sys.stderr)
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
