"""Goodhart curves: best-of-n KL and gold against exact enumeration; Gao et al.'s fits; the
command."""

import itertools
import json
import math

import numpy as np
import pytest

from rlhflab.diagnostics.goodhart import (
    best_of_n_estimate,
    best_of_n_weights,
    fit_goodhart,
    goodhart_form,
)
from rlhflab.policy.best_of_n import best_of_n_kl


def exact_best_of_n_kl(p: np.ndarray, n: int) -> float:
    """KL(best-of-n ‖ p) over outcomes ranked by a proxy without ties: q_k = F_k^n − F_{k−1}^n."""
    F = np.concatenate([[0.0], np.cumsum(p)])
    q = F[1:] ** n - F[:-1] ** n
    keep = q > 0
    return float(np.sum(q[keep] * np.log(q[keep] / p[keep])))


@pytest.mark.parametrize("n", [1, 2, 4, 16, 64])
def test_best_of_n_kl_formula_is_the_continuous_limit_of_exact_enumeration(n):
    fine = np.full(20_000, 1 / 20_000)  # many equally likely outcomes: close to a continuous proxy
    assert exact_best_of_n_kl(fine, n) == pytest.approx(best_of_n_kl(n), abs=2e-3)
    coarse = np.random.default_rng(n).dirichlet(
        np.ones(6)
    )  # a small discrete distribution: the formula bounds it
    assert exact_best_of_n_kl(coarse, n) <= best_of_n_kl(n) + 1e-12


def test_estimator_is_the_average_over_all_n_subsets():
    rng = np.random.default_rng(0)
    proxy, gold = rng.permutation(8).astype(float), rng.normal(size=8)
    for n in range(1, 9):
        subsets = [max(s, key=lambda i: proxy[i]) for s in itertools.combinations(range(8), n)]
        assert best_of_n_estimate(proxy, gold, n) == pytest.approx(np.mean(gold[subsets]))
    assert best_of_n_weights(8, 3).sum() == pytest.approx(1.0)


def test_estimator_is_unbiased_over_every_sample_of_a_small_distribution():
    # outcomes (proxy, gold) with probabilities p; exact E[gold of best of n] against E[estimate
    # from N samples]
    proxy, gold, p = (
        np.array([0.0, 1.0, 2.0]),
        np.array([1.0, 3.0, -2.0]),
        np.array([0.5, 0.3, 0.2]),
    )
    N = 4
    for n in (1, 2, 3, 4):
        truth = sum(
            np.prod(p[list(t)]) * gold[max(t, key=lambda k: proxy[k])]
            for t in itertools.product(range(3), repeat=n)
        )
        expected = sum(
            np.prod(p[list(t)]) * best_of_n_estimate(proxy[list(t)], gold[list(t)], n)
            for t in itertools.product(range(3), repeat=N)
        )
        assert expected == pytest.approx(truth)


@pytest.mark.parametrize("kind,alpha,beta", [("best_of_n", 1.2, 0.3), ("rl", 0.8, 0.25)])
def test_fit_recovers_alpha_and_beta_from_noisy_points(kind, alpha, beta):
    rng = np.random.default_rng(1)
    d = (
        np.sqrt([best_of_n_kl(2**k) for k in range(11)])
        if kind == "best_of_n"
        else np.linspace(0.05, 6, 30)
    )
    gain = goodhart_form(d, alpha, beta, kind) + rng.normal(scale=0.02, size=len(d))
    fit = fit_goodhart(d, gain, kind)
    assert fit.alpha == pytest.approx(alpha, rel=0.05) and fit.beta == pytest.approx(beta, rel=0.05)
    assert fit.r2 > 0.98
    grid = np.linspace(1e-3, 20, 200_001)  # the reported peak is where the fitted curve is highest
    assert fit.d_star == pytest.approx(
        grid[np.argmax(goodhart_form(grid, fit.alpha, fit.beta, kind))], abs=1e-3
    )
    assert fit.gold_star == pytest.approx(
        float(goodhart_form(np.array(fit.d_star), fit.alpha, fit.beta, kind))
    )


def test_best_of_n_asks_for_enough_samples():
    with pytest.raises(ValueError, match="n ≤ N"):
        best_of_n_weights(4, 8)
    assert math.isinf(
        fit_goodhart(np.array([0.0, 1.0, 2.0]), np.array([0.0, 1.0, 2.0]), "best_of_n").d_star
    )  # still rising: no peak


def test_goodhart_command_on_a_small_rlhf_run(tmp_path, cli):
    run = tmp_path / "run"
    made = cli(
        "run",
        "--out",
        str(run),
        "env=rlhflab/CoastRunners-v0",
        "horizon=20",
        "env_steps=3000",
        "labels=20",
        "feedback.segment_length=10",
        "env.num_envs=4",
        "policy.n_steps=64",
        "baseline=false",
        "checkpoint_every=3",
    )
    assert made.returncode == 0, made.stderr
    assert sorted(p.name for p in (run / "checkpoints").glob("policy_*.pt"))[0] == "policy_0000.pt"
    out = cli("goodhart", str(run), "--samples", "32", "--episodes", "4")
    assert out.returncode == 0, out.stderr
    assert "best_of_n" in out.stdout and "rl" in out.stdout
    result = json.loads((run / "goodhart" / "goodhart.json").read_text())
    bon = [p for p in result["points"] if p["kind"] == "best_of_n"]
    assert [p["label"] for p in bon] == [f"n={2**k}" for k in range(6)]  # up to n = 32 = N
    assert [p["kl"] for p in bon] == pytest.approx([best_of_n_kl(2**k) for k in range(6)])
    assert (run / "goodhart" / "goodhart.png").stat().st_size > 10_000
    assert "| best_of_n |" in (run / "goodhart" / "goodhart.md").read_text()
    missing = cli("goodhart", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "not a run directory" in missing.stderr
    bad = cli("goodhart", str(run), "--samples", "0")
    assert bad.returncode == 2 and "--samples" in bad.stderr
