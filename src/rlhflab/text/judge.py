"""AI judges: a language model asked which of two responses is better under a principle.

The judge reads a prompt rendered from `TEMPLATE` (principle, prompt, response A, response B)
and answers with the token "A" or "B". Where the judge exposes log-probabilities, the label
is soft (Lee et al. 2023, RLAIF §2.1):

    P(A) = exp ℓ_A / (exp ℓ_A + exp ℓ_B),    ℓ_c = log Σ_{t ∈ tokens(c)} p(t | prompt)

(ℓ_c sums the choice's spellings, "A" and " A"). Judges prefer a position (Wang et al. 2023;
Zheng et al. 2023), so each pair is asked in both orders and the two answers averaged:

    P(x ≻ y) = ½·[P_A(x, y) + 1 − P_A(y, x)]
    position bias = ½·[P_A(x, y) + P_A(y, x)] − ½        (> 0: prefers the first shown)

Three judges with one interface (`choice_logprobs(texts) -> [(ℓ_A, ℓ_B)]`):
`HFJudge` — a local Hugging Face causal LM loaded with `from_pretrained`, read from the
logits of the next token; `EndpointJudge` — any OpenAI-compatible `/chat/completions`
server (vLLM, llama.cpp, a hosted API) asked for one token with `logprobs`/`top_logprobs`;
`judge_world.ScriptedJudge` — a simulated judge for the built-in task (as the synthetic annotator
simulates a person): it applies each built-in principle's own rule, with a position bias and
judgement noise of known size, so RLAIF can be studied with a judge of known quality.
A server without log-probabilities gives a hard label (the answer's text); an answer that is
neither A nor B, a timeout or a server error after `retries` attempts raises `JudgeError` —
never a silent label.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rlhflab.config import DEFAULT_JUDGE_TEMPLATE
from rlhflab.text.models import format_prompt, forward_kwargs, load_causal_lm, load_tokenizer

TEMPLATE = DEFAULT_JUDGE_TEMPLATE
CHOICES = ("A", "B")


class JudgeError(RuntimeError):
    """A judge that cannot give a label: unreachable, too slow, or answering neither A nor B."""


def render(template: str, principle: str, prompt: str, first: str, second: str) -> str:
    return template.format(principle=principle, prompt=prompt, first=first, second=second)


def p_first(logprobs: tuple[float, float]) -> float:
    """P(the judge picks A) from (ℓ_A, ℓ_B), renormalised over the two choices."""
    a, b = logprobs
    if a == b == -math.inf:
        raise JudgeError("the judge gave neither A nor B any probability")
    return 1.0 / (1.0 + math.exp(max(min(b - a, 700.0), -700.0)))


@dataclass(frozen=True)
class Verdict:
    """A judgement of (x, y): P(x ≻ y) after cancelling position, and what each order said."""

    p: float  # P(x ≻ y)
    p_first_xy: float  # P(A) with x shown first
    p_first_yx: float  # P(A) with y shown first (nan when asked in one order only)

    @property
    def position_bias(self) -> float:
        return 0.5 * (self.p_first_xy + self.p_first_yx) - 0.5


def verdicts(judge, template: str, items: list[tuple[str, str, str, str]], both_orders: bool):
    """Verdicts on (principle, prompt, x, y) items; `both_orders` asks (x, y) and (y, x)."""
    first = [render(template, *it) for it in items]
    ab = [p_first(lp) for lp in judge.choice_logprobs(first)]
    if not both_orders:
        return [Verdict(p, p, math.nan) for p in ab]
    swapped = [render(template, pr, q, y, x) for pr, q, x, y in items]
    ba = [p_first(lp) for lp in judge.choice_logprobs(swapped)]
    return [Verdict(0.5 * (p1 + 1.0 - p2), p1, p2) for p1, p2 in zip(ab, ba)]


class HFJudge:
    """A local causal LM as judge: ℓ_A, ℓ_B from its next-token distribution after the prompt."""

    def __init__(self, name_or_path: str, batch_size: int = 64):
        self.name = f"hf:{name_or_path}"
        self.tokenizer = load_tokenizer(name_or_path)
        self.model = load_causal_lm(name_or_path).eval()
        self.batch_size = batch_size
        self.choice_ids = [self._token_ids(c) for c in CHOICES]

    def _token_ids(self, choice: str) -> list[int]:
        """Single-token spellings of a choice ("A", " A"), or JudgeError."""
        tok, ids = self.tokenizer, set()
        for spelling in (choice, " " + choice):
            enc = tok(spelling, add_special_tokens=False)["input_ids"]
            if len(enc) == 1 and enc[0] != tok.unk_token_id:
                ids.add(enc[0])
        if not ids:
            raise JudgeError(f"judge {self.name}: its tokenizer has no single token for {choice!r}")
        return sorted(ids)

    @torch.no_grad()
    def choice_logprobs(self, texts: list[str]) -> list[tuple[float, float]]:
        out: list[tuple[float, float]] = []
        tok = self.tokenizer
        tok.padding_side = "left"
        for i in range(0, len(texts), self.batch_size):
            enc = tok(
                [format_prompt(tok, t) for t in texts[i : i + self.batch_size]],
                return_tensors="pt",
                padding=True,
                add_special_tokens=False,
            )
            kwargs = forward_kwargs(self.model, enc["input_ids"], enc["attention_mask"])
            logp = F.log_softmax(self.model(**kwargs).logits[:, -1].float(), -1)
            a, b = (torch.logsumexp(logp[:, ids], -1) for ids in self.choice_ids)
            out += list(zip(a.tolist(), b.tolist()))
        return out


class EndpointJudge:
    """An OpenAI-compatible chat/completions server as judge (one request per prompt)."""

    def __init__(
        self,
        url: str,
        model: str = "judge",
        api_key_env: str | None = None,
        timeout: float = 30.0,
        retries: int = 2,
    ):
        self.url = url.rstrip("/") + "/chat/completions"
        self.name = f"api:{model}@{url}"
        self.model, self.timeout, self.retries = model, timeout, retries
        self.headers = {}
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise JudgeError(f"judge.api_key_env names ${api_key_env}, which is not set")
            self.headers["Authorization"] = f"Bearer {key}"

    def choice_logprobs(self, texts: list[str]) -> list[tuple[float, float]]:
        import httpx

        with httpx.Client(timeout=self.timeout, headers=self.headers) as client:
            return [self._ask(client, t) for t in texts]

    def _ask(self, client, text: str) -> tuple[float, float]:
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": text}],
            "max_tokens": 1,
            "temperature": 0,
            "logprobs": True,
            "top_logprobs": 5,
        }
        import httpx

        for attempt in range(self.retries + 1):
            try:
                r = client.post(self.url, json=body)
                if r.status_code < 500:
                    break
                problem = f"HTTP {r.status_code}"
            except httpx.HTTPError as exc:  # timeouts, refused connections
                problem = f"{type(exc).__name__}: {exc}"
            if attempt == self.retries:
                raise JudgeError(f"judge {self.url}: {problem} after {attempt + 1} attempts")
            time.sleep(0.2 * 2**attempt)
        if r.status_code != 200:
            raise JudgeError(f"judge {self.url}: HTTP {r.status_code}: {r.text[:200]!r}")
        return parse_answer(self.url, r)


def parse_answer(url: str, response) -> tuple[float, float]:
    """(ℓ_A, ℓ_B) from a chat/completions answer: its top log-probabilities when given, else the
    answer's text as a hard label; anything else is a JudgeError."""
    try:
        choice = response.json()["choices"][0]
        content = (choice.get("message") or {}).get("content") or ""
        top = ((choice.get("logprobs") or {}).get("content") or [{}])[0].get("top_logprobs") or []
        seen = {c: [float(t["logprob"]) for t in top if t["token"].strip() == c] for c in CHOICES}
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise JudgeError(f"judge {url}: not a chat/completions answer ({exc!r})") from None
    if any(seen.values()):
        a, b = (torch.logsumexp(torch.tensor(v or [-math.inf]), 0).item() for v in seen.values())
        return a, b
    answer = content.strip()
    if answer in CHOICES:  # no log-probabilities: a hard label
        return (0.0, -math.inf) if answer == "A" else (-math.inf, 0.0)
    raise JudgeError(f"judge {url}: answered {answer[:80]!r}, which is neither A nor B")
