"""The padding-free (packed) forward equals the padded one: log-probs, entropies, value-head
inputs, gradients and reward scores, on right-padded (`encode`) and left-padded (`generate`)
batches."""

import numpy as np
import pytest
import torch

from rlhflab.text.models import TextRewardModel, build_word_tokenizer, tiny_gpt2
from rlhflab.text.packing import Packing, packable
from rlhflab.text.sequences import encode, generate, token_logprobs
from rlhflab.text.task import ReviewsTask

TOL = 1e-5


@pytest.fixture(scope="module")
def setup():
    task = ReviewsTask()
    tok = build_word_tokenizer(task.vocabulary)
    model = tiny_gpt2(len(tok), 2, 32, n_head=2, tokenizer=tok, seed=1)
    rng = np.random.default_rng(0)
    prompts = task.prompts(6, 0)
    # 1 to 4 reviews each: lengths from about 10 to 50 tokens, so most rows are padded
    responses = [" ".join(task.response(rng, None) for _ in range(1 + k % 4)) for k in range(6)]
    return tok, model, encode(tok, prompts, responses, 64), prompts


def test_packing_lays_each_sequence_out_whole_with_its_own_positions(setup):
    _, _, batch, _ = setup
    packing = Packing.of(batch.input_ids, batch.attention_mask)
    lengths = batch.attention_mask.sum(1)
    assert packing.input_ids.shape[1] == int(lengths.max())
    assert len(packing.input_ids) < len(batch)  # short sequences share rows
    flat_ids, flat_pos = packing.input_ids.reshape(-1), packing.position_ids.reshape(-1)
    for b in range(len(batch)):
        where = packing.index[b][batch.attention_mask[b].bool()]
        assert torch.equal(where, where[0] + torch.arange(int(lengths[b])))  # contiguous
        assert torch.equal(flat_ids[where], batch.input_ids[b][batch.attention_mask[b].bool()])
        assert torch.equal(flat_pos[where], torch.arange(int(lengths[b])))
    assert (packing.index[~batch.attention_mask.bool()] == -1).all()
    placed = packing.index[packing.index >= 0]
    assert len(placed.unique()) == len(placed)  # no two tokens in one place
    assert packing.density == pytest.approx(float(lengths.sum()) / packing.input_ids.numel())


def test_packed_logprobs_entropy_hidden_and_gradients_equal_the_padded_forward(setup):
    _, model, batch, _ = setup
    assert packable(model)
    mask = batch.response_mask.bool()
    grads = []
    outs = []
    for pack in (False, True):
        model.zero_grad()
        logp, ent, hidden = token_logprobs(model, batch, 0.7, True, True, pack=pack)
        (logp.sum() + ent.sum() + hidden[mask].sum()).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
        outs.append((logp, ent, hidden[mask]))
    for a, b in zip(*outs):
        assert torch.allclose(a, b, atol=TOL)
    assert (outs[0][0][mask] != 0).all()  # real log-probs, not zeros on both sides
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


def test_packed_logprobs_of_a_left_padded_sample_equal_the_padded_forward(setup):
    tok, model, _, prompts = setup
    sample, _, _ = generate(model, tok, [*prompts, "review of the film"], 20, seed=3)
    assert (sample.attention_mask == 0).any()  # left-padded prompts, right-padded responses
    with torch.no_grad():
        a = token_logprobs(model, sample, pack=False)
        b = token_logprobs(model, sample, pack=True)
    assert torch.allclose(a, b, atol=TOL)


def test_packed_reward_scores_equal_the_padded_forward(setup):
    _, model, batch, _ = setup
    rm = TextRewardModel(model.transformer)
    torch.nn.init.normal_(rm.head.weight, std=0.5)
    with torch.no_grad():
        a = rm(batch.input_ids, batch.attention_mask, pack=False)
        b = rm(batch.input_ids, batch.attention_mask, pack=True)
    assert a.std() > 0
    assert torch.allclose(a, b, atol=TOL)
