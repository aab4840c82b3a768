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
