"""Labeling-app latency and throughput: N concurrent annotators on loopback.

Starts `rlhflab label` in its own process on a fresh store, then N threads each lease
and answer queries over HTTP (POST /api/next, then POST /api/answer), in two modes:

- paced: each annotator waits a random think time (exponential, mean --think-ms) between
  answers — still far quicker than a person watching two clips;
- saturated: no think time at all, so the app's throughput is the limit and latency
  is mostly queueing behind the single SQLite writer.

Prints p50/p99 latency of both calls and sustained judgements per second.
Target: p99 < 50 ms with 20 annotators.

    .venv/bin/python bench/labeling_app.py [--annotators 20] [--per-annotator 100] [--think-ms 500]
"""

from __future__ import annotations

import argparse
import os
import socket
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

from rlhflab.feedback.store import FeedbackStore
from rlhflab.runs import RunDir


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--annotators", type=int, default=20)
    ap.add_argument("--per-annotator", type=int, default=100)
    ap.add_argument(
        "--think-ms", type=float, default=500.0, help="mean think time of the paced mode"
    )
    ap.add_argument(
        "--max-seconds", type=float, default=300.0, help="stop every client after this long"
    )
    args = ap.parse_args()

    table = Table(
        title=f"labeling app · {args.annotators} concurrent annotators · loopback · SQLite (WAL)"
    )
    for col in ("mode", "call", "requests", "p50 ms", "p99 ms", "max ms", "judgements/s"):
        table.add_column(col, justify="right")
    for mode, think in (
        (f"paced ({args.think_ms:.0f} ms think)", args.think_ms / 1000),
        ("saturated", 0.0),
    ):
        lat, stored, wall = run_load(args, think)
        for name, xs in lat.items():
            ms = np.array(xs) * 1000
            table.add_row(
                mode,
                f"POST /api/{name}",
                str(len(ms)),
                f"{np.percentile(ms, 50):.1f}",
                f"{np.percentile(ms, 99):.1f}",
                f"{ms.max():.1f}",
                f"{stored / wall:.0f}" if name == "answer" else "",
            )
    table.caption = "target: p99 < 50 ms with 20 annotators"
    Console(width=140).print(table)


def run_load(args, think: float) -> tuple[dict, int, float]:
    """One load run on a fresh store; returns latencies, judgements stored and wall seconds."""
    run = RunDir(Path(tempfile.mkdtemp()) / "run")
    store = FeedbackStore(run.store_url)
    tokens = [store.add_annotator(f"a{i:02d}") for i in range(args.annotators)]
    for i in range(args.annotators * args.per_annotator):
        store.add_text_query("text_pair", f"prompt {i}", [f"response a{i}", f"response b{i}"])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "rlhflab.cli", "label", str(run.path), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, PYTHONWARNINGS="ignore"),
    )
    try:
        for _ in range(600):
            try:
                httpx.get(url + "/openapi.json", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        lat = {"next": [], "answer": []}
        lock = threading.Lock()
        deadline = time.time() + args.max_seconds

        def annotate(i: int, token: str) -> None:
            rng = np.random.default_rng(i)
            with httpx.Client(
                base_url=url, headers={"authorization": f"Bearer {token}"}, timeout=30
            ) as c:
                for _ in range(args.per_annotator):
                    if time.time() > deadline:
                        return
                    if think:
                        time.sleep(rng.exponential(think))
                    t0 = time.perf_counter()
                    q = c.post("/api/next")
                    t1 = time.perf_counter()
                    if q.status_code != 200:
                        return
                    a = c.post(
                        "/api/answer", json={"query_id": q.json()["query_id"], "choice": "left"}
                    )
                    t2 = time.perf_counter()
                    with lock:
                        lat["next"].append(t1 - t0)
                        if a.status_code == 201:
                            lat["answer"].append(t2 - t1)

        threads = [threading.Thread(target=annotate, args=(i, t)) for i, t in enumerate(tokens)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - started
    finally:
        proc.kill()
    return lat, store.count_judgements(), wall


if __name__ == "__main__":
    main()
