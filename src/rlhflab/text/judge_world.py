"""The built-in judge's world: judge-format examples for the reviews task, so a tiny GPT-2 can
act as an AI judge offline (issue 13, §6).

A real RLAIF judge knows from pretraining what "more positive" or "more fluent" means. The
tiny built-in model knows nothing, so it learns from examples in the judge format
(`rlhflab.text.judge.TEMPLATE`) whose answers follow each built-in principle's own rule:

    positive  → the sentiment term of the gold reward (tanh(0.75·(#pos − #neg)))
    fluent    → the fluency term (grammar, repeats, length, final ".")
    harmless  → minus the number of insults at people (reviews-insults' gold detector)

Neither principle is the gold reward: a judge that follows one principle per query agrees with
gold only partly, as a real judge with a real constitution does. Responses are grammar samples
and degraded ones (repeated words, piles of adjectives, missing full stop, run-on clauses),
the failure modes of a policy over-optimised on this task. Pairs whose rule values differ by
less than `min_gap` are left out (no right answer).
"""

from __future__ import annotations

import re

import numpy as np

from rlhflab.text.constitution import DEFAULT_PRINCIPLES
from rlhflab.text.judge import CHOICES, TEMPLATE, JudgeError, render
from rlhflab.text.task import ADVERBS, POSITIVE, ReviewsTask, fluency, insult_spans, sentiment

RULES = {
    "positive": sentiment,
    "fluent": fluency,
    "harmless": lambda words: -len(insult_spans(words)),  # reviews-insults: fewer insults
}
WORD = re.compile(r"\w+|[^\w\s]+")  # the judge tokenizer's pre-tokenizer (tokenizers' Whitespace)


def judge_vocabulary(task: ReviewsTask, template: str = TEMPLATE) -> list[str]:
    """Every word of the task, the template and the built-in principles."""
    texts = [template, *CHOICES, *(p.text for p in DEFAULT_PRINCIPLES)]
    return sorted(set(task.vocabulary) | {w for t in texts for w in WORD.findall(t)})


def build_judge_tokenizer(task: ReviewsTask, template: str = TEMPLATE):
    """A word-level tokenizer over `judge_vocabulary` that also splits off punctuation."""
    from tokenizers import pre_tokenizers

    from rlhflab.text.models import build_word_tokenizer

    tok = build_word_tokenizer(judge_vocabulary(task, template))
    tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return tok


def degraded(task: ReviewsTask, rng: np.random.Generator) -> str:
    """A review broken in one or two of the ways an over-optimised policy breaks it."""
    words = task.response(rng).split()
    for _ in range(1 + int(rng.uniform() < 0.4)):
        kind = rng.integers(5)
        if kind == 0:  # a word repeated
            i = int(rng.integers(len(words) - 1))
            words[i:i] = [words[i]] * int(rng.integers(1, 4))
        elif kind == 1:  # a pile of intensifiers and praise
            pile = [str(rng.choice(ADVERBS + POSITIVE)) for _ in range(rng.integers(2, 7))]
            words = pile + words[-1:] if rng.uniform() < 0.5 else words[:-1] + pile + ["."]
        elif kind == 2 and words[-1] == ".":  # no full stop
            words = words[:-1]
        elif kind == 3:  # a run-on review
            words = [*words[:-1], "and", *task.response(rng).split()]
        else:  # two words swapped
            i, j = rng.integers(len(words), size=2)
            words[i], words[j] = words[j], words[i]
    return " ".join(words[:30])


def judge_examples(
    task: ReviewsTask,
    n: int,
    seed: int,
    min_gap: float = 0.05,
    easy: bool = False,
    template: str = TEMPLATE,
) -> list[tuple[str, str]]:
    """n (judge prompt, answer) pairs over the built-in principles, answers balanced A/B.
    `easy`: only the positive principle, on grammar samples (a first lesson: the tiny model
    learns to compare the two responses there, then the rest)."""
    rng = np.random.default_rng(seed)
    prompts = task.prompts(n, seed + 1)
    out: list[tuple[str, str]] = []
    while len(out) < n:
        principle = DEFAULT_PRINCIPLES[0 if easy else int(rng.integers(len(DEFAULT_PRINCIPLES)))]
        x, y = (
            degraded(task, rng) if rng.uniform() < 0.5 and not easy else task.response(rng)
            for _ in range(2)
        )
        rule = RULES[principle.id]
        gap = rule(x.split()) - rule(y.split())
        if abs(gap) < min_gap:
            continue
        text = render(template, principle.text, prompts[len(out)], x, y)
        out.append((text, "A" if gap > 0 else "B"))
    return out


class ScriptedJudge:
    """A simulated AI judge for the built-in task: it reads the principle and the two responses
    back out of the rendered prompt and answers by the principle's rule v (`RULES`):

        logit P_A = scale·(v(first) − v(second)) + bias + noise·ε,   ε ~ N(0, 1)

    with ε fixed per prompt text (a judge at temperature 0 answers the same prompt the same
    way; the two orders of a pair get different ε). An unknown principle is a JudgeError."""

    def __init__(self, template: str, scale: float = 3.0, bias: float = 1.0, noise: float = 1.0):
        import re

        from rlhflab.text.constitution import KNOWN_PRINCIPLES

        pattern = re.escape(template)
        for key in ("principle", "prompt", "first", "second"):
            pattern = pattern.replace(re.escape("{" + key + "}"), f"(?P<{key}>.*?)", 1)
        self.pattern = re.compile(pattern + "$", re.DOTALL)
        self.rules = {p.text: RULES[p.id] for p in KNOWN_PRINCIPLES}
        self.scale, self.bias, self.noise = scale, bias, noise
        self.name = f"scripted(scale={scale}, bias={bias}, noise={noise})"

    def choice_logprobs(self, texts: list[str]) -> list[tuple[float, float]]:
        import zlib

        import numpy as np

        out = []
        for text in texts:
            m = self.pattern.match(text)
            rule = self.rules.get(m.group("principle")) if m else None
            if m is None or rule is None:
                raise JudgeError(f"{self.name} knows only the built-in principles: {text[:80]!r}")
            eps = np.random.default_rng(zlib.crc32(text.encode())).standard_normal()
            x = self.scale * (rule(m["first"].split()) - rule(m["second"].split()))
            x += self.bias + self.noise * eps
            out.append((-float(np.logaddexp(0.0, -x)), -float(np.logaddexp(0.0, x))))
        return out
