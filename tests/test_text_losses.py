"""Language-model losses and per-token reward shaping against hand-computed values."""

import pytest
import torch

from rlhflab.policy.dpo import dpo_loss
from rlhflab.policy.text import per_token_rewards, token_advantages
from rlhflab.reward.losses import ranking_loss
from rlhflab.text.sequences import SeqBatch

PC, PR = (
    torch.tensor([-1.0, -2.0]),
    torch.tensor([-3.0, -1.0]),
)  # policy log π(chosen), log π(rejected)
RC, RR = torch.tensor([-1.5, -2.0]), torch.tensor([-2.5, -1.5])  # reference
# h = (PC − RC) − (PR − RR) = [1.0, −0.5]


def test_dpo_loss():
    # β = 0.5: −log σ(0.5) = 0.474077, −log σ(−0.25) = 0.825939
    assert float(dpo_loss(PC, PR, RC, RR, 0.5)) == pytest.approx(
        (0.474077 + 0.825939) / 2, abs=1e-5
    )


def test_conservative_dpo_loss():
    # ε = 0.1: 0.9·0.474077 + 0.1·0.974077 = 0.524077;  0.9·0.825939 + 0.1·0.575939 = 0.800939
    assert float(dpo_loss(PC, PR, RC, RR, 0.5, label_smoothing=0.1)) == pytest.approx(
        (0.524077 + 0.800939) / 2, abs=1e-5
    )


def test_ipo_loss():
    # (h − 1/(2β))² with β = 0.5: (1 − 1)² = 0, (−0.5 − 1)² = 2.25
    assert float(dpo_loss(PC, PR, RC, RR, 0.5, kind="ipo")) == pytest.approx(1.125)
    with pytest.raises(ValueError):
        dpo_loss(PC, PR, RC, RR, 0.5, kind="kto")


def test_ranking_loss_uses_every_pair_of_a_ranking():
    scores = torch.tensor([[3.0, 1.0, 0.0]])  # best first
    # pairs (3,1), (3,0), (1,0): −log σ(2) = 0.126928, −log σ(3) = 0.048587, −log σ(1) = 0.313262
    assert float(ranking_loss(scores)) == pytest.approx(
        (0.126928 + 0.048587 + 0.313262) / 3, abs=1e-5
    )
    # with a margin of 0.5: −log σ(1.5), −log σ(2.5), −log σ(0.5)
    assert float(ranking_loss(scores, margin=0.5)) == pytest.approx(
        (0.201413 + 0.078889 + 0.474077) / 3, abs=1e-5
    )


def hand_batch() -> SeqBatch:
    # row 0: prompt of 2 tokens, 3 response tokens ending in EOS at t=4, then padding at t=5
    # row 1: prompt of 1 token, 5 response tokens, never ended
    mask = torch.tensor([[0, 0, 1, 1, 1, 0], [0, 1, 1, 1, 1, 1]], dtype=torch.float32)
    att = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]])
    return SeqBatch(torch.zeros(2, 6, dtype=torch.long), att, mask)


def test_kl_penalty_on_every_response_token_and_score_on_the_last():
    batch = hand_batch()
    logp = (
        torch.tensor([[0.0, 0.0, -1.0, -2.0, -0.5, -9.0], [0.0, -1.0, -1.0, -1.0, -1.0, -1.0]])
        * batch.response_mask
    )
    logp_ref = (
        torch.tensor([[0.0, 0.0, -1.5, -1.0, -0.5, -3.0], [0.0, -2.0, -1.0, -0.5, -1.0, -3.0]])
        * batch.response_mask
    )
    rewards, kl = per_token_rewards(
        torch.tensor([2.0, -1.0]), logp, logp_ref, batch, beta=0.1, estimator="k1"
    )
    expected_kl = torch.tensor([[0, 0, 0.5, -1.0, 0.0, 0], [0, 1.0, 0, -0.5, 0, 2.0]])
    assert torch.allclose(kl, expected_kl)
    expected = -0.1 * expected_kl
    expected[0, 4] += 2.0  # the score lands on row 0's EOS token, not on the padding after it
    expected[1, 5] += -1.0  # row 1 never ended: its last generated token
    assert torch.allclose(rewards, expected)
    assert batch.last_response_index.tolist() == [4, 5]


def test_advantages_stop_at_eos_and_are_zero_outside_the_response():
    batch = hand_batch()
    rewards = torch.zeros(2, 6)
    rewards[0, 4], rewards[1, 5] = 1.0, -1.0
    rewards[0, 5] = 100.0  # a reward after EOS must not leak back into the response
    adv, ret = token_advantages(rewards, torch.zeros(2, 6), batch, gamma=1.0, lam=1.0)
    assert ret[0, 2:5].tolist() == [1.0, 1.0, 1.0] and ret[1, 1:].tolist() == [-1.0] * 5
    assert (adv[batch.response_mask == 0] == 0).all()
    assert adv[0, 2] > 0 > adv[1, 1]  # whitened over the 8 response tokens
    assert float((adv * batch.response_mask).sum()) == pytest.approx(0.0, abs=1e-5)


def test_encode_keeps_rows_within_max_length():
    from rlhflab.text.models import build_word_tokenizer
    from rlhflab.text.sequences import encode

    tok = build_word_tokenizer(["a", "b", "c"])
    batch = encode(
        tok, ["a b c a b c"], ["a b c a"], max_length=5
    )  # 4 response tokens + EOS fill it
    assert batch.input_ids.shape[1] == 5 and batch.response_mask.sum() == 5
    batch = encode(tok, ["a b c a b c"], ["a b"], max_length=5)  # the prompt is cut from the left
    assert batch.input_ids.shape[1] == 5 and batch.response_mask.tolist() == [[0, 0, 1, 1, 1]]
