"""Learning from demonstrations, measured: prints the tables recorded in docs/demonstrations.md.

    PYTHONPATH=src OMP_NUM_THREADS=1 python bench/demonstrations.py [--seeds 3] [--quick]

Scores are normalised per task: random 0, expert 1. Every number is a mean over seeds 0..n−1.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from rlhflab.config import EnvConfig, PolicyConfig
from rlhflab.demonstrations import cirl
from rlhflab.demonstrations.airl import airl
from rlhflab.demonstrations.bc import ClonedPolicy, behavioural_cloning, fit, make_policy
from rlhflab.demonstrations.dagger import dagger
from rlhflab.demonstrations.experts import (
    cartpole_expert,
    pendulum_expert,
    record,
    record_maze,
)
from rlhflab.demonstrations.gail import gail
from rlhflab.demonstrations.maxent_irl import maxent_irl, sample_demonstrations
from rlhflab.demonstrations.procedure_cloning import MazeActionNet, train_procedure_cloning
from rlhflab.diagnostics.identifiability import candidate_rewards, identifiability
from rlhflab.envs.gridworld import feature_gridworld
from rlhflab.envs.maze import HELD_OUT_LAYOUTS
from rlhflab.policy.control import ControlPolicy
from rlhflab.policy.rollout import evaluate_true_return

console = Console()
CARTPOLE = gym.spaces.Discrete(2)


def cartpole(h: int) -> EnvConfig:
    return EnvConfig(id="CartPole-v1", horizon=h)


def mean_sd(xs) -> str:
    return f"{np.mean(xs):.2f} ± {np.std(xs):.2f}"


def table(title: str, headers: list[str], rows: list[list]) -> None:
    t = Table(title=title)
    for h in headers:
        t.add_column(h)
    for r in rows:
        t.add_row(*(str(v) for v in r))
    console.print(t)


def bc_compounding(seeds: list[int], episodes: int) -> None:
    """Return / horizon of BC vs the number of 50-step demonstrations and the test horizon."""
    horizons, rows = (50, 200, 1000), []
    for n in (1, 2, 5, 10):
        per_h: dict[int, list] = {h: [] for h in horizons}
        for seed in seeds:
            demos = record("CartPole-v1", 50, n, cartpole_expert, seed=100 * seed)
            policy = behavioural_cloning(demos, CARTPOLE, seed=seed).policy
            for h in horizons:
                per_h[h].append(evaluate_true_return(cartpole(h), episodes, policy.act) / h)
        rows.append([n, *(mean_sd(per_h[h]) for h in horizons)])
    table(
        "BC on CartPole: share of the horizon survived (expert = 1.00), demos of 50 steps",
        ["demonstrations", *(f"horizon {h}" for h in horizons)],
        rows,
    )


def dagger_gap(seeds: list[int], episodes: int) -> None:
    long = cartpole(1000)
    rows: dict[int, list] = {i: [] for i in range(5)}
    sizes: dict[int, list] = {i: [] for i in range(5)}
    for seed in seeds:
        demos = record("CartPole-v1", 50, 2, cartpole_expert, seed=100 * seed)
        for iters in range(5):
            if iters == 0:
                policy = behavioural_cloning(demos, CARTPOLE, seed=seed).policy
                size = demos.steps
            else:
                res = dagger(
                    make_policy(4, CARTPOLE), demos, cartpole_expert, "CartPole-v1", 1000,
                    iterations=iters, episodes=2, seed=seed,
                )  # fmt: skip
                policy, size = res.policy, len(res.obs)
            rows[iters].append(evaluate_true_return(long, episodes, policy.act) / 1000)
            sizes[iters].append(size)
    table(
        "DAgger from two 50-step demonstrations, tested over 1000 steps (expert = 1.00)",
        ["DAgger iterations (0 = BC)", "dataset size", "share of horizon survived"],
        [[i, int(np.mean(sizes[i])), mean_sd(rows[i])] for i in rows],
    )


def pc_vs_bc(seeds: list[int], episodes: int, steps: int) -> None:
    rows = []
    for n_layouts in (5, 10, 50):
        res: dict[str, list] = {k: [] for k in ("pc_train", "pc_test", "bc_train", "bc_test")}
        rnd = []
        for seed in seeds:
            demos = record_maze(
                48, 5 * n_layouts, seed=1000 * seed, kwargs={"layouts": [0, n_layouts]}
            )
            pc, _ = train_procedure_cloning(demos, steps=steps, seed=seed)
            obs, acts, _ = demos.transitions()
            bc = ClonedPolicy(MazeActionNet(8), gym.spaces.Discrete(4), obs.shape[1])
            fit(bc, obs, acts, epochs=100, seed=seed, normalize=False)
            for split, layouts in (("train", [0, n_layouts]), ("test", list(HELD_OUT_LAYOUTS))):
                env = EnvConfig(
                    id="rlhflab/Maze-v0", horizon=48, num_envs=1, kwargs={"layouts": layouts}
                )
                res[f"pc_{split}"].append(evaluate_true_return(env, episodes, pc.act, seed=seed))
                res[f"bc_{split}"].append(evaluate_true_return(env, episodes, bc.act, seed=seed))
            rnd.append(evaluate_true_return(env, episodes, None, seed=seed))
        rows.append([n_layouts, 5 * n_layouts, *(mean_sd(res[k]) for k in res), mean_sd(rnd)])
    table(
        "Procedure cloning vs BC on 8×8 mazes: success rate (expert BFS = 1.00)",
        [
            "train layouts",
            "demos",
            "PC seen",
            "PC held-out",
            "BC seen",
            "BC held-out",
            "random held-out",
        ],
        rows,
    )


def irl(seeds: list[int]) -> None:
    world = feature_gridworld(seed=0)
    rows = []
    for n in (10, 50, 200, 1000):
        epic, ret = [], []
        for seed in seeds:
            demos = sample_demonstrations(world, n, seed=seed + 1)
            learned = maxent_irl(world, demos).state_reward
            row = identifiability(
                world, demos, {"m": candidate_rewards(world, demos, learned)["maxent_irl"]}
            )[0]
            epic.append(row["epic"])
            ret.append(row["normalised"])
        rows.append([n, mean_sd(epic), mean_sd(ret)])
    table(
        "MaxEnt IRL on a 5×5 gridworld: EPIC to the true reward",
        ["demos", "EPIC", "retrained policy (normalised)"],
        rows,
    )
    demos = sample_demonstrations(world, 200, seed=1)
    learned = maxent_irl(world, demos).state_reward
    ident = identifiability(world, demos, candidate_rewards(world, demos, learned))
    table(
        "Rewards that explain the same 200 demonstrations (seed 1)",
        ["reward", "EPIC to true", "demo actions optimal", "retrained policy (normalised)"],
        [
            [r["reward"], f"{r['epic']:.3f}", f"{r['demos_optimal']:.2f}", f"{r['normalised']:.2f}"]
            for r in ident
        ],
    )


def retrain_on(reward_fn, env_cfg: EnvConfig, steps: int, seed: int) -> float:
    policy = ControlPolicy(env_cfg, PolicyConfig(), seed + 7)
    while policy.env_steps < steps:
        rollout = policy.collect()
        policy.update(
            rollout,
            reward_fn(rollout.raw_obs.reshape(-1, rollout.raw_obs.shape[-1])).reshape(
                rollout.true_rewards.shape
            ),
        )
    return policy.evaluate(16)


def adversarial_and_anchors(seeds: list[int], steps: int, episodes: int) -> None:
    env = cartpole(200)
    expert = evaluate_true_return(env, episodes, cartpole_expert)
    rnd = evaluate_true_return(env, episodes, None)
    norm = lambda r: (r - rnd) / (expert - rnd)  # noqa: E731
    scores: dict[str, list] = {
        k: [] for k in ("BC", "DAgger", "GAIL", "AIRL", "AIRL reward → fresh PPO")
    }
    times: dict[str, list] = {k: [] for k in scores}
    for seed in seeds:
        demos = record("CartPole-v1", 200, 10, cartpole_expert, seed=100 * seed)
        t = time.time()
        scores["BC"].append(
            norm(
                evaluate_true_return(
                    env, episodes, behavioural_cloning(demos, CARTPOLE, seed=seed).policy.act
                )
            )
        )
        times["BC"].append(time.time() - t)
        t = time.time()
        dg = dagger(
            make_policy(4, CARTPOLE), demos, cartpole_expert, "CartPole-v1", 200, 3, 2, seed=seed
        )
        scores["DAgger"].append(norm(evaluate_true_return(env, episodes, dg.policy.act)))
        times["DAgger"].append(time.time() - t)
        for name, algo in (("GAIL", gail), ("AIRL", airl)):
            t = time.time()
            res = algo(demos, env, PolicyConfig(), steps, seed=seed)
            scores[name].append(norm(res.policy.evaluate(episodes)))
            times[name].append(time.time() - t)
        t = time.time()
        scores["AIRL reward → fresh PPO"].append(
            norm(retrain_on(res.discriminator.learned_reward, env, steps, seed))
        )
        times["AIRL reward → fresh PPO"].append(time.time() - t)
    anchors = {"BC": 0.93, "DAgger": 1.00, "GAIL": 0.94, "AIRL": 0.79}
    table(
        f"CartPole (horizon 200; 10 expert demos; GAIL/AIRL {steps} env steps): normalised score",
        ["algorithm", "score (random 0, expert 1)", "imitation library anchor", "wall s / seed"],
        [
            [k, mean_sd(v), anchors.get(k, "—"), f"{np.mean(times[k]):.1f}"]
            for k, v in scores.items()
        ],
    )


def pendulum(seeds: list[int], episodes: int) -> None:
    env = EnvConfig(id="Pendulum-v1", horizon=200)
    expert, rnd = (
        evaluate_true_return(env, episodes, pendulum_expert),
        evaluate_true_return(env, episodes, None),
    )
    rows = []
    for n in (5, 20):
        s = []
        for seed in seeds:
            demos = record("Pendulum-v1", 200, n, pendulum_expert, seed=100 * seed)
            pol = behavioural_cloning(
                demos, gym.spaces.Box(-2, 2, (1,)), epochs=100, seed=seed
            ).policy
            s.append((evaluate_true_return(env, episodes, pol.act) - rnd) / (expert - rnd))
        rows.append([n, mean_sd(s)])
    table(
        f"BC on Pendulum (continuous; expert {expert:.0f}, random {rnd:.0f})",
        ["demos", "normalised score"],
        rows,
    )


def assistance_games() -> None:
    rows = []
    for name, game in (("coffee", cirl.coffee_game()), ("teaching", cirl.teaching_game())):
        sol = cirl.solve_cirl(game)
        ped, exp = cirl.cirl_human(sol), cirl.expert_human(game)
        for hn, h, rn, r in (
            ("pedagogic", ped, "CIRL", sol.robot),
            ("pedagogic", ped, "IRL-then-act", cirl.irl_then_act_robot(game, ped)),
            ("expert", exp, "best response", cirl.best_response_robot(game, exp)),
            ("expert", exp, "IRL-then-act", cirl.irl_then_act_robot(game, exp)),
        ):
            per = cirl.evaluate(game, h, r)
            rows.append([name, hn, rn, *(f"{v:.3f}" for v in per), f"{per.sum():.3f}"])
    table(
        "Assistance games, exact expected reward",
        ["game", "human", "robot", "step 0", "step 1", "return"],
        rows,
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="smaller budgets, for a smoke test")
    args = p.parse_args()
    torch.set_num_threads(1)
    seeds = list(range(args.seeds))
    episodes, steps = (8, 20_000) if args.quick else (16, 50_000)
    started = time.time()
    for name, step in (
        ("bc", lambda: bc_compounding(seeds, episodes)),
        ("dagger", lambda: dagger_gap(seeds, episodes)),
        ("pc", lambda: pc_vs_bc(seeds, 50 if not args.quick else 20, 1500)),
        ("irl", lambda: irl(seeds)),
        ("pendulum", lambda: pendulum(seeds, episodes)),
        ("adversarial", lambda: adversarial_and_anchors(seeds, steps, episodes)),
        ("cirl", assistance_games),
    ):
        t = time.time()
        step()
        console.print(f"[dim]{name}: {time.time() - t:.0f} s[/]")
    console.print(f"seeds {seeds} · wall time {time.time() - started:.0f} s · torch threads 1")


if __name__ == "__main__":
    main()
