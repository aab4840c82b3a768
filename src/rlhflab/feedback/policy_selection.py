"""Which policy to keep: checkpoints compared by the annotator, on whole episodes.

RL against a learned reward does not improve the true objective monotonically: as the
reward model is refitted and the policy exploits it, a behaviour the annotator wanted can
appear at one checkpoint and be lost at the next (Gao et al. 2023 measure the same
non-monotonic gold curve for language models; our backflip runs flipped in 17 of 20
evaluation episodes at one checkpoint and 0 of 20 at the end). The remedy people use is to
*choose* the checkpoint to ship by asking the people whose judgement defines the task —
InstructGPT's labelers compared final models, not only training samples.

At every checkpoint k the annotator judges n paired queries

    (σᵢ(π_k), σᵢ(π*))   i = 1 … n,   σᵢ(π) = the whole episode π plays from start state sᵢ,

with the same fixed start states for every checkpoint (a paired comparison), and

    π* ← π_k   when   #{i: σᵢ(π_k) ≻ σᵢ(π*)} > #{i: σᵢ(π*) ≻ σᵢ(π_k)}.

The run ends with π*. Its n judgements per checkpoint are labels like any other: they count
against `feedback.labels` (the reward model gets the rest), but they are not fitted —
whole episodes are longer than the reward model's segments. Synthetic annotators only: with
people the report's clips of every checkpoint serve the same purpose.
"""

from __future__ import annotations

import torch

from rlhflab.config import EnvConfig
from rlhflab.feedback.population import judge_pairs
from rlhflab.policy.rollout import Episodes, play_episodes
from rlhflab.types import Judgement, Segment

SELECTION_SEED = 30_000  # start states of the selection episodes, apart from evaluation's


def episode_segments(played: Episodes, judge: str) -> list[Segment]:
    """Each whole episode as one segment carrying the `judge` channel's rewards."""
    return [
        Segment(
            obs=played.obs[:, e],
            actions=played.actions[:, e],
            judged_rewards=played.rewards[judge][:, e],
            absorbing=played.absorbing[:, e],
        )
        for e in range(played.obs.shape[1])
    ]


class PolicySelection:
    """Keeps the checkpoint the annotator prefers (see the module docstring)."""

    def __init__(self, env_cfg: EnvConfig, annotator, judge: str, queries: int):
        self.env_cfg, self.annotator, self.judge, self.queries = env_cfg, annotator, judge, queries
        self.kept: int | None = None  # iteration of π*
        self.kept_episodes: list[Segment] = []
        self.judgements = 0
        self.history: list[dict] = []  # one row per offer: iteration, wins, losses, kept

    def offer(self, iteration: int, act) -> bool:
        """Compare the policy `act` of `iteration` with π*; True when it becomes π*."""
        with torch.no_grad():
            played = play_episodes(self.env_cfg, self.queries, act, SELECTION_SEED)
        episodes = episode_segments(played, self.judge)
        wins = losses = 0
        if self.kept is not None:
            answers = judge_pairs(self.annotator, list(zip(episodes, self.kept_episodes)))
            self.judgements += len(answers)
            wins = sum(c.judgement is Judgement.LEFT for c in answers)
            losses = sum(c.judgement is Judgement.RIGHT for c in answers)
        keep = self.kept is None or wins > losses
        if keep:
            self.kept, self.kept_episodes = iteration, episodes
        self.history.append(
            {"iteration": iteration, "wins": wins, "losses": losses, "kept": self.kept}
        )
        return keep

    def state_dict(self) -> dict:
        return {
            "kept": self.kept,
            "kept_episodes": self.kept_episodes,
            "judgements": self.judgements,
            "history": self.history,
        }

    def load_state_dict(self, state: dict) -> None:
        self.kept, self.kept_episodes = state["kept"], list(state["kept_episodes"])
        self.judgements, self.history = state["judgements"], list(state["history"])
