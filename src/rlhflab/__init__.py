"""rlhflab: reinforcement learning from human feedback."""

__version__ = "0.1.0"

import rlhflab.envs  # noqa: F401 — registers the rlhflab/* gymnasium env ids
