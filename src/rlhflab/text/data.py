"""Prompts and demonstrations for text runs: the built-in task's, a JSONL file, or a hub dataset.

A JSONL file (or a `datasets` dataset) is read in the formats of `rlhflab.feedback.exchange`
— prompt/chosen/rejected (plain or conversational), Anthropic HH transcripts — and its
prompts and chosen responses become the prompts and demonstrations. Errors name the line
and field.
"""

from __future__ import annotations

from pathlib import Path

from rlhflab.feedback.exchange import DataError, parse_record, read_jsonl


def load_prompts_and_demos(
    tc, task, seed: int
) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """(training prompts, held-out evaluation prompts, (prompt, response) demonstrations)."""
    if tc.dataset is None:
        # reviews of every mood (SFT leaves room for RLHF), none undesirable
        demos = task.demonstrations(tc.sft.demonstrations, seed + 21)
        return task.prompts(4096, seed + 31), task.prompts(tc.eval_prompts, seed + 41), demos
    records = _read_dataset(tc.dataset)
    pairs = [(r.prompt, r.responses[0]) for r in records]
    n_eval = min(tc.eval_prompts, max(1, len(pairs) // 5))
    prompts = [p for p, _ in pairs]
    return prompts[n_eval:], prompts[:n_eval], pairs[n_eval:][: tc.sft.demonstrations]


def _read_dataset(name: str):
    path = Path(name)
    if path.exists():
        try:
            return read_jsonl(path, "trl")
        except DataError as exc:
            if "field 'prompt' is missing" not in str(exc):
                raise
            return read_jsonl(path, "hh")
    from datasets import load_dataset  # a hub dataset, for users with internet access

    rows = load_dataset(name, split="train")
    fmt = "trl" if "prompt" in rows.column_names else "hh"
    out = []
    for i, row in enumerate(rows):
        try:
            out.append(parse_record(dict(row), fmt))
        except ValueError as exc:
            raise DataError(f"{name}: row {i}: {exc}") from None
    return out
