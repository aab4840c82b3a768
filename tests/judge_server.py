"""An OpenAI-compatible judge server for tests: FastAPI + uvicorn on a free 127.0.0.1 port, in a
thread, answering POST /v1/chat/completions with one token and its top log-probabilities.

Modes: `model` serves a local Hugging Face causal LM (the next-token distribution after the
prompt); `rigged` is a judge that reads the two reviews' gold values and prefers response A
by a fixed logit (`bias`); `slow`, `error` and `garbage` misbehave (sleep past the client's
timeout, answer 503, answer "maybe" without log-probabilities). `calls` counts requests."""

from __future__ import annotations

import asyncio
import math
import re
import threading
import time

import torch
import torch.nn.functional as F
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from labeling import free_port

from rlhflab.text.models import load_causal_lm, load_tokenizer
from rlhflab.text.task import TASKS

PAIR = re.compile(r"Response A: (.*)\nResponse B: (.*)\n")


def _answer(content: str, top: list[tuple[str, float]] | None) -> dict:
    choice: dict = {"index": 0, "message": {"role": "assistant", "content": content}}
    if top is not None:
        entries = [{"token": t, "logprob": lp} for t, lp in top]
        choice["logprobs"] = {"content": [{**entries[0], "top_logprobs": entries}]}
    return {"object": "chat.completion", "choices": [choice]}


class JudgeServer:
    def __init__(self, mode: str = "model", model_path: str | None = None, bias: float = 2.0):
        self.mode, self.bias, self.calls = mode, bias, 0
        if model_path:
            self.tokenizer, self.model = load_tokenizer(model_path), load_causal_lm(model_path)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        app = FastAPI()
        app.post("/v1/chat/completions")(self.chat)
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    async def chat(self, request: Request):
        self.calls += 1
        body = await request.json()
        text = body["messages"][-1]["content"]
        if self.mode == "slow":
            await asyncio.sleep(3.0)
        if self.mode == "error":
            return JSONResponse({"error": "overloaded"}, status_code=503)
        if self.mode == "garbage":
            return _answer("maybe", None)
        if self.mode == "rigged":
            first, second = (TASKS["reviews"].gold(r) for r in PAIR.search(text).groups())
            p = 1 / (1 + math.exp(-(2 * (first - second) + self.bias)))
            return _answer("A" if p > 0.5 else "B", [("A", math.log(p)), ("B", math.log1p(-p))])
        return _answer(*self._model_answer(text, int(body.get("top_logprobs", 5))))

    @torch.no_grad()
    def _model_answer(self, text: str, k: int):
        ids = self.tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
        logp = F.log_softmax(self.model(input_ids=ids).logits[0, -1].float(), -1)
        top = torch.topk(logp, k)
        tokens = self.tokenizer.convert_ids_to_tokens(top.indices.tolist())
        return tokens[0], list(zip(tokens, top.values.tolist()))

    def __enter__(self) -> JudgeServer:
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            if time.time() > deadline:
                raise RuntimeError("judge server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
