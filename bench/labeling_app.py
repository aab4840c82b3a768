"""Labeling-app latency and throughput: N concurrent annotators on loopback, no think time.

For each set-up — SQLite with one app process, PostgreSQL with 1, 2, 4 app workers
(`rlhflab label --workers N --store postgresql://…`) — it makes a fresh store, starts the app in
its own process group, and runs N client threads that each lease and answer queries over HTTP
(POST /api/next, then POST /api/answer quoting the lease) with no pause between them, so the app
is the limit. Every run is bounded: at most --per-annotator judgements per annotator and
--max-seconds of wall time.

Prints p50/p99 latency of both calls and judgements per second (stored judgements / wall time),
and writes the rows to bench/results/labeling_app-<set-ups>.json (or --out). Because the
clients share the machine with the server (and on this one, with other jobs), it also reads the
CPU time the server side spent — every app process, and PostgreSQL's processes — from /proc,
and the client threads' (this process), and divides: server and client CPU ms per judgement,
and the judgements/s that many CPUs would sustain if they did nothing else, for the server
alone and for server and clients sharing them (estimates, marked as such; they ignore waiting
on locks and I/O). Target (issue 16): with 20
annotators, p99 of next and answer < 50 ms and ≥ 500 judgements/s.

PostgreSQL: a throwaway server (tests/postgres.py: initdb on a free port, stopped at the end),
or --pg-url postgresql://… for one already running (each set-up creates a database in it).

    .venv/bin/python bench/labeling_app.py [--annotators 20] [--per-annotator 100]
        [--setups sqlite:1,postgres:1,postgres:2,postgres:4] [--max-seconds 60]

`--components` profiles instead: in this process, no HTTP, one thread, it calls what the two
routes call (the token lookup, `lease_next`, `answer_lease`; and `progress`, which `/api/next`
counted per judgement until it became `/api/me`'s alone — subtract it for today's routes) for
every annotator in turn and reads the thread's CPU time around each call, plus PostgreSQL's
server CPU over the whole loop: CPU ms per judgement by component, which a loaded machine barely
moves. The HTTP run's server CPU per judgement minus these is the web stack's share (uvicorn,
FastAPI).

    .venv/bin/python bench/labeling_app.py --components [--setups sqlite:1,postgres:1]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

from rlhflab.feedback.schema import lease_token_of
from rlhflab.feedback.store import FeedbackStore
from rlhflab.runs import RunDir

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the tests' throwaway PostgreSQL server


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--annotators", type=int, default=20)
    ap.add_argument("--per-annotator", type=int, default=100)
    ap.add_argument("--setups", default="sqlite:1,postgres:1,postgres:2,postgres:4")
    ap.add_argument("--max-seconds", type=float, default=60.0, help="stop the clients after this")
    ap.add_argument("--pg-url", help="a running PostgreSQL server (default: start a throwaway one)")
    ap.add_argument(
        "--components", action="store_true", help="CPU per judgement by component, no HTTP"
    )
    ap.add_argument(
        "--out",
        help="write the rows here (default: bench/results/labeling_app-<set-ups>.json, or "
        "labeling_components-<set-ups>.json: one file per configuration, never overwritten "
        "by another)",
    )
    args = ap.parse_args()
    setups = [(b, int(w)) for b, w in (s.split(":") for s in args.setups.split(","))]
    server = None
    if any(b == "postgres" for b, _ in setups) and not args.pg_url:
        from postgres import PostgresServer, binaries

        bindir = binaries()
        if bindir is None:
            sys.exit("no PostgreSQL server binaries: install Debian's `postgresql`, or --pg-url")
        server = PostgresServer(bindir).start()
    rows = []
    try:
        for backend, workers in setups:
            url = None
            if backend == "postgres":
                url = server.new_database() if server else _new_database(args.pg_url)
            pg_data = server.data if server and backend == "postgres" else None
            if args.components:
                rows.append(components(args, backend, url, pg_data))
            else:
                rows += measure(args, backend, workers, url, pg_data)
    finally:
        if server:
            server.stop()
    (report_components if args.components else report)(args, rows)


def _new_database(base: str) -> str:
    import psycopg

    name = f"bench_{int(time.time() * 1000)}"
    with psycopg.connect(base.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return base.rsplit("/", 1)[0] + "/" + name


def measure(args, backend: str, workers: int, url: str | None, pg_data=None) -> list[dict]:
    """One set-up on a fresh store: latencies of both calls and judgements per second."""
    run = RunDir(Path(tempfile.mkdtemp()) / "run")
    store = FeedbackStore(url or run.store_url)
    tokens = [store.add_annotator(f"a{i:02d}") for i in range(args.annotators)]
    for i in range(args.annotators * args.per_annotator):
        store.add_text_query("text_pair", f"prompt {i}", [f"response a{i}", f"response b{i}"])
    before = store.count_judgements()
    app = _start_app(run, workers, url)
    try:
        cpu0, client0 = _server_cpu(app["proc"].pid, pg_data), time.process_time()
        lat, wall = _load(app["url"], tokens, args)
        cpu = _server_cpu(app["proc"].pid, pg_data) - cpu0
        client = time.process_time() - client0  # the 20 client threads (this process)
    finally:
        os.killpg(app["proc"].pid, signal.SIGKILL)
        app["proc"].wait()
    stored = store.count_judgements() - before
    store.close()
    return [
        {
            "setup": f"{backend}, {workers} worker{'s' if workers > 1 else ''}",
            "call": f"POST /api/{name}",
            "requests": len(xs),
            "p50_ms": float(np.percentile(np.array(xs) * 1000, 50)) if xs else None,
            "p99_ms": float(np.percentile(np.array(xs) * 1000, 99)) if xs else None,
            "judgements_per_s": stored / wall if name == "answer" else None,
            "stored": stored,
            "failed": lat["failed"][0],
            "server_cpu_ms_per_judgement": 1000 * cpu / stored if stored else None,
            "client_cpu_ms_per_judgement": 1000 * client / stored if stored else None,
            "load": os.getloadavg()[0],
            "pg_cpu_counted": backend == "sqlite" or pg_data is not None,
        }
        for name, xs in (("next", lat["next"]), ("answer", lat["answer"]))
    ]


COMPONENTS = ("token lookup ×2", "lease_next", "progress", "answer_lease")


def components(args, backend: str, url: str | None, pg_data=None) -> dict:
    """CPU ms per judgement spent in each store call the two routes make (module docstring)."""
    run = RunDir(Path(tempfile.mkdtemp()) / "run")
    store = FeedbackStore(url or run.store_url)
    tokens = [store.add_annotator(f"a{i:02d}") for i in range(args.annotators)]
    for i in range(args.annotators * args.per_annotator):
        store.add_text_query("text_pair", f"prompt {i}", [f"response a{i}", f"response b{i}"])
    spent = dict.fromkeys(COMPONENTS, 0.0)
    rng, n = np.random.default_rng(0), 0

    def timed(part: str, call, *a):
        t0 = time.thread_time()
        out = call(*a)
        spent[part] += time.thread_time() - t0
        return out

    pg0 = _server_cpu(-1, pg_data) if pg_data else 0.0
    wall0 = time.perf_counter()
    for _ in range(args.per_annotator):
        for token in tokens:
            who = timed("token lookup ×2", store.annotator_by_token, token)
            leased = timed("lease_next", store.lease_next, who.name, 300.0, rng)
            if leased is None:
                continue
            timed("progress", store.progress, who.name)
            timed("token lookup ×2", store.annotator_by_token, token)
            q, lease = leased
            timed(
                "answer_lease",
                store.answer_lease,
                who.name,
                q.id,
                lambda kind, order: ("left", {}),
                lease_token_of(lease),
            )
            n += 1
    wall = time.perf_counter() - wall0
    pg = _server_cpu(-1, pg_data) - pg0 if pg_data else None
    store.close()
    per = {k: 1000 * v / n for k, v in spent.items()}
    return {
        "setup": backend,
        "judgements": n,
        "cpu_ms": per,
        "db_server_ms": None if pg is None else 1000 * pg / n,
        "wall_ms": 1000 * wall / n,
        "load": os.getloadavg()[0],
    }


def report_components(args, rows: list[dict]) -> None:
    table = Table(title=f"CPU ms per judgement by component · {args.annotators} annotators")
    for col in ("store", "judgements", *COMPONENTS, "app total", "PostgreSQL server", "wall ms"):
        table.add_column(col, justify="right")
    for r in rows:
        ms = r["cpu_ms"]
        pg = r["db_server_ms"]
        table.add_row(
            r["setup"],
            str(r["judgements"]),
            *(f"{ms[k]:.2f}" for k in COMPONENTS),
            f"{sum(ms.values()):.2f}",
            "–" if pg is None else f"{pg:.2f}",
            f"{r['wall_ms']:.2f}",
        )
    table.caption = f"load average {os.getloadavg()[0]:.1f} at the end · one thread, no HTTP"
    Console(width=140).print(table)
    _write(args, rows, "labeling_components")


def _write(args, rows: list[dict], name: str) -> None:
    """The rows, as JSON, to --out or to a file named after the set-ups measured."""
    setups = args.setups.replace(":", "").replace(",", "_")
    out = Path(args.out) if args.out else HERE / "results" / f"{name}-{setups}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))
    print(f"wrote {out}")


def _ticks(pid: int | str) -> tuple[int, int, float]:
    """(process group, parent pid, CPU seconds of the process and its reaped children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return int(fields[2]), int(fields[1]), cpu


def _server_cpu(app_pgid: int, pg_data: Path | None) -> float:
    """CPU seconds used so far by the app's process group and the PostgreSQL server whose data
    directory is `pg_data` (the postmaster, its reaped children and its live backends)."""
    postmaster = int((pg_data / "postmaster.pid").read_text().split()[0]) if pg_data else -1
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            group, parent, cpu = _ticks(entry.name)
        except (OSError, ValueError, IndexError):
            continue  # the process ended meanwhile
        if group == app_pgid or int(entry.name) == postmaster or parent == postmaster:
            total += cpu
    return total


def _start_app(run: RunDir, workers: int, url: str | None) -> dict:
    from labeling import free_port

    port = free_port()
    store = ["--store", url] if url else []
    command = ["label", str(run.path), "--port", str(port), "--workers", str(workers), *store]
    proc = subprocess.Popen(
        [sys.executable, "-m", "rlhflab.cli", *command],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, PYTHONWARNINGS="ignore"),
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300  # a loaded machine takes long to import the app
    while time.time() < deadline:
        try:
            if httpx.get(base + "/openapi.json", timeout=1).status_code == 200:
                time.sleep(2 if workers > 1 else 0)  # every worker up, not just the first
                return {"proc": proc, "url": base}
        except httpx.TransportError:
            time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    raise RuntimeError("the labeling app did not start within 300 s")


def _load(url: str, tokens: list[str], args) -> tuple[dict, float]:
    """Every annotator leases and answers, without pause, until done or out of time."""
    lat: dict[str, list] = {"next": [], "answer": [], "failed": [0]}
    lock = threading.Lock()
    deadline = time.time() + args.max_seconds

    def annotate(token: str) -> None:
        headers = {"authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, headers=headers, timeout=30) as c:
            for _ in range(args.per_annotator):
                if time.time() > deadline:
                    return
                t0 = time.perf_counter()
                try:
                    q = c.post("/api/next")
                    t1 = time.perf_counter()
                    if q.status_code != 200:
                        return
                    body = {"query_id": q.json()["query_id"], "choice": "left"}
                    a = c.post("/api/answer", json={**body, "lease": q.json()["lease"]})
                    t2 = time.perf_counter()
                except httpx.TransportError:  # no answer within the client's 30 s: a failure
                    with lock:
                        lat["failed"][0] += 1
                    return
                with lock:
                    lat["next"].append(t1 - t0)
                    lat["answer"].append(t2 - t1)
                    lat["failed"][0] += a.status_code != 201

    threads = [threading.Thread(target=annotate, args=(t,)) for t in tokens]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=args.max_seconds + 60)
    return lat, time.perf_counter() - started


def _estimate(r: dict, cpus: int) -> tuple[str, str, str, str]:
    """Server and client CPU per judgement, and the judgements/s `cpus` idle CPUs would give
    the server alone, and server and clients together (as here: on the same CPUs)."""
    ms, client = r["server_cpu_ms_per_judgement"], r["client_cpu_ms_per_judgement"]
    if not r["call"].endswith("answer") or not ms:
        return "", "", "", ""
    note = "" if r["pg_cpu_counted"] else " (app only)"
    return (
        f"{ms:.2f}{note}",
        f"{client:.2f}",
        f"≈ {1000 * cpus / ms:.0f}",
        f"≈ {1000 * cpus / (ms + client):.0f}",
    )


def report(args, rows: list[dict]) -> None:
    table = Table(
        title=f"labeling app · {args.annotators} annotators, no think time · loopback · "
        f"{os.cpu_count()} CPUs"
    )
    cpus = os.cpu_count() or 1
    columns = ("set-up", "call", "requests", "p50 ms", "p99 ms", "judgements/s", "failed")
    estimates = (
        "server CPU ms/judgement",
        "client CPU ms/judgement",
        f"est. judgements/s, server on {cpus} idle CPUs",
        f"… server + clients on {cpus} CPUs",
    )
    for col in (*columns, *estimates):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            r["setup"],
            r["call"],
            str(r["requests"]),
            f"{r['p50_ms']:.1f}" if r["p50_ms"] is not None else "–",
            f"{r['p99_ms']:.1f}" if r["p99_ms"] is not None else "–",
            f"{r['judgements_per_s']:.0f}" if r["judgements_per_s"] is not None else "",
            str(r["failed"]) if r["call"].endswith("answer") else "",
            *_estimate(r, cpus),
        )
    load = os.getloadavg()[0]
    table.caption = (
        f"target: p99 < 50 ms for both calls and ≥ 500 judgements/s · load average {load:.1f} "
        "at the end · est.: CPUs ÷ server CPU per judgement, nothing else running"
    )
    Console(width=160).print(table)
    _write(args, rows, "labeling_app")


if __name__ == "__main__":
    main()
