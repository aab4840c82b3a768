"""A real PostgreSQL server for the tests: Debian's `postgresql` package, a throwaway data
directory (initdb), a free port on 127.0.0.1. `conftest.py` starts one per test session and gives
each test that asks for it a database of its own."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from labeling import free_port

MISSING = (
    "PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian's `postgresql` "
    "package (`.ci/run` and `make install` do)"
)


def binaries() -> Path | None:
    """The directory holding initdb and pg_ctl: on PATH, else the newest /usr/lib/postgresql/N."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    return Path(versions[-1]).parent if versions else None


def _version(path: str) -> float:
    try:
        return float(Path(path).parts[-3])
    except ValueError:
        return 0.0


class PostgresServer:
    """initdb, then `pg_ctl start` on 127.0.0.1:PORT; `stop()` removes everything.

    PostgreSQL refuses to run as root, so as root it runs as the `postgres` user (which Debian's
    package creates) or `nobody`."""

    def __init__(self, bindir: Path):
        self.bindir, self.port = bindir, free_port()
        self.root = Path(tempfile.mkdtemp(prefix="rlhflab-pg-"))
        self.data, self.user = self.root / "data", None
        if os.geteuid() == 0:
            self.user = _unprivileged_user()
            uid = pwd.getpwnam(self.user).pw_uid
            os.chown(self.root, uid, -1)
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}"
        self._databases = 0

    def _run(self, *args: str, timeout: float = 120) -> None:
        subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            check=True,
            capture_output=True,
            timeout=timeout,
            user=self.user,
            cwd=self.root,
        )

    def start(self) -> PostgresServer:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync")
        self._start()
        return self

    def _start(self) -> None:
        # fsync off: these tests kill processes, never the machine, and the OS keeps the WAL
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.root} -c fsync=off -c max_connections=200"
        )
        log = str(self.root / "server.log")  # the server's output: never this process's pipes
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", log, "-o", options, "-w", "-t", "60", "start"
        )

    def restart(self, mode: str = "immediate") -> None:
        """Stop the server (`immediate`: as after a crash, recovery from the WAL), start it."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")
        self._start()

    def new_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        import psycopg

        self._databases += 1
        name = f"t{self._databases}_{int(time.time() * 1000) % 100000}"
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"{self.url}/{name}"

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=60)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _unprivileged_user() -> str:
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root, and neither a `postgres` nor a `nobody` user exists")
