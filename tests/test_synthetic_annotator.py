import math

import numpy as np
import pytest

from rlhflab.config import AnnotatorConfig
from rlhflab.feedback.synthetic import SyntheticAnnotator
from rlhflab.types import Judgement, Segment


def seg(rewards):
    r = np.asarray(rewards, dtype=np.float32)
    return Segment(
        obs=np.zeros((len(r), 2), np.float32), actions=np.zeros(len(r), np.int64), judged_rewards=r
    )


@pytest.mark.parametrize("temperature,error_rate", [(1.0, 0.0), (2.0, 0.1), (0.5, 0.3)])
def test_label_frequencies_match_the_boltzmann_probability(temperature, error_rate):
    left, right = seg([1.0, 0.5, 0.5]), seg([0.5, 0.5, 0.0])  # returns 2.0 vs 1.0
    ann = SyntheticAnnotator(
        AnnotatorConfig(temperature=temperature, error_rate=error_rate), seed=0
    )
    n = 20_000
    lefts = sum(ann.judge(left, right) is Judgement.LEFT for _ in range(n))
    p = error_rate / 2 + (1 - error_rate) / (1 + math.exp(-(2.0 - 1.0) / temperature))
    # binomial test at ~4.5 standard deviations: fails only if the frequencies are wrong
    assert abs(lefts / n - p) < 4.5 * math.sqrt(p * (1 - p) / n)


def test_rational_annotator_and_ties():
    ann = SyntheticAnnotator(
        AnnotatorConfig(temperature=0.0, error_rate=0.0, tie_threshold=0.25), seed=0
    )
    assert ann.judge(seg([1, 1]), seg([1, 0])) is Judgement.LEFT
    assert ann.judge(seg([0, 0]), seg([1, 0])) is Judgement.RIGHT
    assert ann.judge(seg([1, 0.1]), seg([1, 0])) is Judgement.EQUAL


def test_myopic_discount_weights_late_steps_more():
    ann = SyntheticAnnotator(AnnotatorConfig(temperature=0.0, error_rate=0.0, discount=0.5), seed=0)
    assert ann.value(seg([1.0, 0.0, 0.0])) == pytest.approx(0.25)
    assert ann.value(seg([0.0, 0.0, 1.0])) == pytest.approx(1.0)
    # early reward loses to a smaller late one for a myopic annotator
    assert ann.judge(seg([2.0, 0.0, 0.0]), seg([0.0, 0.0, 1.0])) is Judgement.RIGHT


def test_cant_tell_when_both_segments_are_bad():
    ann = SyntheticAnnotator(
        AnnotatorConfig(temperature=0.0, error_rate=0.0, cant_tell_below=0.5), seed=0
    )
    assert ann.judge(seg([0.1]), seg([0.2])) is Judgement.CANT_TELL
    assert ann.judge(seg([1.0]), seg([0.2])) is Judgement.LEFT


def test_error_rate_one_answers_uniformly_at_random():
    ann = SyntheticAnnotator(AnnotatorConfig(temperature=0.0, error_rate=1.0), seed=1)
    answers = [ann.judge(seg([10.0]), seg([0.0])) for _ in range(4000)]
    assert set(answers) == {Judgement.LEFT, Judgement.RIGHT}
    assert abs(answers.count(Judgement.LEFT) / 4000 - 0.5) < 0.04
