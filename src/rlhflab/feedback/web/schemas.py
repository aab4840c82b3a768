"""The labeling API's request and response bodies, and its one error shape.

Request bodies are strict (pydantic strict mode): `true` is not a number, `"yes"` is not a
boolean, `2` is not a string, and unknown fields are refused. Every error, whatever its
status, has the shape `ErrorBody`: a human-readable `detail` string and, for 422, the
offending `errors` by location.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from rlhflab.feedback.schema import MAX_PARTS, MAX_RESPONSES, MAX_TEXT

Choice = Literal["left", "right", "equal", "cant_tell"]
STRICT = ConfigDict(extra="forbid", strict=True)


def _integral(value):
    """JSON Schema's integer: 7 and 7.0 are both integers; true, 7.5 and "7" are not."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# database ids; the bound is exact as a double, so JSON clients and the schema agree on it
MAX_ID = 2**31 - 1
DbId = Annotated[int, Field(ge=1, le=MAX_ID), BeforeValidator(_integral)]


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="where: body, query or path, then the field")
    msg: str
    type: str


class ErrorBody(BaseModel):
    """Every error response: `detail` says what went wrong and what to do."""

    detail: str
    errors: list[FieldError] = Field(
        default_factory=list, description="422 only: each invalid field"
    )


ERROR_TEXT = {
    401: "no valid token or session: open your personal login link, or send a Bearer token",
    403: "not allowed for this annotator (someone else's, or admin only)",
    404: "no such resource",
    409: "conflicts with the query's state: not leased to you, leased again, expired, "
    "withdrawn, already answered, or an answer of the wrong kind",
    413: "request body too large",
    422: "malformed request: the errors name each field",
}


def errors(*statuses: int) -> dict:
    """OpenAPI `responses` entries for these error statuses, all with the ErrorBody shape."""
    return {s: {"model": ErrorBody, "description": ERROR_TEXT[s]} for s in statuses}


class Answer(BaseModel):
    """An answer to a leased query, in the order it was *shown*."""

    model_config = STRICT
    query_id: DbId
    lease: str = Field(
        min_length=1,
        max_length=64,
        description="the lease token /api/next gave with this query; an answer quoting an older "
        "issue of the lease (the query was leased again, perhaps in the other order) gets 409",
    )
    choice: Choice | None = Field(None, description="pairwise queries: which shown side is better")
    ranking: (
        list[Annotated[int, Field(ge=0, lt=MAX_RESPONSES), BeforeValidator(_integral)]] | None
    ) = Field(
        None, max_length=MAX_RESPONSES, description="ranking queries: shown positions, best first"
    )
    rating: Annotated[int, Field(ge=1, le=7), BeforeValidator(_integral)] | None = Field(
        None, description="rating and clip_rating queries: 1 (worst) to 7 (best)"
    )
    parts: list[Choice] | None = Field(
        None,
        max_length=MAX_PARTS,
        description="segment queries that ask for process feedback (`parts` in /api/next): "
        "which shown side is better on each part, first part first",
    )
    text: str | None = Field(
        None, max_length=MAX_TEXT, description="critique or corrected response"
    )


class Relabel(BaseModel):
    model_config = STRICT
    choice: Choice


class NewAnnotator(BaseModel):
    model_config = STRICT
    name: str = Field(min_length=1, max_length=200, pattern=r"\S")
    admin: bool = False


class Me(BaseModel):
    name: str
    admin: bool
    done: int
    open: int
    run_state: Literal["running", "waiting", "over"] = Field(
        description="running; waiting (training paused until more labels arrive); over (the run "
        "ended: its unanswered queries were withdrawn)"
    )


class Item(BaseModel):
    """One shown side: a clip of a segment (`clip` is its URL, or null when none was rendered,
    with its type, frame count and rate), or a `text`. Absent fields are left out."""

    clip: str | None = None
    mime: str | None = None
    frames: int | None = None
    fps: float | None = None
    text: str | None = None


class NextQuery(BaseModel):
    query_id: int
    kind: str
    prompt: str | None = Field(None, description="text queries: the prompt")
    question: str | None = Field(
        None,
        description="AI-feedback runs: the principle the comparison is judged under "
        "(its text in the constitution)",
    )
    items: list[Item]
    parts: int | None = Field(
        None, description="segment queries: judge each of this many aligned parts too"
    )
    lease_seconds: float
    lease: str


class Acknowledged(BaseModel):
    judgement_id: int


class JudgementOut(BaseModel):
    id: int
    query_id: int
    kind: str
    annotator: str
    label: str
    payload: dict
    shown_swapped: bool | None
    seconds: float | None
    created_at: str


class Segments(BaseModel):
    items: list[dict] = Field(description="obs and actions of each shown segment, in shown order")


class CreatedAnnotator(BaseModel):
    name: str
    token: str = Field(description="for scripts: 'Authorization: Bearer TOKEN'")
    link: str = Field(description="a personal sign-in link holding a one-time code")


class AuditEntry(BaseModel):
    at: str
    actor: str
    action: str
    subject: str
    detail: dict
