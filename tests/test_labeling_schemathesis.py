"""Property-based tests of the labeling API against its own /openapi.json (schemathesis).

Every check is on (`--checks all`: no 5xx, every status and body documented, invalid data
refused, valid data accepted, auth enforced, 405 with Allow for undocumented methods, …).
Bounded: at most 5 examples per operation and phase, and 15 s per identity.
"""

import subprocess
import sys

import pytest
from labeling import AppProcess, make_run, seg

pytest.importorskip("schemathesis")


@pytest.fixture
def server(tmp_path):
    run, store, tokens = make_run(tmp_path)
    for i in range(20):
        store.add_query(seg(i), seg(i + 100))
    for i in range(10):
        store.add_text_query("text_pair", f"prompt {i}", ["a", "b"])
    app = AppProcess(run.path).start()
    yield app, tokens
    app.kill()


def schemathesis(url: str, *headers: str, seed: int, cwd, seconds: int = 15):
    cmd = [sys.executable, "-m", "schemathesis.cli", "run", f"{url}/openapi.json"]
    cmd += ["--checks", "all", "--max-examples", "5", "--max-time", str(seconds)]
    cmd += ["--seed", str(seed), "--workers", "1", "--no-color"]
    for h in headers:
        cmd += ["--header", h]
    return subprocess.run(  # in cwd: its cache directory stays out of the repository
        cmd, capture_output=True, text=True, timeout=seconds + 120, cwd=cwd
    )


@pytest.mark.parametrize("who", ["annotator", "anonymous"])
def test_the_api_keeps_its_schema_under_fuzzing(server, who, tmp_path):
    app, tokens = server
    headers = [f"Authorization: Bearer {tokens['alice']}"] if who == "annotator" else []
    done = schemathesis(app.url, *headers, seed=11 if who == "annotator" else 12, cwd=tmp_path)
    summary = "\n".join(done.stdout.splitlines()[-40:])
    assert done.returncode == 0, summary[-6000:]
    assert "passed" in summary
