"""Export and import of text feedback as JSONL, in the field's usual formats.

    trl         {"prompt", "chosen", "rejected"}             — TRL's preference convention
    hh          {"chosen", "rejected"} as Anthropic HH transcripts
                ("\\n\\nHuman: … \\n\\nAssistant: …"), split at the last "\\n\\nAssistant:"
    rankings    {"prompt", "responses": [best, …, worst]}
    ratings     {"prompt", "response", "rating": 1–7}
    critiques   {"prompt", "response", "critique"}
    corrections {"prompt", "response", "correction"}

Import validates the whole file first and names the bad line and field; nothing is
written unless every line is good, so a bad file never leaves half an import behind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rlhflab.feedback.store import FeedbackStore

FORMATS = ("trl", "hh", "rankings", "ratings", "critiques", "corrections")
ASSISTANT = "\n\nAssistant:"


class DataError(ValueError):
    """A record that cannot be used; the message names the file, line and field."""


@dataclass(frozen=True)
class TextFeedback:
    """One judged text query in the store's own terms."""

    kind: str  # text_pair, ranking, rating, critique, correction
    prompt: str
    responses: list[str]
    label: str  # left for text_pair (responses[0] chosen); the kind otherwise
    payload: dict


def hh_transcript(prompt: str, response: str) -> str:
    """A prompt (already a transcript, or a bare question) and a response as one HH transcript."""
    if not prompt.lstrip().startswith("Human:") and "\n\nHuman:" not in prompt:
        prompt = f"\n\nHuman: {prompt}"
    return f"{prompt}{ASSISTANT} {response}"


def split_hh(chosen: str, rejected: str) -> tuple[str, str, str]:
    """(prompt, chosen response, rejected response) from two HH transcripts sharing a prefix."""
    cut = chosen.rfind(ASSISTANT)
    if cut < 0:
        raise ValueError(f"'chosen' has no '{ASSISTANT.strip()}' turn")
    prompt = chosen[:cut]
    if not rejected.startswith(prompt + ASSISTANT):
        raise ValueError(
            "'chosen' and 'rejected' do not share the same conversation before the last "
            "Assistant turn"
        )
    return (
        prompt,
        chosen[cut + len(ASSISTANT) :].lstrip(),
        rejected[cut + len(ASSISTANT) :].lstrip(),
    )


def _field(record: dict, name: str, kind=str):
    if name not in record:
        raise ValueError(f"field '{name}' is missing")
    value = record[name]
    if kind is str and not isinstance(value, str):
        raise ValueError(f"field '{name}' must be a string, got {type(value).__name__}")
    return value


def parse_record(record: dict, fmt: str) -> TextFeedback:
    """One JSON object in format `fmt` → TextFeedback; ValueError names the field."""
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    if fmt == "trl":
        prompt, chosen, rejected = (
            _message_text(record, k) for k in ("prompt", "chosen", "rejected")
        )
        return TextFeedback("text_pair", prompt, [chosen, rejected], "left", {})
    if fmt == "hh":
        prompt, chosen, rejected = split_hh(_field(record, "chosen"), _field(record, "rejected"))
        return TextFeedback("text_pair", prompt, [chosen, rejected], "left", {})
    if fmt == "rankings":
        responses = _field(record, "responses", list)
        if (
            not isinstance(responses, list)
            or len(responses) < 2
            or not all(isinstance(r, str) for r in responses)
        ):
            raise ValueError("field 'responses' must be a list of at least two strings, best first")
        return TextFeedback(
            "ranking",
            _field(record, "prompt"),
            responses,
            "ranking",
            {"order": list(range(len(responses)))},
        )
    if fmt == "ratings":
        rating = _field(record, "rating", int)
        if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 7:
            raise ValueError(f"field 'rating' must be an integer from 1 to 7, got {rating!r}")
        return TextFeedback(
            "rating",
            _field(record, "prompt"),
            [_field(record, "response")],
            "rating",
            {"rating": rating},
        )
    if fmt in ("critiques", "corrections"):
        key = fmt[:-1]
        kind = "critique" if fmt == "critiques" else "correction"
        return TextFeedback(
            kind,
            _field(record, "prompt"),
            [_field(record, "response")],
            kind,
            {"text": _field(record, key)},
        )
    raise ValueError(f"unknown format '{fmt}' (use {', '.join(FORMATS)})")


def _message_text(record: dict, name: str) -> str:
    """A plain string, or conversational messages [{role, content}, …] joined as an HH
    transcript."""
    value = _field(record, name, object)
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(
        isinstance(m, dict) and isinstance(m.get("content"), str) and m.get("role") for m in value
    ):
        names = {"user": "Human", "assistant": "Assistant", "system": "System"}
        if name == "prompt":
            return "".join(f"\n\n{names.get(m['role'], m['role'])}: {m['content']}" for m in value)
        return (
            " ".join(m["content"] for m in value if m["role"] == "assistant")
            or value[-1]["content"]
        )
    raise ValueError(f"field '{name}' must be a string or a list of {{role, content}} messages")


def read_jsonl(path: str | Path, fmt: str) -> list[TextFeedback]:
    """Every line of a JSONL file, validated; DataError names file, line and field."""
    path = Path(path)
    out = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read: {exc}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            out.append(parse_record(json.loads(line), fmt))
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{path}:{number}: not valid JSON: {exc.msg} (column {exc.colno})"
            ) from None
        except ValueError as exc:
            raise DataError(f"{path}:{number}: {exc}") from None
    return out


def import_jsonl(
    store: FeedbackStore, path: str | Path, fmt: str, annotator: str | None = None
) -> int:
    """Validate the whole file, then store every record as a judged query in one transaction."""
    records = read_jsonl(path, fmt)
    return store.add_text_feedback(records, annotator or f"import:{Path(path).name}")


def export_records(store: FeedbackStore, fmt: str) -> list[dict]:
    """The store's text judgements in format `fmt` (pairs answered equal or can't tell are left
    out)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format '{fmt}' (use {', '.join(FORMATS)})")
    out = []
    for r in store.judgement_rows():
        q, prompt = r.query, r.query.payload.get("prompt", "")
        responses = q.payload.get("responses", [])
        if fmt in ("trl", "hh") and q.kind == "text_pair" and r.label in ("left", "right"):
            chosen, rejected = (
                (responses[0], responses[1]) if r.label == "left" else (responses[1], responses[0])
            )
            if fmt == "trl":
                out.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
            else:
                out.append(
                    {
                        "chosen": hh_transcript(prompt, chosen),
                        "rejected": hh_transcript(prompt, rejected),
                    }
                )
        elif fmt == "rankings" and q.kind == "ranking":
            out.append({"prompt": prompt, "responses": [responses[i] for i in r.payload["order"]]})
        elif fmt == "ratings" and q.kind == "rating":
            out.append({"prompt": prompt, "response": responses[0], "rating": r.payload["rating"]})
        elif fmt in ("critiques", "corrections") and q.kind == fmt[:-1]:
            out.append({"prompt": prompt, "response": responses[0], fmt[:-1]: r.payload["text"]})
    return out
