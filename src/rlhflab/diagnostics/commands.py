"""The `rlhflab report` and `rlhflab compare` commands (wired into `rlhflab.cli` by
`add_commands`)."""

from __future__ import annotations

import argparse
from datetime import datetime


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    report = subparsers.add_parser(
        "report", help="build report.html, report.md and disclosure.md from a run directory"
    )
    report.add_argument("run_dir", metavar="RUN_DIR")
    report.set_defaults(handler=_cmd_report)
    compare = subparsers.add_parser(
        "compare", help="overlay several runs: compare.html and compare.md"
    )
    compare.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    compare.add_argument("--out", help="output directory (default: runs/compare-<time>)")
    compare.set_defaults(handler=_cmd_compare)


def _cmd_report(args) -> int:
    from rlhflab.diagnostics.report import build_report

    print(f"report: {build_report(args.run_dir)}")
    return 0


def _cmd_compare(args) -> int:
    from rlhflab.diagnostics.compare import build_comparison

    out = args.out or f"runs/compare-{datetime.now():%Y%m%d-%H%M%S}"
    print(f"comparison: {build_comparison(args.run_dirs, out)}")
    return 0
