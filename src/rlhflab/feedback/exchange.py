"""Export and import of text feedback as JSONL, in the field's usual formats.

    trl         {"prompt", "chosen", "rejected"}             — TRL's preference convention
    hh          {"chosen", "rejected"} as Anthropic HH transcripts
                ("\\n\\nHuman: … \\n\\nAssistant: …"), split at the last "\\n\\nAssistant:"
    rankings    {"prompt", "responses": [best, …, worst]}
    ratings     {"prompt", "response", "rating": 1–7}
    critiques   {"prompt", "response", "critique"}
    corrections {"prompt", "response", "correction"}

and for control runs, judgements of segment pairs (docs/run-format.md has the full format):

    segments    {"format": "rlhflab.segments/1", "left": SEG, "right": SEG,
                 "choice": "left"|"right"|"equal"|"cant_tell", "annotator", "shown_swapped",
                 "seconds"}, where SEG is {"obs": [[…]], "actions": […], "judged_rewards": […],
                 "env_steps"} or, with --ids, {"run": RUN_DIR, "segment_id": N}

Import validates the whole file first and names the bad line and field; nothing is
written unless every line is good, so a bad file never leaves half an import behind. It
holds imports to the web API's limits: strings of at most 20,000 characters, at most 64
responses, a chosen response different from the rejected one, two different segments.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rlhflab.feedback.schema import MAX_RESPONSES, MAX_TEXT
from rlhflab.feedback.store import FeedbackStore
from rlhflab.types import Judgement, Segment

TEXT_FORMATS = ("trl", "hh", "rankings", "ratings", "critiques", "corrections")
FORMATS = (*TEXT_FORMATS, "segments")
SEGMENTS_FORMAT = "rlhflab.segments/1"
MAX_SEGMENT_STEPS = 10_000
MAX_OBS_SIZE = 100_000  # numbers in one observation (a flattened image is large)
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
    if isinstance(value, str) and len(value) > MAX_TEXT:
        raise ValueError(f"field '{name}' is longer than {MAX_TEXT} characters")
    return value


def _distinct(responses: list[str], what: str) -> None:
    if len(set(responses)) != len(responses):
        raise ValueError(f"{what}: the same response twice (nobody can prefer a text to itself)")


def parse_record(record: dict, fmt: str) -> TextFeedback:
    """One JSON object in format `fmt` → TextFeedback; ValueError names the field."""
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    if fmt == "trl":
        prompt, chosen, rejected = (
            _message_text(record, k) for k in ("prompt", "chosen", "rejected")
        )
        for key, text in zip(("prompt", "chosen", "rejected"), (prompt, chosen, rejected)):
            if len(text) > MAX_TEXT:
                raise ValueError(f"field '{key}' is longer than {MAX_TEXT} characters")
        _distinct([chosen, rejected], "'chosen' equals 'rejected'")
        return TextFeedback("text_pair", prompt, [chosen, rejected], "left", {})
    if fmt == "hh":
        prompt, chosen, rejected = split_hh(_field(record, "chosen"), _field(record, "rejected"))
        _distinct([chosen, rejected], "'chosen' equals 'rejected'")
        return TextFeedback("text_pair", prompt, [chosen, rejected], "left", {})
    if fmt == "rankings":
        responses = _field(record, "responses", list)
        if (
            not isinstance(responses, list)
            or len(responses) < 2
            or not all(isinstance(r, str) for r in responses)
        ):
            raise ValueError("field 'responses' must be a list of at least two strings, best first")
        if len(responses) > MAX_RESPONSES or any(len(r) > MAX_TEXT for r in responses):
            raise ValueError(
                f"field 'responses' holds at most {MAX_RESPONSES} strings of at most "
                f"{MAX_TEXT} characters"
            )
        _distinct(responses, "field 'responses'")
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
        response, text = _field(record, "response"), _field(record, key)
        if not text.strip():
            raise ValueError(f"field '{key}' is empty")
        if kind == "correction" and text == response:
            raise ValueError("field 'correction' is the response unchanged (nothing corrected)")
        return TextFeedback(kind, _field(record, "prompt"), [response], kind, {"text": text})
    raise ValueError(f"unknown format '{fmt}' (use {', '.join(FORMATS)})")


def _message_text(record: dict, name: str) -> str:
    """A plain string, or conversational messages [{role, content}, …] joined as an HH
    transcript."""
    value = _field(record, name, object)
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise ValueError(f"field '{name}' is longer than {MAX_TEXT} characters")
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


def read_jsonl(path: str | Path, fmt: str) -> list:
    """Every line of a JSONL file, validated (TextFeedback, or SegmentFeedback for the
    segments format); DataError names file, line and field."""
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
            record = json.loads(line)
            out.append(parse_segments(record) if fmt == "segments" else parse_record(record, fmt))
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{path}:{number}: not valid JSON: {exc.msg} (column {exc.colno})"
            ) from None
        except ValueError as exc:
            raise DataError(f"{path}:{number}: {exc}") from None
    return out


def import_jsonl(
    store: FeedbackStore,
    path: str | Path,
    fmt: str,
    annotator: str | None = None,
    gold: bool = False,
) -> int:
    """Validate the whole file, then store every record as a judged query in one transaction.

    With `gold`, segment (or trl/hh) records become gold questions whose known answer is the
    record's choice (chosen for text), mixed into what annotators are shown."""
    records = read_jsonl(path, fmt)
    if fmt == "segments":
        return _import_segments(store, records, gold)
    if gold:
        if fmt not in ("trl", "hh"):
            raise DataError(f"{path}: gold questions come from pairs (segments, trl or hh)")
        for r in records:
            store.add_text_query("text_pair", r.prompt, r.responses, gold="left")
        return len(records)
    return store.add_text_feedback(records, annotator or f"import:{Path(path).name}")


def export_records(store: FeedbackStore, fmt: str, by_id: str | None = None) -> list[dict]:
    """The store's judgements in format `fmt` (text pairs answered equal or can't tell are left
    out of trl and hh). For `segments`, `by_id` (the run directory) writes segment ids instead
    of the numbers."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format '{fmt}' (use {', '.join(FORMATS)})")
    if fmt == "segments":
        return export_segments(store, by_id)
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


# -- judgements of segment pairs (control runs) ----------------------------------------------
@dataclass(frozen=True)
class SegmentFeedback:
    """One judged segment pair, as exported: two segments (or references to them) and the answer."""

    left: Segment | tuple[str, int]  # a segment, or (run directory, segment id)
    right: Segment | tuple[str, int]
    choice: str
    annotator: str
    shown_swapped: bool | None
    seconds: float | None


def _segment_json(row, by_id: str | None) -> dict:
    if by_id is not None:
        return {"run": by_id, "segment_id": row.id}
    g = row.to_segment()
    return {
        "obs": g.obs.tolist(),
        "actions": g.actions.tolist(),
        "judged_rewards": g.judged_rewards.tolist(),
        "env_steps": g.env_steps,
    }


def export_segments(store: FeedbackStore, by_id: str | None = None) -> list[dict]:
    """Every judgement of a segment pair, in the order given, in the `segments` format."""
    return [
        {
            "format": SEGMENTS_FORMAT,
            "query_id": r.query_id,
            "left": _segment_json(r.query.left, by_id),
            "right": _segment_json(r.query.right, by_id),
            "choice": r.label,
            "annotator": r.annotator,
            "shown_swapped": r.shown_swapped,
            "seconds": r.seconds,
        }
        for r in store.judgement_rows()
        if r.query.kind == "segments"
    ]


def _numbers(value, name: str, ndim: int) -> np.ndarray:
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"field '{name}' must be a {ndim}-d list of numbers") from None
    if a.dtype == object or a.ndim != ndim or not np.isfinite(a).all():
        raise ValueError(f"field '{name}' must be a {ndim}-d list of finite numbers")
    if _has_bool(value):
        raise ValueError(f"field '{name}' holds true/false where numbers belong")
    return a


def _has_bool(value) -> bool:
    if isinstance(value, list):
        return any(_has_bool(v) for v in value)
    return isinstance(value, bool)


def _parse_segment(value, side: str) -> Segment | tuple[str, int]:
    if not isinstance(value, dict):
        raise ValueError(f"field '{side}' must be an object")
    if "segment_id" in value:
        sid, run = value.get("segment_id"), value.get("run")
        if isinstance(sid, bool) or not isinstance(sid, int) or sid < 1 or not isinstance(run, str):
            raise ValueError(f"field '{side}' must hold 'run' (a path) and 'segment_id' (≥ 1)")
        return run, sid
    obs = _numbers(value.get("obs"), f"{side}.obs", 2)
    actions_raw = value.get("actions")
    dims = np.ndim(actions_raw) if isinstance(actions_raw, list) else 1
    actions = _numbers(actions_raw, f"{side}.actions", max(1, min(2, dims)))
    k = len(obs)
    if not 1 <= k <= MAX_SEGMENT_STEPS or obs.shape[1] > MAX_OBS_SIZE:
        raise ValueError(
            f"field '{side}.obs' must hold 1–{MAX_SEGMENT_STEPS} steps of at most "
            f"{MAX_OBS_SIZE} numbers"
        )
    if len(actions) != k or actions.ndim > 2:
        raise ValueError(f"field '{side}.actions' must hold one action per step ({k})")
    rewards = _numbers(value.get("judged_rewards", [0.0] * k), f"{side}.judged_rewards", 1)
    if len(rewards) != k:
        raise ValueError(f"field '{side}.judged_rewards' must hold one number per step ({k})")
    steps = value.get("env_steps", 0)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"field '{side}.env_steps' must be a whole number ≥ 0")
    discrete = actions.ndim == 1 and np.all(actions == np.round(actions))
    acts = actions.astype(np.int64) if discrete else actions.astype(np.float32)
    return Segment(obs.astype(np.float32), acts, rewards.astype(np.float32), steps)


def parse_segments(record) -> SegmentFeedback:
    """One `segments` record → SegmentFeedback; ValueError names the field."""
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    if record.get("format", SEGMENTS_FORMAT) != SEGMENTS_FORMAT:
        raise ValueError(f"field 'format' must be '{SEGMENTS_FORMAT}'")
    left, right = (
        _parse_segment(record.get("left"), "left"),
        _parse_segment(record.get("right"), "right"),
    )
    choice = record.get("choice")
    if choice not in [j.value for j in Judgement]:
        raise ValueError("field 'choice' must be one of left, right, equal, cant_tell")
    if isinstance(left, Segment) and isinstance(right, Segment):
        if len(left) != len(right):
            raise ValueError("fields 'left' and 'right' must have the same number of steps")
        if np.array_equal(left.obs, right.obs) and np.array_equal(left.actions, right.actions):
            raise ValueError("fields 'left' and 'right' are the same segment")
    annotator = record.get("annotator", "import")
    if not isinstance(annotator, str) or not 1 <= len(annotator) <= 200:
        raise ValueError("field 'annotator' must be a name of 1–200 characters")
    swapped, seconds = record.get("shown_swapped"), record.get("seconds")
    if swapped is not None and not isinstance(swapped, bool):
        raise ValueError("field 'shown_swapped' must be true, false or null")
    if seconds is not None and (
        isinstance(seconds, bool)
        or not isinstance(seconds, (int, float))
        or not math.isfinite(seconds)
        or seconds < 0
    ):
        raise ValueError("field 'seconds' must be a number ≥ 0 or null")
    return SegmentFeedback(left, right, choice, annotator, swapped, seconds)


def _resolve(ref, stores: dict) -> Segment:
    if isinstance(ref, Segment):
        return ref
    run, sid = ref
    if run not in stores:
        from rlhflab.runs import RunDir

        if not (Path(run) / "feedback.db").exists():
            raise DataError(f"{run}: no feedback store to read segment {sid} from")
        stores[run] = FeedbackStore(RunDir(run).store_url)
    seg = stores[run].segment(sid)
    if seg is None:
        raise DataError(f"{run}: no segment {sid}")
    return seg


def _import_segments(store: FeedbackStore, records: list[SegmentFeedback], gold: bool) -> int:
    stores: dict = {}
    try:
        pairs = [(_resolve(r.left, stores), _resolve(r.right, stores)) for r in records]
    finally:
        for s in stores.values():
            s.close()
    dims = {p.obs.shape[1:] for pair in pairs for p in pair}
    if len(dims) > 1:
        raise DataError(f"segments of different observation shapes in one file: {sorted(dims)}")
    if gold:
        if any(r.choice == "cant_tell" for r in records):
            raise DataError("a gold question needs a known answer: left, right or equal")
        store.add_queries(pairs, gold=[r.choice for r in records])
    else:
        store.add_judged_pairs(pairs, records)
    return len(records)
