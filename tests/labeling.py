"""Helpers for labeling-app tests: a real app process on a free loopback port, small segments,
and the headless Chromium the browser tests drive (the report's test drives it too)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from rlhflab.feedback.store import FeedbackStore
from rlhflab.runs import RunDir
from rlhflab.types import Segment

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def seg(value, k=4):
    """A segment of k steps whose observations and rewards are all `value`."""
    return Segment(
        np.full((k, 2), value, np.float32), np.zeros(k, np.int64), np.full(k, value, np.float32)
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppProcess:
    """`rlhflab label RUN_DIR` in a subprocess, listening on 127.0.0.1."""

    def __init__(
        self,
        run_dir: Path,
        lease_seconds: float = 300.0,
        port: int | None = None,
        extra: list[str] | None = None,
    ):
        self.run_dir, self.lease_seconds, self.extra = Path(run_dir), lease_seconds, extra or []
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self) -> AppProcess:
        env = dict(os.environ, PYTHONWARNINGS="ignore")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rlhflab.cli",
                "label",
                str(self.run_dir),
                "--port",
                str(self.port),
                "--lease-seconds",
                str(self.lease_seconds),
                *self.extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            text=True,
            start_new_session=True,  # its own process group: `kill` reaches every app worker
        )
        deadline = time.time() + 120  # a loaded 2-CPU machine can take a minute to import
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"labeling app exited: {self.proc.stdout.read()}")
            try:
                if httpx.get(self.url + "/openapi.json", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"labeling app did not start within 120 s: {self.proc.stdout.read()}")

    def kill(self, sig=9) -> None:
        """Signal the app and its worker processes (the whole process group); wait for it."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)
        if self.proc and sig == 9:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 9)  # workers the parent left behind

    def client(self, token: str | None) -> httpx.Client:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=20)


def make_run(
    tmp_path: Path, names=("alice", "bob"), store_url: str | None = None
) -> tuple[RunDir, FeedbackStore, dict[str, str]]:
    """A run directory, its store (`store_url`, else RUN_DIR/feedback.db) and annotators."""
    run = RunDir(tmp_path / "run")
    store = FeedbackStore(store_url or run.store_url)
    tokens = {name: store.add_annotator(name) for name in names}
    tokens["admin"] = store.add_annotator("admin", is_admin=True)
    return run, store, tokens


def answer_text_pairs(client: httpx.Client, stop, choose, seen: list[dict] | None = None) -> None:
    """A scripted person in the app: leases text pairs over HTTP until `stop` is set, answering
    each with `choose(query) -> "left" | "right" | "equal"` (the query as /api/next gave it);
    the queries answered (201) are appended to `seen`."""
    while not stop.is_set():
        nxt = client.post("/api/next")
        if nxt.status_code == 204:
            time.sleep(0.05)
            continue
        q = nxt.json()
        answer = {"query_id": q["query_id"], "choice": choose(q), "lease": q["lease"]}
        if client.post("/api/answer", json=answer).status_code == 201 and seen is not None:
            seen.append(q)
