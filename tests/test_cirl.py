"""Assistance games solved exactly, against values worked out by hand."""

import numpy as np
import pytest

from rlhflab.demonstrations.cirl import (
    best_response_robot,
    cirl_human,
    coffee_game,
    evaluate,
    expert_human,
    irl_then_act_robot,
    solve_cirl,
    teaching_game,
)


def test_coffee_game_matches_the_hand_solution():
    game = coffee_game(p_coffee=0.6, delay=0.9, speak_cost=0.01)
    sol = solve_cirl(game)
    assert sol.value == pytest.approx(0.9 - 0.4 * 0.01)
    delta, a_r = sol.plan[(0, 0, (0.6, 0.4))]
    assert game.robot_actions[a_r] == "wait"  # it defers, to learn θ
    assert [game.human_actions[d] for d in delta] == ["silent", "say tea"]
    assert game.robot_actions[sol.robot(2, 1, (0.0, 1.0))] == "make tea"


def test_cirl_robot_differs_from_irl_then_act():
    game = coffee_game()
    sol = solve_cirl(game)
    human = cirl_human(sol)
    cirl = evaluate(game, human, sol.robot).sum()
    irl = evaluate(game, human, irl_then_act_robot(game, human))
    assert cirl == pytest.approx(sol.value)
    assert irl.sum() == pytest.approx(0.6 - 0.4 * 0.01)  # makes coffee at once on the prior
    assert irl[1] == 0.0 and cirl > irl.sum() + 0.25


def test_pedagogic_human_beats_the_optimal_demonstrator():
    game = teaching_game(best=1.0, teaching=0.8)
    sol = solve_cirl(game)
    assert sol.value == pytest.approx(1.9)
    pedagogic, expert = cirl_human(sol), expert_human(game)
    assert [int(np.argmax(expert(i, 0, 0))) for i in range(2)] == [0, 0]  # a1 whatever θ
    taught = evaluate(game, pedagogic, best_response_robot(game, pedagogic))
    shown = evaluate(game, expert, best_response_robot(game, expert))
    np.testing.assert_allclose(taught, [0.9, 1.0])  # the robot's step: 1
    np.testing.assert_allclose(shown, [1.0, 0.5])  # the robot's step: a coin flip
