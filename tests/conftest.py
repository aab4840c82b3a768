import os
import subprocess
import sys

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture
def cli():
    """Run the `rlhflab` command in a subprocess; returns CompletedProcess."""

    def run(*args, timeout=300, **kw):
        env = dict(os.environ, PYTHONWARNINGS="ignore", COLUMNS="200")
        return subprocess.run(
            [sys.executable, "-m", "rlhflab.cli", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            stdin=subprocess.DEVNULL,
            **kw,
        )

    return run


@pytest.fixture(scope="session")
def postgres_server():
    """One real PostgreSQL server for the session (tests/postgres.py). Skipped, with the reason,
    only where the server is not installed; under CI (CI=true) its absence is an error."""
    from postgres import MISSING, PostgresServer, binaries

    bindir = binaries()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail(MISSING)
        pytest.skip(MISSING)
    pytest.importorskip("psycopg", reason="psycopg not installed: pip install 'rlhflab[postgres]'")
    server = PostgresServer(bindir).start()
    yield server
    server.stop()


@pytest.fixture
def pg_url(postgres_server):
    """The URL of a fresh database of its own on the session's PostgreSQL server."""
    return postgres_server.new_database()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request, tmp_path):
    """A fresh, empty feedback store's URL: SQLite in tmp_path, then a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'feedback.db'}"
    return request.getfixturevalue("pg_url")
