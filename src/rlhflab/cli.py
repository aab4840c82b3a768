"""The `rlhflab` command.

One argparse parser; every subcommand names its handler (`set_defaults(handler=...)`), and `main`
calls it. Handlers import what they need, so `rlhflab --help` starts fast.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from datetime import datetime
from pathlib import Path

from rich.console import Console

from rlhflab.config import (
    FAMILY_PRESET,
    PRESETS,
    SHORT_NAMES,
    ConfigError,
    build_config,
    field_help,
    preset_for,
    to_yaml,
)
from rlhflab.diagnostics.goodhart import add_goodhart_arguments, cmd_goodhart
from rlhflab.executor import ExecutorError, make_executor
from rlhflab.feedback.exchange import FORMATS, DataError
from rlhflab.feedback.schema import StoreError

console = Console()
STORE_HELP = "feedback store URL instead of RUN_DIR/feedback.db"


def _keys_epilog() -> str:
    short = {v: k for k, v in SHORT_NAMES.items()}
    lines = ["config keys (override with key=value):"]
    for key, default, help_ in field_help():
        alias = f" (short: {short[key]})" if key in short else ""
        lines.append(f"  {key}={default!s:<14} {help_}{alias}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rlhflab", description="Reinforcement learning from human feedback."
    )
    sub = p.add_subparsers(dest="command", required=True)
    _add_run(sub)
    _add_sweep(sub)
    _add_label(sub)
    _add_annotators(sub)
    _add_feedback(sub)
    _add_config(sub)
    _add_reports(sub)
    goodhart = sub.add_parser(
        "goodhart",
        help="Goodhart curves of a run: gold against √KL for best-of-n and RL checkpoints, with "
        "Gao et al.'s fits",
    )
    add_goodhart_arguments(goodhart)
    goodhart.set_defaults(handler=_cmd_goodhart)
    return p


def _add_run(sub) -> None:
    run = sub.add_parser(
        "run",
        help="run an experiment (default: preferences on fixed-horizon CartPole)",
        epilog=_keys_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--config", help="YAML config file")
    run.add_argument("--out", help="run directory (default: runs/<task>-<time>)")
    run.add_argument(
        "--resume", metavar="DIR", help="continue the run in DIR from its last checkpoint"
    )
    run.add_argument(
        "--nproc",
        type=int,
        default=1,
        metavar="N",
        help="text runs: N data-parallel training processes on this machine, started by "
        "torchrun (gloo on CPUs, nccl on GPUs; docs/scaling.md). Across nodes, start "
        "`torchrun ... -m rlhflab.cli run` yourself",
    )
    run.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="config overrides, e.g. env=Pendulum-v1 labels=350 seed=1",
    )
    run.set_defaults(handler=_cmd_run)


def _add_sweep(sub) -> None:
    sweep = sub.add_parser(
        "sweep",
        help="one control run per seed, fanned out by the executor (executor=ray: in parallel "
        "on a Ray cluster)",
    )
    sweep.add_argument("--seeds", required=True, help="comma-separated seeds, e.g. 0,1,2")
    sweep.add_argument(
        "--labels",
        help="comma-separated label budgets (feedback.labels), e.g. 100,350: one run per "
        "budget and seed (OUT/labels-L-seed-N)",
    )
    sweep.add_argument("--config", help="YAML config file")
    sweep.add_argument("--out", required=True, help="directory of the runs (OUT/seed-N)")
    sweep.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    sweep.set_defaults(handler=_cmd_sweep)


def _add_label(sub) -> None:
    label = sub.add_parser("label", help="serve the labeling web app for a run's feedback store")
    label.add_argument("run_dir", help="run directory (its feedback.db and guidelines)")
    label.add_argument("--store", help=f"{STORE_HELP} (e.g. postgresql://…)")
    label.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: loopback only)"
    )
    label.add_argument("--port", type=int, default=8000)
    label.add_argument(
        "--workers",
        type=int,
        default=1,
        help="app processes serving the port (uvicorn workers); more than one wants a "
        "PostgreSQL --store (docs/feedback-store.md)",
    )
    label.add_argument(
        "--lease-seconds",
        type=float,
        default=300.0,
        help="a query not answered in this time goes to someone else",
    )
    label.add_argument(
        "--public-url",
        help="the address people reach the app at, for the links it gives out "
        "(default: http://HOST:PORT); kept in the store for `rlhflab annotators`",
    )
    label.add_argument(
        "--secure-cookies",
        action="store_true",
        help="mark the session cookie Secure (serve the app behind HTTPS)",
    )
    label.add_argument(
        "--gold-rate",
        type=float,
        help="share of queries that are gold questions (known answers; import them with "
        "`rlhflab feedback import --gold`), scoring each annotator on /admin",
    )
    label.set_defaults(handler=_cmd_label)


def _add_annotators(sub) -> None:
    ann = sub.add_parser("annotators", help="manage the people who give feedback")
    ann_sub = ann.add_subparsers(dest="annotators_command", required=True)
    add = ann_sub.add_parser("add", help="create an annotator and print their sign-in link")
    add.add_argument(
        "--admin", action="store_true", help="may see the agreement page and add annotators"
    )
    actions = {
        "login": "print a new one-time sign-in link for an annotator",
        "disable": "stop an annotator's token, sessions and leases at once",
        "enable": "let a disabled annotator sign in again (with a new link)",
        "rotate": "give an annotator a new token; the old one and their sessions stop at once",
    }
    commands = [add, *(ann_sub.add_parser(name, help=text) for name, text in actions.items())]
    for cmd in commands:
        cmd.add_argument("name")
        cmd.add_argument("run_dir")
        cmd.add_argument("--store", help=STORE_HELP)
        cmd.add_argument(
            "--url",
            help="the app's public URL, for the link (default: the one `rlhflab label` "
            "was given, else http://127.0.0.1:8000)",
        )
        cmd.set_defaults(handler=_cmd_annotators_change)
    listing = ann_sub.add_parser("list", help="list annotators")
    listing.add_argument("run_dir")
    listing.add_argument("--store", help=STORE_HELP)
    listing.set_defaults(handler=_cmd_annotators_list)


def _add_feedback(sub) -> None:
    fb = sub.add_parser("feedback", help="export or import feedback as JSONL")
    fb_sub = fb.add_subparsers(dest="feedback_command", required=True)
    exp = fb_sub.add_parser("export", help="write judgements as JSONL")
    exp.add_argument("run_dir")
    exp.add_argument(
        "--format",
        required=True,
        choices=FORMATS,
        help="text formats, or segments (judgements of segment pairs, from control runs)",
    )
    exp.add_argument("--out", help="output file (default: standard output)")
    exp.add_argument(
        "--ids",
        action="store_true",
        help="segments: refer to segments by id in RUN_DIR instead of writing their numbers",
    )
    exp.add_argument("--store", help=STORE_HELP)
    exp.set_defaults(handler=_cmd_feedback_export)
    imp = fb_sub.add_parser(
        "import",
        help="read judgements from JSONL (validated: the bad line is named, nothing half-written)",
    )
    imp.add_argument("run_dir")
    imp.add_argument("file")
    imp.add_argument("--format", required=True, choices=FORMATS)
    imp.add_argument(
        "--gold",
        action="store_true",
        help="store the records as gold questions (their answers known) instead of judgements",
    )
    imp.add_argument("--store", help=STORE_HELP)
    imp.set_defaults(handler=_cmd_feedback_import)


def _add_config(sub) -> None:
    cfg = sub.add_parser("config", help="show configs")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True)
    show = cfg_sub.add_parser("show", help="print the resolved config as YAML")
    show.add_argument("--config")
    show.add_argument("overrides", nargs="*", metavar="key=value")
    show.set_defaults(handler=_cmd_config_show)


def _add_reports(sub) -> None:
    report = sub.add_parser(
        "report", help="build report.html, report.md and disclosure.md from a run directory"
    )
    report.add_argument("run_dir", metavar="RUN_DIR")
    report.set_defaults(handler=_cmd_report)
    compare = sub.add_parser("compare", help="overlay several runs: compare.html and compare.md")
    compare.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    compare.add_argument("--out", help="output directory (default: runs/compare-<time>)")
    compare.set_defaults(handler=_cmd_compare)


# -- handlers ----------------------------------------------------------------------------
def _stop_on_sigterm(signum, frame) -> None:
    """SIGTERM stops a run the way Ctrl-C does: checkpoint, withdraw unanswered queries."""
    raise KeyboardInterrupt


def _cmd_run(args) -> int:
    from rlhflab import distributed
    from rlhflab.display import headless_rendering

    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    headless_rendering()
    resumed = _resumed(args.resume)
    cfg = (
        resumed.read_config(args.overrides)
        if resumed
        else build_config(args.config, args.overrides)
    )
    if args.nproc < 1:
        raise ConfigError(f"--nproc {args.nproc}: expected at least 1 process")
    if (args.nproc > 1 or distributed.init_from_env()) and cfg.text is None:
        raise ConfigError("--nproc / torchrun: multi-process training is for text runs only")
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return _launch_torchrun(args, cfg.task)
    if cfg.text is not None:
        try:
            if not distributed.is_main():  # the run is rank 0's; the others work in scratch
                return _run_text(cfg, resumed or _scratch_dir(), bool(resumed), quiet=True)
            return _run_text(cfg, _run_dir(resumed, cfg, args.out), bool(resumed))
        finally:
            distributed.close()
    if cfg.demonstrations is not None and cfg.demonstrations.method != "preferences":
        return _run_demonstrations(cfg, _run_dir(resumed, cfg, args.out))
    # a cluster that cannot be reached is named before the run directory is touched
    with make_executor(cfg.executor) as executor:
        return _run_control(cfg, _run_dir(resumed, cfg, args.out), bool(resumed), executor)


def _cmd_sweep(args) -> int:
    """Each seed's run (of each label budget) is one task of the executor."""
    from rlhflab.sweep import sweep, sweep_table

    seeds = _integers("--seeds", args.seeds)
    budgets = _integers("--labels", args.labels) if args.labels else None
    cfg, summaries = sweep(args.config, args.overrides, seeds, budgets, Path(args.out), console)
    console.print(sweep_table(f"{cfg.task}: {len(seeds)} seeds", summaries))
    return 0


def _cmd_goodhart(args) -> int:
    """The points of every run given are tasks of the executor (one per policy snapshot)."""
    from rlhflab.config import ExecutorConfig

    if args.address and args.executor != "ray":
        raise ConfigError("--address is for --executor ray")
    with make_executor(ExecutorConfig(backend=args.executor, address=args.address)) as executor:
        return cmd_goodhart(args, executor.map)


def _integers(option: str, text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise ConfigError(f"{option} {text!r}: expected comma-separated integers") from None


def _run_dir(resumed, cfg, out: str | None):
    """The resumed run's directory, or a fresh one (`--out`, else runs/<task>-<time>)."""
    from rlhflab.runs import RunDir

    run = resumed or RunDir.fresh(out or f"runs/{cfg.task}-{datetime.now():%Y%m%d-%H%M%S}")
    console.print(f"run directory: [bold]{run.path}[/]")
    return run


def _control_notes(cfg) -> None:
    preset = preset_for(cfg.env.id)
    if preset is None or preset == FAMILY_PRESET:
        settings = "generic settings" if preset is None else f"the MuJoCo family's ({preset.name})"
        tuned = (p.stem.replace("__", "/") for p in PRESETS.glob("*.yaml") if p != FAMILY_PRESET)
        console.print(
            f"note: no tuned preset for {cfg.env.id}; {settings}, horizon {cfg.env.horizon} "
            f"(the env's own time limit). Tuned presets: " + ", ".join(sorted(tuned))
        )


def _run_control(cfg, run, resume: bool, executor) -> int:
    from rlhflab.control_loop import run_experiment
    from rlhflab.display import RunDisplay, summary_table

    _control_notes(cfg)
    with RunDisplay(console, cfg.env_steps) as display:
        summary = run_experiment(cfg, run, display, resume=resume, executor=executor)
    console.print(summary_table(summary))
    console.print(f"summary: {run.summary_path}")
    return 0


def _launch_torchrun(args, task: str) -> int:
    """`rlhflab run --nproc N ...`: the same command in N processes under torchrun
    (`torch.distributed.run --standalone`), which gives each its RANK and WORLD_SIZE."""
    import subprocess

    again = ["--config", args.config] if args.config else []
    if args.resume:
        again += ["--resume", args.resume]
    else:  # one run directory, named here, not by each rank's clock
        out = args.out or f"runs/{task}-{datetime.now():%Y%m%d-%H%M%S}"
        again += ["--out", out]
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={args.nproc}",
        "-m",
        "rlhflab.cli",
        "run",
        *again,
        *args.overrides,
    ]
    console.print(f"{args.nproc} processes: {' '.join(command[2:])}")
    return subprocess.call(command)


def _resumed(path: str | None):
    """The run `--resume` names (None: a fresh run). Under torchrun rank 0 alone holds it: it
    sends the run's files (config, log, checkpoints; not the feedback store, not the report) to
    the other ranks, which resume from a copy in their scratch directory — no shared filesystem
    needed."""
    from rlhflab import distributed
    from rlhflab.runs import RunDir

    if path is None:
        return None
    if not distributed.init_from_env():
        return RunDir(path)
    if distributed.is_main():
        run = RunDir(path)
        run.read_config()  # not a run directory: named here, and torchrun stops the other ranks
        distributed.broadcast_object(_run_files(run.path))
        return run
    return _scratch_dir(distributed.broadcast_object(None))


def _run_files(path: Path) -> dict[str, bytes]:
    """What a rank > 0 needs to resume: every file of the run but the store and the report."""
    skip = ("feedback.db", "report")
    return {
        str(f.relative_to(path)): f.read_bytes()
        for f in sorted(path.rglob("*"))
        if f.is_file() and not f.name.startswith(skip)
    }


def _scratch_dir(files: dict[str, bytes] | None = None):
    """A rank > 0's run directory: a temporary one (holding `files`, rank 0's run to resume),
    removed when the process ends."""
    import atexit
    import shutil
    import tempfile

    from rlhflab.runs import RunDir

    path = Path(tempfile.mkdtemp(prefix="rlhflab-rank-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    for name, data in (files or {}).items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
    return RunDir(path)


def _run_text(cfg, run, resume: bool, quiet: bool = False) -> int:
    from rlhflab.display import TextDisplay, text_table
    from rlhflab.text_loop import TextLoop

    if quiet:
        TextLoop(cfg, run, resume=resume).run()
        return 0
    with TextDisplay(console) as display:
        summary = TextLoop(cfg, run, display, resume=resume).run()
    console.print(text_table(summary))
    console.print(f"summary: {run.summary_path}")
    return 0


def _store(args):
    from rlhflab.feedback.store import FeedbackStore
    from rlhflab.runs import RunDir

    if getattr(args, "store", None):
        return FeedbackStore(args.store)
    path = Path(args.run_dir)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such run directory")
    return FeedbackStore(RunDir(path).store_url)


def _cmd_label(args) -> int:
    import uvicorn

    from rlhflab.feedback.web.app import APP_SETTINGS, create_app
    from rlhflab.runs import RunDir

    store = _store(args)
    config = Path(args.run_dir) / "config.yaml"
    if config.exists():
        store.set_setting("guidelines", RunDir(args.run_dir).read_config().feedback.guidelines)
    base = (args.public_url or f"http://{args.host}:{args.port}").rstrip("/")
    store.set_setting("public_url", base)
    if args.gold_rate is not None:
        if not 0 <= args.gold_rate < 1:
            raise DataError(f"--gold-rate must be in [0, 1), got {args.gold_rate}")
        store.set_setting("gold_rate", str(args.gold_rate))
    admins = [a for a in store.annotators() if a.is_admin and not a.disabled]
    if not admins:
        store.add_annotator("admin", is_admin=True)
        admins = [store.annotator("admin")]
    code = store.login_code(admins[0].name)
    print(f"admin sign-in link (one use, keep it private): {base}/login?code={code}&next=/admin")
    print(f"add annotators with: rlhflab annotators add NAME {args.run_dir}")
    settings = {
        "store_url": store.url,
        "lease_seconds": args.lease_seconds,
        "public_url": base,
        "secure_cookies": args.secure_cookies,
    }
    store.close()
    if args.workers < 1:
        raise DataError(f"--workers must be at least 1, got {args.workers}")
    if args.workers == 1:
        app = create_app(**settings)
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
        return 0
    # each worker process builds its own app (and store connections) from these settings
    os.environ[APP_SETTINGS] = json.dumps(settings)
    uvicorn.run(
        "rlhflab.feedback.web.app:app_from_environment",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="warning",
        # a worker still importing on a busy machine is not dead: uvicorn's 5 s default would
        # restart it over and over
        timeout_worker_healthcheck=60,
    )
    return 0


def _cmd_annotators_change(args) -> int:
    """add, login, disable, enable, rotate: each takes effect in the store at once."""
    store = _store(args)
    command = args.annotators_command
    if command != "add" and store.annotator(args.name) is None:
        raise DataError(f"no annotator named '{args.name}' (see `rlhflab annotators list`)")
    try:
        token = _change_annotator(store, args)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    if command == "disable":
        print(f"{args.name} is disabled: their token, sessions and leases stopped")
        return 0
    base = (args.url or store.setting("public_url") or "http://127.0.0.1:8000").rstrip("/")
    admin = store.annotator(args.name).is_admin
    code = store.login_code(args.name)
    print(f"sign-in link (one use): {base}/login?code={code}" + ("&next=/admin" * admin))
    if token:
        print(f"token for scripts (Authorization: Bearer …): {token}")
    return 0


def _change_annotator(store, args) -> str | None:
    """Apply an annotators command; the new token for add and rotate."""
    command = args.annotators_command
    if command == "add":
        return store.add_annotator(args.name, is_admin=args.admin)
    if command == "rotate":
        return store.rotate_token(args.name)
    if command in ("disable", "enable"):
        store.set_disabled(args.name, command == "disable")
    return None


def _cmd_annotators_list(args) -> int:
    store = _store(args)
    for a in store.annotators():
        role = ("disabled " if a.disabled else "") + ("admin" if a.is_admin else "annotator")
        n = store.count_judgements(a.name)
        print(f"{a.name}\t{role}\t{n} judgement{'' if n == 1 else 's'}")
    return 0


def _cmd_feedback_export(args) -> int:
    """Write the records; writing none is an error (exit 1) that says why."""
    from rlhflab.feedback.exchange import export_records

    by_id = str(Path(args.run_dir).resolve()) if args.ids else None
    records = export_records(_store(args), args.format, by_id=by_id)
    if not records:
        hint = "" if args.format == "segments" else (
            " (judgements of segment pairs, from control runs, export with --format segments)"
        )  # fmt: skip
        print(f"error: wrote 0 records: no {args.format} judgements in the store{hint}",
              file=sys.stderr)  # fmt: skip
        return 1
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    if args.out:
        Path(args.out).write_text(lines, encoding="utf-8")
        print(f"wrote {len(records)} records to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(lines)
    return 0


def _cmd_feedback_import(args) -> int:
    from rlhflab.feedback.exchange import import_jsonl

    n = import_jsonl(_store(args), args.file, args.format, gold=args.gold)
    print(f"imported {n} {'gold questions' if args.gold else 'judgements'} from {args.file}")
    return 0


def _cmd_config_show(args) -> int:
    print(to_yaml(build_config(args.config, args.overrides)), end="")
    return 0


def _cmd_report(args) -> int:
    from rlhflab.diagnostics.report import build_report

    print(f"report: {build_report(args.run_dir)}")
    return 0


def _cmd_compare(args) -> int:
    from rlhflab.diagnostics.compare import build_comparison

    out = args.out or f"runs/compare-{datetime.now():%Y%m%d-%H%M%S}"
    print(f"comparison: {build_comparison(args.run_dirs, out)}")
    return 0


def _run_demonstrations(cfg, run) -> int:
    from rlhflab.demonstrations.dataset import DemonstrationError
    from rlhflab.demonstrations_loop import DemonstrationsLoop

    try:
        summary = DemonstrationsLoop(cfg, run, lambda r: console.print(r, highlight=False)).run()
    except DemonstrationError as exc:  # a demonstrations file that cannot be used
        print(f"error: {exc}", file=sys.stderr)
        return 2
    keys = ("true_return", "held_out_return", "normalised_score", "cirl_value", "wall_seconds")
    console.print({k: summary[k] for k in keys if k in summary})
    console.print(f"summary: {run.summary_path} · report: {run.path / 'report.html'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ConfigError, DataError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (StoreError, ExecutorError) as exc:  # an unreachable database or cluster: named
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:  # a text run says what its checkpoints hold
        print(
            f"interrupted; {exc}"
            if str(exc)
            else "interrupted; the run directory holds a checkpoint — continue with "
            "`rlhflab run --resume DIR`",
            file=sys.stderr,
        )
        return 130
    except Exception as exc:  # the run's own errors are shown; anything else is re-raised
        from rlhflab.control_loop import RunError
        from rlhflab.envs.wrappers import UnsupportedEnvError
        from rlhflab.runs import RunDirInUse
        from rlhflab.text_loop import TextRunError

        if isinstance(exc, (RunError, UnsupportedEnvError, TextRunError, RunDirInUse)):
            print(f"error: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
