import math

import pytest

from rlhflab.diagnostics.diversity import bleu, distinct_n, self_bleu, token_entropy


def test_distinct_n_counts_unique_ngrams():
    responses = [["a", "b", "a", "b"], ["a", "b", "c"]]
    assert distinct_n(responses, 1) == pytest.approx(3 / 7)  # a, b, c among 7 tokens
    assert distinct_n(responses, 2) == pytest.approx(3 / 5)  # ab, ba, bc among ab ba ab ab bc


def test_token_entropy_of_a_uniform_vocabulary_is_log_k():
    assert token_entropy([["a", "b"], ["c", "d"]]) == pytest.approx(math.log(4))
    assert token_entropy([["a", "a", "a"]]) == 0.0


def test_self_bleu_is_one_for_collapsed_responses_and_low_for_varied_ones():
    same = [["the", "cat", "sat", "on", "the", "mat"]] * 4
    assert self_bleu(same) == pytest.approx(1.0)
    varied = [
        ["the", "cat", "sat", "on", "the", "mat"],
        ["dogs", "run", "fast", "in", "green", "parks"],
        ["a", "bird", "sings", "at", "dawn", "today"],
    ]
    assert self_bleu(varied) < 0.2
    assert bleu(["x"], []) == 0.0
