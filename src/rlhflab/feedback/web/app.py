"""The labeling app: a FastAPI service over the feedback store.

People open a personal login link, then answer queries one at a time: two clips (or two
responses) side by side, or a ranking, a 1–7 rating, a critique, a correction. Each query
is leased to one annotator at a time; a lease expires and the query goes to someone else.
The left/right (or ranking) display order is randomised per lease and recorded. All model
output and annotator text reaches the page as JSON and is inserted with `textContent`;
the guidelines' markdown is rendered with raw HTML disabled. The JSON API is documented
at /openapi.json.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from markdown_it import MarkdownIt
from pydantic import BaseModel, ConfigDict, Field

from rlhflab.feedback.agreement import annotator_report
from rlhflab.feedback.store import (
    PAIR_KINDS,
    AnnotatorRow,
    FeedbackStore,
    LeaseError,
    lease_token_of,
)

STATIC = Path(__file__).parent / "static"
COOKIE = "rlhflab_token"
CHOICES = ("left", "right", "equal", "cant_tell")
Id = Annotated[int, PathParam(ge=1, le=2**62)]  # database ids: SQLite integers are 64-bit
FLIP = {"left": "right", "right": "left", "equal": "equal", "cant_tell": "cant_tell"}


class Answer(BaseModel):
    """An answer to a leased query, in the order it was *shown*."""

    model_config = ConfigDict(extra="forbid")
    query_id: int = Field(ge=1, le=2**62)
    choice: Literal["left", "right", "equal", "cant_tell"] | None = Field(
        None, description="pairwise queries: which shown side is better"
    )
    ranking: list[int] | None = Field(
        None, max_length=64, description="ranking queries: shown positions, best first"
    )
    rating: int | None = Field(
        None, ge=1, le=7, description="rating queries: 1 (worst) to 7 (best)"
    )
    text: str | None = Field(None, max_length=20_000, description="critique or corrected response")
    lease: str | None = Field(
        None,
        max_length=64,
        description="the lease token /api/next gave with this query (refuses answers to a "
        "re-leased query)",
    )


class Relabel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    choice: Literal["left", "right", "equal", "cant_tell"]


class NewAnnotator(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    admin: bool = False


class MaxBodySize:
    """ASGI middleware: refuse request bodies over `limit` bytes with 413, before the app reads
    them."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await _too_large(send, self.limit)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _BodyTooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _BodyTooLarge:
            await _too_large(send, self.limit)


class _BodyTooLarge(Exception):
    pass


async def _too_large(send, limit: int) -> None:
    body = json.dumps({"detail": f"request body larger than {limit} bytes"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def render_markdown(text: str) -> str:
    """Markdown → HTML with raw HTML disabled (escaped) and unsafe link schemes refused."""
    return MarkdownIt("commonmark", {"html": False}).render(text)


def create_app(
    store_url: str, lease_seconds: float = 300.0, max_body: int = 64_000, seed: int | None = None
) -> FastAPI:
    store = FeedbackStore(store_url)
    app = FastAPI(
        title="rlhflab labeling app",
        description="Judge queries from an RLHF run's feedback store.",
        version="1",
    )
    app.add_middleware(MaxBodySize, limit=max_body)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.state.store = store
    annotator, admin = _auth(store)
    _page_routes(app, store)
    _lease_routes(app, store, annotator, lease_seconds, np.random.default_rng(seed))
    _judgement_routes(app, store, annotator)
    _clip_routes(app, store, annotator)
    _admin_routes(app, store, admin)

    @app.exception_handler(ValueError)
    async def bad_value(request: Request, exc: ValueError):
        return JSONResponse({"detail": str(exc)}, status_code=422)

    return app


def _auth(store: FeedbackStore) -> tuple[Callable, Callable]:
    """FastAPI dependencies: the annotator a request's token names (cached), and admins only."""
    tokens: dict[str, AnnotatorRow] = {}

    def annotator(request: Request) -> AnnotatorRow:
        auth = request.headers.get("authorization", "")
        token = auth[7:] if auth.lower().startswith("bearer ") else request.cookies.get(COOKIE)
        if not token:
            raise HTTPException(
                401,
                "no token: open your personal login link, or send 'Authorization: Bearer TOKEN'",
            )
        if token not in tokens:
            row = store.annotator_by_token(token)
            if row is None:
                raise HTTPException(401, "unknown token")
            tokens[token] = row
        return tokens[token]

    def admin(who: AnnotatorRow = Depends(annotator)) -> AnnotatorRow:
        if not who.is_admin:
            raise HTTPException(403, "admin only")
        return who

    return annotator, admin


def _page_routes(app: FastAPI, store: FeedbackStore) -> None:
    """The pages people open: login, labeling, agreement (admin), guidelines."""

    @app.get("/login", include_in_schema=False)
    def login(token: str):
        if store.annotator_by_token(token) is None:
            raise HTTPException(401, "unknown token")
        resp = RedirectResponse("/", status_code=303)
        resp.set_cookie(COOKIE, token, httponly=True, samesite="strict", max_age=30 * 86400)
        return resp

    @app.get("/", include_in_schema=False)
    def label_page():
        return HTMLResponse((STATIC / "label.html").read_text())

    @app.get("/admin", include_in_schema=False)
    def admin_page():
        return HTMLResponse((STATIC / "admin.html").read_text())

    @app.get("/guidelines", include_in_schema=False)
    def guidelines():
        body = render_markdown(
            store.setting("guidelines", "No guidelines were given for this run.") or ""
        )
        page = (STATIC / "guidelines.html").read_text()
        return HTMLResponse(page.replace("<!--GUIDELINES-->", body))


def _lease_routes(
    app: FastAPI, store: FeedbackStore, annotator: Callable, lease_seconds: float, rng
) -> None:
    """Who am I, lease the next query, answer it."""

    @app.get("/api/me")
    def me(who: AnnotatorRow = Depends(annotator)):
        done, open_ = store.progress(who.name)
        return {"name": who.name, "admin": who.is_admin, "done": done, "open": open_}

    @app.post("/api/next", responses={204: {"description": "nothing to judge right now"}})
    def next_query(who: AnnotatorRow = Depends(annotator)):
        """Lease the next query (or return the one already leased), in a randomised display
        order."""
        leased = store.lease_next(who.name, lease_seconds, rng)
        if leased is None:
            return Response(status_code=204)
        q, lease = leased
        if q.kind == "segments":
            ids = [q.left_id, q.right_id]
            have = store.clip_ids([i for i in ids if i is not None])
            items = [
                {"clip": f"/api/clips/{ids[i]}" if ids[i] in have else None} for i in lease.order
            ]
        else:
            responses = q.payload.get("responses", [])
            items = [{"text": responses[i]} for i in lease.order]
        done, open_ = store.progress(who.name)
        return {
            "query_id": q.id,
            "kind": q.kind,
            "prompt": q.payload.get("prompt"),
            "items": items,
            "lease_seconds": lease_seconds,
            "lease": lease_token_of(lease),
            "done": done,
            "open": open_,
        }

    @app.post("/api/answer", status_code=201)
    def answer(a: Answer, who: AnnotatorRow = Depends(annotator)):
        """Answer the leased query; the judgement is stored in the query's own orientation."""
        try:
            jid = store.answer_lease(
                who.name,
                a.query_id,
                lambda kind, order: _stored_answer(kind, a, order),
                lease_token=a.lease,
            )
        except LeaseError as exc:
            raise HTTPException(409, str(exc)) from None
        return {"judgement_id": jid}


def _judgement_routes(app: FastAPI, store: FeedbackStore, annotator: Callable) -> None:
    """An annotator's own judgements: list, read, relabel."""

    @app.get("/api/judgements")
    def my_judgements(who: AnnotatorRow = Depends(annotator)):
        return [_judgement_json(r) for r in store.judgement_rows(who.name)]

    @app.get("/api/judgements/{judgement_id}")
    def one_judgement(judgement_id: Id, who: AnnotatorRow = Depends(annotator)):
        return _judgement_json(_own(judgement_id, who))

    @app.patch("/api/judgements/{judgement_id}")
    def change_judgement(judgement_id: Id, change: Relabel, who: AnnotatorRow = Depends(annotator)):
        """Correct one of your own pairwise answers (in stored orientation, as GET shows it)."""
        row = _own(judgement_id, who)
        if row.query.kind not in PAIR_KINDS:
            raise HTTPException(422, "only pairwise judgements can be relabelled")
        store.relabel(judgement_id, change.choice)
        return _judgement_json(store.judgement_row(judgement_id))

    def _own(judgement_id: int, who: AnnotatorRow):
        row = store.judgement_row(judgement_id)
        if row is None:
            raise HTTPException(404, f"no judgement {judgement_id}")
        if row.annotator != who.name and not who.is_admin:
            raise HTTPException(403, "that judgement belongs to another annotator")
        return row


def _clip_routes(app: FastAPI, store: FeedbackStore, annotator: Callable) -> None:
    """What a leased segment query shows: its observations and actions, and its clips."""

    @app.get("/api/queries/{query_id}/segments")
    def segments(query_id: Id, who: AnnotatorRow = Depends(annotator)):
        """Observations and actions of a leased segment query, in shown order (for scripted
        annotators)."""
        lease = store.lease(query_id)
        if lease is None or lease.annotator != who.name:
            raise HTTPException(403, f"query {query_id} is not leased to you")
        q = store.query(query_id)
        if q is None:
            raise HTTPException(404, f"no query {query_id}")
        segs = q.segments()
        return {
            "items": [
                {"obs": segs[i].obs.tolist(), "actions": segs[i].actions.tolist()}
                for i in lease.order
            ]
        }

    @app.get("/api/clips/{segment_id}", response_class=Response)
    def clip(segment_id: Id, who: AnnotatorRow = Depends(annotator)):
        """A clip of a segment in a query you lease or have judged."""
        if not who.is_admin and not store.segment_visible_to(who.name, segment_id):
            raise HTTPException(403, f"segment {segment_id} is not in a query leased to you")
        found = store.clip(segment_id)
        if found is None:
            raise HTTPException(404, f"no clip for segment {segment_id}")
        mime, data = found
        return Response(data, media_type=mime, headers={"cache-control": "private, max-age=3600"})


def _admin_routes(app: FastAPI, store: FeedbackStore, admin: Callable) -> None:
    """Agreement statistics and new annotators, for admins."""

    @app.get("/api/admin/stats")
    def stats(who: AnnotatorRow = Depends(admin)):
        """Per-annotator counts, agreement with consensus, tie/can't-tell rates, position bias,
        time; κ and α."""
        rows = store.pair_judgement_records()
        return annotator_report(rows) | {"queries": store.count_queries()}

    @app.post("/api/admin/annotators", status_code=201)
    def add_annotator(new: NewAnnotator, request: Request, who: AnnotatorRow = Depends(admin)):
        try:
            token = store.add_annotator(new.name, new.admin)
        except ValueError as exc:
            raise HTTPException(409, str(exc)) from None
        return {
            "name": new.name,
            "token": token,
            "link": str(request.base_url).rstrip("/") + f"/login?token={token}",
        }


def _stored_answer(kind: str, a: Answer, order: list[int]) -> tuple[str, dict]:
    """Map an answer in shown order to the stored (label, payload); 422 when it does not fit the
    query."""
    if kind in PAIR_KINDS:
        if a.choice is None:
            raise HTTPException(422, f"a {kind} query needs 'choice' (one of {', '.join(CHOICES)})")
        swapped = order != sorted(order)
        return (FLIP[a.choice] if swapped else a.choice), {}
    if kind == "ranking":
        if a.ranking is None or sorted(a.ranking) != list(range(len(order))):
            raise HTTPException(
                422,
                f"a ranking query needs 'ranking': a permutation of 0..{len(order) - 1}, best "
                f"first",
            )
        return kind, {"order": [order[p] for p in a.ranking]}
    if kind == "rating":
        if a.rating is None:
            raise HTTPException(422, "a rating query needs 'rating' from 1 to 7")
        return kind, {"rating": a.rating}
    if a.text is None or not a.text.strip():
        raise HTTPException(422, f"a {kind} query needs non-empty 'text'")
    return kind, {"text": a.text}


def _judgement_json(r) -> dict:
    return {
        "id": r.id,
        "query_id": r.query_id,
        "kind": r.query.kind,
        "annotator": r.annotator,
        "label": r.label,
        "payload": r.payload,
        "shown_swapped": r.shown_swapped,
        "seconds": r.seconds,
        "created_at": r.created_at.isoformat(),
    }
