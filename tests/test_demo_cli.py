"""`rlhflab run method=…`: a demonstrations run end to end, and a bad file refused."""

import json

import numpy as np

from rlhflab.cli import main
from rlhflab.demonstrations.dataset import save
from rlhflab.demonstrations.experts import cartpole_expert, record


def test_bc_run_writes_demonstrations_summary_and_report(tmp_path):
    out = tmp_path / "run"
    code = main([
        "run", "method=bc", "env=CartPole-v1", "horizon=100", "eval_episodes=4",
        "demonstrations.episodes=3", "--out", str(out),
    ])  # fmt: skip
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    returns = summary["true_return"]
    assert (
        set(returns) == {"expert", "learner", "random"} and returns["learner"] > returns["random"]
    )
    assert (out / "demonstrations" / "expert.npz").exists()
    assert "Expert, learner and random" in (out / "report.md").read_text()


def test_cirl_run(tmp_path):
    assert main(["run", "method=cirl", "--out", str(tmp_path / "c")]) == 0
    summary = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert abs(summary["cirl_value"] - 0.896) < 1e-9


def test_file_that_does_not_fit_the_env_is_refused(tmp_path, capsys):
    demos = record("CartPole-v1", 20, 2, cartpole_expert)
    path = save(demos, tmp_path / "cartpole.npz")
    code = main([
        "run", "method=bc", "env=Pendulum-v1", f"demonstrations.file={path}",
        "--out", str(tmp_path / "r"),
    ])  # fmt: skip
    assert code == 2
    assert "cartpole.npz: episode 0: field 'obs'" in capsys.readouterr().err
    assert not (tmp_path / "r" / "demonstrations").exists()
    assert np.load(path)["obs"].shape[1] == 4
