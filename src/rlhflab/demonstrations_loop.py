"""The driver of a run that learns from demonstrations: `rlhflab run method=bc|dagger|…`.

`DemonstrationsLoop` has the shape of every driver: `__init__` builds the parts, `run()` calls
the named steps top to bottom, and the state they share is attributes.

  1. gather demonstrations — the env's scripted expert (`experts.py`), or `demonstrations.file`
     (validated against the env); kept in the run directory as `demonstrations/expert.npz`;
  2. learn — the method: bc, dagger, procedure_cloning, gail, airl (a policy for the env),
     maxent_irl (a reward for the gridworld), cirl (an exact solution of an assistance game);
  3. evaluate — expert, learner and random on the same true return (for mazes, also on held-out
     layouts; for MaxEnt IRL, the identifiability table; for CIRL, robots × humans);
  4. summary.json and the report (`report.md` / `report.html`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch

from rlhflab.config import EnvConfig, RunConfig
from rlhflab.demonstrations import cirl as cirl_games
from rlhflab.demonstrations import dataset, experts
from rlhflab.demonstrations.airl import airl
from rlhflab.demonstrations.bc import ClonedPolicy, behavioural_cloning, fit, make_policy
from rlhflab.demonstrations.dagger import dagger
from rlhflab.demonstrations.gail import gail
from rlhflab.demonstrations.maxent_irl import maxent_irl, sample_demonstrations
from rlhflab.demonstrations.procedure_cloning import MazeActionNet, train_procedure_cloning
from rlhflab.diagnostics.demonstrations_report import build_demonstrations_report
from rlhflab.diagnostics.identifiability import candidate_rewards, identifiability
from rlhflab.envs.gridworld import GridworldEnv
from rlhflab.envs.maze import HELD_OUT_LAYOUTS
from rlhflab.policy.rollout import evaluate_true_return
from rlhflab.runs import RunDir

OnLog = Callable[[dict], None]


class DemonstrationsError(RuntimeError):
    pass


class DemonstrationsLoop:
    """One run of a learning-from-demonstrations method."""

    def __init__(self, cfg: RunConfig, run: RunDir, on_log: OnLog | None = None):
        if cfg.demonstrations is None:
            raise DemonstrationsError("a demonstrations run needs a `demonstrations:` section")
        self.cfg, self.dc, self.run_dir = cfg, cfg.demonstrations, run
        self.on_log = on_log or (lambda record: None)
        self.started = time.time()
        self.demos: dataset.Demonstrations | None = None
        self.act: Callable[[np.ndarray], np.ndarray] | None = None
        self.results: dict = {}

    @property
    def method(self) -> str:
        return self.dc.method

    def run(self) -> dict:
        torch.set_num_threads(self.cfg.threads)
        torch.manual_seed(self.cfg.seed)
        self.run_dir.write_config(self.cfg)
        self.gather_demonstrations()
        self.learn()
        self.evaluate()
        summary = self.write_summary()
        build_demonstrations_report(self.run_dir.path)
        return summary

    # -- 1. demonstrations ------------------------------------------------------------------
    def gather_demonstrations(self) -> None:
        if self.method == "cirl":
            return  # an assistance game: the human is modelled, not recorded
        env_cfg, dc = self.cfg.env, self.dc
        horizon = dc.demo_horizon or env_cfg.horizon
        if dc.file:
            probe = gym.make(env_cfg.id, **env_cfg.kwargs)
            self.demos = dataset.load(dc.file, env=probe)
        elif self.method == "maxent_irl":
            self.demos = sample_demonstrations(self._world(), dc.episodes, self.cfg.seed)
        elif self.method == "procedure_cloning" or env_cfg.id == "rlhflab/Maze-v0":
            self.demos = experts.record_maze(horizon, dc.episodes, self.cfg.seed, env_cfg.kwargs)
        else:
            act = experts.scripted_expert(env_cfg.id)
            self.demos = experts.record(
                env_cfg.id, horizon, dc.episodes, act, self.cfg.seed, env_cfg.kwargs, "scripted"
            )
        dataset.save(self.demos, dataset.run_path(self.run_dir.path))
        self.log(
            {"phase": "demonstrations", "episodes": len(self.demos), "steps": self.demos.steps}
        )

    def _world(self):
        return GridworldEnv(**self.cfg.env.kwargs).world

    def log(self, record: dict) -> None:
        record = {**record, "wall_seconds": round(time.time() - self.started, 2)}
        self.run_dir.log(record)
        self.on_log(record)

    # -- 2. learning ------------------------------------------------------------------------
    def learn(self) -> None:
        getattr(self, f"learn_{self.method}")()

    def learn_bc(self) -> None:
        assert self.demos is not None
        space = gym.make(self.cfg.env.id, **self.cfg.env.kwargs).action_space
        dc = self.dc
        if self.cfg.env.id == "rlhflab/Maze-v0":
            policy = self._maze_bc()
        else:
            policy = behavioural_cloning(
                self.demos, space, dc.hidden, dc.epochs, dc.lr, seed=self.cfg.seed
            ).policy
        self.act = policy.act

    def _maze_bc(self) -> ClonedPolicy:
        assert self.demos is not None
        obs, acts, _ = self.demos.transitions()
        size = self.cfg.env.kwargs.get("size", 8)
        policy = ClonedPolicy(
            MazeActionNet(size, self.dc.hidden), gym.spaces.Discrete(4), obs.shape[1]
        )
        fit(policy, obs, acts, self.dc.epochs, self.dc.lr, seed=self.cfg.seed, normalize=False)
        return policy

    def learn_dagger(self) -> None:
        assert self.demos is not None
        env_cfg, dc = self.cfg.env, self.dc
        space = gym.make(env_cfg.id, **env_cfg.kwargs).action_space
        result = dagger(
            make_policy(self.demos.trajectories[0].obs.shape[1], space, dc.hidden),
            self.demos,
            experts.scripted_expert(env_cfg.id),
            env_cfg.id,
            env_cfg.horizon,
            dc.dagger_iterations,
            dc.dagger_episodes,
            dc.dagger_beta,
            dc.epochs,
            self.cfg.seed,
            env_cfg.kwargs,
            on_iteration=lambda r: self.log({"phase": "dagger", **r}),
        )
        self.act = result.policy.act

    def learn_procedure_cloning(self) -> None:
        assert self.demos is not None
        pc, accuracy = train_procedure_cloning(
            self.demos, self.dc.hidden // 2, self.dc.pc_steps, seed=self.cfg.seed
        )
        self.log({"phase": "procedure_cloning", "cell_accuracy": accuracy})
        self.act = pc.act
        self.results["bc_act"] = self._maze_bc().act  # the comparison the method is about

    def _adversarial(self, algorithm) -> None:
        assert self.demos is not None
        result = algorithm(
            self.demos,
            self.cfg.env,
            self.cfg.policy,
            self.cfg.env_steps,
            self.cfg.seed,
            self.dc.hidden,
            disc_steps=self.dc.disc_steps,
            on_log=lambda r: self.log({"phase": self.method, **r}),
        )
        self.act = result.policy.act_fn(deterministic=True)

    def learn_gail(self) -> None:
        self._adversarial(gail)

    def learn_airl(self) -> None:
        self._adversarial(airl)

    def learn_maxent_irl(self) -> None:
        assert self.demos is not None
        world = self._world()
        result = maxent_irl(world, self.demos, self.dc.irl_iterations)
        rewards = candidate_rewards(world, self.demos, result.state_reward, self.cfg.seed)
        self.results["theta"] = result.theta.tolist()
        self.results["identifiability"] = identifiability(world, self.demos, rewards)

    def learn_cirl(self) -> None:
        game = (
            cirl_games.coffee_game()
            if self.dc.cirl_game == "coffee"
            else cirl_games.teaching_game()
        )
        sol = cirl_games.solve_cirl(game)
        pedagogic, expert = cirl_games.cirl_human(sol), cirl_games.expert_human(game)
        rows: list[tuple[str, str, cirl_games.Human, cirl_games.Robot]] = [
            ("pedagogic", "cirl", pedagogic, sol.robot)
        ]
        for name, human in (("pedagogic", pedagogic), ("expert", expert)):
            rows.append((name, "best_response", human, cirl_games.best_response_robot(game, human)))
            rows.append((name, "irl_then_act", human, cirl_games.irl_then_act_robot(game, human)))
        self.results["cirl"] = [
            {"human": h, "robot": r, "per_step": cirl_games.evaluate(game, hu, ro).tolist()}
            for h, r, hu, ro in rows
        ]
        self.results["cirl_value"] = float(sol.value)

    # -- 3. evaluation ----------------------------------------------------------------------
    def evaluate(self) -> None:
        if self.act is None:
            return  # IRL on the gridworld and CIRL are evaluated exactly in `learn`
        env_cfg, n = self.cfg.env, self.cfg.eval_episodes
        expert = experts.scripted_expert(env_cfg.id) if not self.dc.file else None
        returns = {
            "expert": evaluate_true_return(env_cfg, n, expert) if expert else self._demo_return(),
            "learner": evaluate_true_return(env_cfg, n, self.act),
            "random": evaluate_true_return(env_cfg, n, None),
        }
        bc_act = self.results.pop("bc_act", None)
        if bc_act is not None:
            returns["bc"] = evaluate_true_return(env_cfg, n, bc_act)
        self.results["true_return"] = returns
        if env_cfg.id == "rlhflab/Maze-v0":
            held_out = env_cfg.model_copy(
                update={"kwargs": {**env_cfg.kwargs, "layouts": list(HELD_OUT_LAYOUTS)}}
            )
            self.results["held_out_return"] = self._held_out(held_out, n, bc_act)

    def _held_out(self, env_cfg: EnvConfig, n: int, bc_act) -> dict:
        out = {
            "expert": evaluate_true_return(env_cfg, n, experts.maze_expert),
            "learner": evaluate_true_return(env_cfg, n, self.act),
            "random": evaluate_true_return(env_cfg, n, None),
        }
        if bc_act is not None:
            out["bc"] = evaluate_true_return(env_cfg, n, bc_act)
        return out

    def _demo_return(self) -> float:
        assert self.demos is not None
        return float(np.nanmean(self.demos.returns()))

    # -- 4. summary -------------------------------------------------------------------------
    def write_summary(self) -> dict:
        summary = {
            "task": self.cfg.task,
            "env": self.cfg.env.id,
            "method": self.method,
            "seed": self.cfg.seed,
            "demonstrations": 0 if self.demos is None else len(self.demos),
            "demonstration_steps": 0 if self.demos is None else self.demos.steps,
            **self.results,
            "wall_seconds": round(time.time() - self.started, 2),
        }
        tr = self.results.get("true_return")
        if tr and abs(tr["expert"] - tr["random"]) > 1e-9:
            summary["normalised_score"] = (tr["learner"] - tr["random"]) / (
                tr["expert"] - tr["random"]
            )
        self.run_dir.write_summary(summary)
        return summary
