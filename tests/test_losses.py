import math

import pytest
import torch

from rlhflab.reward.losses import bradley_terry_loss, preference_probability


def test_bradley_terry_without_noise_is_logistic_cross_entropy():
    left, right = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 0.0])
    target = torch.tensor([1.0, 0.0])
    # pair 1: P = σ(1) = 0.731059; loss = −log 0.731059 = 0.313262
    # pair 2: P = σ(0) = 0.5; target 0 → −log 0.5 = 0.693147
    losses = bradley_terry_loss(left, right, target, 0.0, reduction="none")
    assert losses.tolist() == pytest.approx([0.3132617, 0.6931472], abs=1e-6)


def test_bradley_terry_with_error_term_and_ties():
    eps = 0.1
    left, right = torch.tensor([3.0, 1.0, -2.0]), torch.tensor([1.0, 1.0, 0.0])
    target = torch.tensor([1.0, 0.5, 0.0])  # left better, equal, right better
    p = [(1 - eps) / (1 + math.exp(-d)) + eps / 2 for d in (2.0, 0.0, -2.0)]
    expected = [
        -math.log(p[0]),
        -(0.5 * math.log(p[1]) + 0.5 * math.log(1 - p[1])),
        -math.log(1 - p[2]),
    ]
    # by hand: p₀ = 0.9·0.880797 + 0.05 = 0.842717 → 0.171124; p₁ = ½ → 0.693147; p₂ = 0.157283 →
    # 0.171124
    assert expected == pytest.approx([0.171124, 0.693147, 0.171124], abs=1e-5)
    assert bradley_terry_loss(left, right, target, eps, reduction="none").tolist() == pytest.approx(
        expected, abs=1e-6
    )
    assert float(bradley_terry_loss(left, right, target, eps)) == pytest.approx(
        sum(expected) / 3, abs=1e-6
    )


def test_error_term_bounds_the_loss_of_a_confident_mistake():
    # with ε the model can never be more than 1 − ε/2 sure, so a wrong label costs at most −log(ε/2)
    loss = bradley_terry_loss(torch.tensor([100.0]), torch.tensor([0.0]), torch.tensor([0.0]), 0.1)
    assert float(loss) == pytest.approx(-math.log(0.05), rel=1e-5)
    assert float(
        preference_probability(torch.tensor([100.0]), torch.tensor([0.0]), 0.1)
    ) == pytest.approx(0.95)


def test_gradient_is_finite_for_extreme_returns():
    left = torch.tensor([1e4], requires_grad=True)
    loss = bradley_terry_loss(left, torch.tensor([-1e4]), torch.tensor([0.0]), 0.1)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(left.grad).all()
