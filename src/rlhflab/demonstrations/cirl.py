"""Cooperative inverse RL: assistance games (Hadfield-Menell, Dragan, Abbeel & Russell 2016).

A human H and a robot R share one reward R(s, a_H, a_R; θ), but only H knows θ; R starts from a
prior P₀(θ). Both act at every step and see each other's actions. Hadfield-Menell et al.'s
Theorem 1 reduces the game to a POMDP solved by a *coordinator* who knows only the public
belief b(θ): at each (s, t, b) it picks a decision rule δ: θ → a_H for the human and an action
a_R for the robot,
    V(s, t, b) = max_{δ, a_R}  Σ_θ b(θ)·R(s, δ(θ), a_R; θ)  +  Σ_{a_H} P(a_H | b, δ)·V(s', t+1, b'),
    b'(θ) ∝ b(θ)·[δ(θ) = a_H],   s' = T(s, a_H, a_R).
`solve_cirl` computes V exactly, by enumerating the |A_H|^|Θ| deterministic decision rules on the
finitely many beliefs they reach. The optimal robot acts to learn and defers to the human when
it is uncertain; the optimal human is *pedagogic* — it acts to teach, not as it would alone.

Three robots and two humans are compared by exact expected return (`evaluate`):
  robots  cirl (the coordinator's), best response (the POMDP for a fixed human model), and
          IRL-then-act (the MAP θ̂ of the current belief, then optimal as if θ̂ were certain);
  humans  pedagogic (the coordinator's), and the optimal demonstrator ("expert": it acts
          optimally for θ as if the robot already knew θ).
Two games, each solvable by hand (see `docs/demonstrations.md` and the tests):
  `coffee_game`   act now on the prior, or wait a step and let the human say what they want;
  `teaching_game` the human's best action says nothing about θ; a slightly worse one does.
Departure: deterministic transitions and decision rules only (enough for these games).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

Human = Callable[[int, int, int], np.ndarray]  # (θ index, s, t) → distribution over a_H
Robot = Callable[[int, int, tuple], int]  # (s, t, belief) → a_R


@dataclass(frozen=True)
class AssistanceGame:
    thetas: tuple[str, ...]
    prior: tuple[float, ...]
    human_actions: tuple[str, ...]
    robot_actions: tuple[str, ...]
    transition: np.ndarray  # [S, A_H, A_R] int: the next state
    reward: np.ndarray  # [Θ, S, A_H, A_R]
    horizon: int
    start: int = 0


def _key(b: np.ndarray) -> tuple:
    return tuple(np.round(b, 12))


def _update(b: np.ndarray, likelihood: np.ndarray) -> np.ndarray:
    post = b * likelihood
    return post / post.sum() if post.sum() > 0 else b


@dataclass
class CIRLSolution:
    game: AssistanceGame
    value: float
    plan: dict = field(default_factory=dict)  # (s, t, belief) → (δ, a_R)

    def robot(self, s: int, t: int, belief: tuple) -> int:
        return self.plan[(s, t, _key(np.array(belief)))][1]


def solve_cirl(game: AssistanceGame) -> CIRLSolution:
    """The coordinator's exact solution by recursion over (s, t, belief)."""
    rules = list(itertools.product(range(len(game.human_actions)), repeat=len(game.thetas)))
    sol = CIRLSolution(game, 0.0)
    memo: dict = {}

    def V(s: int, t: int, b: np.ndarray) -> float:
        if t == game.horizon:
            return 0.0
        key = (s, t, _key(b))
        if key in memo:
            return memo[key]
        best, arg = -np.inf, None
        for delta in rules:
            for a_r in range(len(game.robot_actions)):
                q = sum(b[i] * game.reward[i, s, d, a_r] for i, d in enumerate(delta))
                for a_h in set(delta):
                    seen = np.array([d == a_h for d in delta], float)
                    p = float(b @ seen)
                    if p > 0:
                        q += p * V(int(game.transition[s, a_h, a_r]), t + 1, _update(b, seen))
                if q > best + 1e-12:
                    best, arg = q, (delta, a_r)
        memo[key], sol.plan[key] = best, arg
        return best

    sol.value = V(game.start, 0, np.array(game.prior, float))
    return sol


def cirl_human(sol: CIRLSolution) -> Human:
    """The pedagogic human: the coordinator's decision rules, as (θ, s, t) → a_H.

    Read along the optimal play; refused if two beliefs at one (s, t) want different rules."""
    rules: dict = {}
    game = sol.game

    def walk(s: int, t: int, b: np.ndarray) -> None:
        if t == game.horizon:
            return
        delta, a_r = sol.plan[(s, t, _key(b))]
        rule = rules.setdefault((s, t), {})
        for i in np.flatnonzero(b > 0):  # a θ the belief rules out needs no rule
            if rule.setdefault(int(i), delta[i]) != delta[i]:
                raise ValueError(f"the pedagogic human's rule at state {s}, step {t} varies")
        for a_h in set(delta):
            seen = np.array([d == a_h for d in delta], float)
            if b @ seen > 0:
                walk(int(game.transition[s, a_h, a_r]), t + 1, _update(b, seen))

    walk(game.start, 0, np.array(game.prior, float))
    n = len(game.human_actions)
    return lambda i, s, t: np.eye(n)[rules.get((s, t), {}).get(i, 0)]


def _full_information_q(game: AssistanceGame, i: int, human: Human | None) -> Callable:
    """Q_θ(s, t, a_H, a_R) with θ = thetas[i] known to both; `human` fixes a_H if given."""
    memo: dict = {}

    def V(s: int, t: int) -> float:
        if t == game.horizon:
            return 0.0
        if (s, t) not in memo:
            memo[(s, t)] = max(Q(s, t, a_r) for a_r in range(len(game.robot_actions)))
        return memo[(s, t)]

    def joint(s: int, t: int, a_h: int, a_r: int) -> float:
        return game.reward[i, s, a_h, a_r] + V(int(game.transition[s, a_h, a_r]), t + 1)

    def Q(s: int, t: int, a_r: int) -> float:
        if human is None:
            return max(joint(s, t, a_h, a_r) for a_h in range(len(game.human_actions)))
        pi = human(i, s, t)
        return sum(p * joint(s, t, a_h, a_r) for a_h, p in enumerate(pi) if p > 0)

    return joint if human is None else Q


def expert_human(game: AssistanceGame) -> Human:
    """The optimal demonstrator: the a_H of the best joint action as if R knew θ (ties: first)."""
    n = len(game.human_actions)
    joints = [_full_information_q(game, i, None) for i in range(len(game.thetas))]

    def act(i: int, s: int, t: int) -> np.ndarray:
        q = [
            max(joints[i](s, t, a_h, a_r) for a_r in range(len(game.robot_actions)))
            for a_h in range(n)
        ]
        return np.eye(n)[int(np.argmax(q))]

    return act


def best_response_robot(game: AssistanceGame, human: Human) -> Robot:
    """The robot of the POMDP in which the human follows `human` and θ is hidden."""
    memo: dict = {}

    def value(s: int, t: int, b: np.ndarray) -> tuple[float, int]:
        if t == game.horizon:
            return 0.0, 0
        key = (s, t, _key(b))
        if key not in memo:
            qs = [
                _robot_q(game, human, s, t, b, a_r, value) for a_r in range(len(game.robot_actions))
            ]
            memo[key] = (max(qs), int(np.argmax(qs)))
        return memo[key]

    return lambda s, t, belief: value(s, t, np.array(belief, float))[1]


def _robot_q(game, human, s, t, b, a_r, value) -> float:
    q = 0.0
    for i, p_theta in enumerate(b):
        for a_h, p in enumerate(human(i, s, t)):
            if p_theta * p > 0:
                seen = np.array([human(j, s, t)[a_h] for j in range(len(b))])
                nxt = int(game.transition[s, a_h, a_r])
                q += (
                    p_theta
                    * p
                    * (game.reward[i, s, a_h, a_r] + value(nxt, t + 1, _update(b, seen))[0])
                )
    return q


def irl_then_act_robot(game: AssistanceGame, human: Human) -> Robot:
    """Estimate θ̂ = argmax b(θ) (IRL on what the human did so far), then act as if θ̂ were sure."""
    qs = [_full_information_q(game, i, human) for i in range(len(game.thetas))]

    def act(s: int, t: int, belief: tuple) -> int:
        i = int(np.argmax(belief))
        return int(np.argmax([qs[i](s, t, a_r) for a_r in range(len(game.robot_actions))]))

    return act


def evaluate(game: AssistanceGame, human: Human, robot: Robot) -> np.ndarray:
    """[T] exact expected reward at each step when the true θ ~ prior; the robot updates its
    belief by Bayes' rule with `human` as its model of the human."""
    per_step = np.zeros(game.horizon)

    def walk(i: int, s: int, t: int, b: np.ndarray, weight: float) -> None:
        if t == game.horizon or weight == 0:
            return
        a_r = robot(s, t, _key(b))
        for a_h, p in enumerate(human(i, s, t)):
            if p > 0:
                per_step[t] += weight * p * game.reward[i, s, a_h, a_r]
                seen = np.array([human(j, s, t)[a_h] for j in range(len(b))])
                walk(i, int(game.transition[s, a_h, a_r]), t + 1, _update(b, seen), weight * p)

    for i, p in enumerate(game.prior):
        walk(i, game.start, 0, np.array(game.prior, float), p)
    return per_step


def coffee_game(
    p_coffee: float = 0.6, delay: float = 0.9, speak_cost: float = 0.01
) -> AssistanceGame:
    """θ ∈ {coffee, tea}. States: 0 nothing made yet, 1 a drink made, 2 nothing made and one step
    late (the robot waited). The robot may make coffee, make tea or wait; the human may stay
    silent or say what they want (cost `speak_cost`). The right drink is worth 1 made at once
    and `delay` made late; the wrong one 0. By hand: acting on the prior earns p_coffee = 0.6;
    waiting while the human signals earns delay minus the signal's cost — the cheapest signal
    is silence for coffee and speech for tea: 0.9 − 0.4·0.01 = 0.896."""
    H, R = ("silent", "say tea", "say coffee"), ("make coffee", "make tea", "wait")
    T = np.ones((3, 3, 3), np.int64)
    T[0, :, 2] = 2  # waiting
    reward = np.zeros((2, 3, 3, 3))
    reward[:, :, 1:, :] -= speak_cost
    for i in range(2):  # the drink θ = i is robot action i
        reward[i, 0, :, i] += 1.0
        reward[i, 2, :, i] += delay
    return AssistanceGame(("coffee", "tea"), (p_coffee, 1 - p_coffee), H, R, T, reward, 2)


def teaching_game(best: float = 1.0, teaching: float = 0.8) -> AssistanceGame:
    """θ ∈ {A, B}, equally likely. Step 0: the human acts (a1 worth `best` under both θ; a2 worth
    `teaching` under A and 0 under B; a3 the reverse). Step 1: the robot picks rA or rB, worth 1
    when it matches θ. By hand: the expert plays a1 under both θ, which tells nothing, and the
    robot earns 0.5 — joint 1.5; the pedagogic human need only mark one θ: a1 under A and a3
    under B (0.5·1 + 0.5·0.8), after which the robot earns 1 — joint 1.9."""
    H, R = ("a1", "a2", "a3", "wait"), ("rA", "rB", "wait")
    T = np.ones((2, 4, 3), np.int64)
    reward = np.full((2, 2, 4, 3), -1.0)  # waiting is free only where it is the protocol
    for i in range(2):
        reward[i, 0, :3, 2] = [best, teaching if i == 0 else 0.0, teaching if i == 1 else 0.0]
        reward[i, 1, 3, :2] = [1.0 if i == 0 else 0.0, 1.0 if i == 1 else 0.0]
    return AssistanceGame(("A", "B"), (0.5, 0.5), H, R, T, reward, 2)
