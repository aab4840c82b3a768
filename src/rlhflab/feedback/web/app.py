"""The labeling app: a FastAPI service over the feedback store.

People open a personal sign-in link (a one-time code, exchanged by a POST for a session
cookie), then answer queries one at a time: two clips (or two responses) side by side, or a
ranking, a 1–7 rating, a critique, a correction. Each query is leased to one annotator at a
time; a lease expires and the query goes to someone else. The left/right (or ranking)
display order is randomised per lease and recorded. Tokens and sessions are looked up in the
store on every request, so disabling or rotating an annotator takes effect at once. All
model output and annotator text reaches the page as JSON and is inserted with
`textContent`; server-rendered pages are Jinja2 templates with autoescaping, and the
guidelines' markdown is rendered with raw HTML disabled. The JSON API, with every status it
returns and its one error shape, is documented at /openapi.json.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qs

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markdown_it import MarkdownIt
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from rlhflab.feedback.agreement import annotator_report, gold_scores
from rlhflab.feedback.dawid_skene import dawid_skene
from rlhflab.feedback.leases import LeaseError
from rlhflab.feedback.schema import PAIR_KINDS, AnnotatorRow, lease_token_of
from rlhflab.feedback.store import FeedbackStore
from rlhflab.feedback.web.schemas import (
    MAX_ID,
    Acknowledged,
    Answer,
    AuditEntry,
    CreatedAnnotator,
    JudgementOut,
    Me,
    NewAnnotator,
    NextQuery,
    Relabel,
    Segments,
    errors,
)

STATIC = Path(__file__).parent / "static"
TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
)
COOKIE = "rlhflab_session"
CHOICES = ("left", "right", "equal", "cant_tell")
FLIP = {"left": "right", "right": "left", "equal": "equal", "cant_tell": "cant_tell"}
NEXT_PAGES = ("/", "/admin")  # where a sign-in may lead (never an outside address)
Id = Annotated[int, PathParam(ge=1, le=MAX_ID)]
bearer = HTTPBearer(auto_error=False, description="an annotator's token (for scripts)")
session_cookie = APIKeyCookie(name=COOKIE, auto_error=False, description="a browser session")


class MaxBodySize:
    """ASGI middleware: refuse request bodies over `limit` bytes with 413, before the app
    reads them."""

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
    body = json.dumps({"detail": f"request body larger than {limit} bytes", "errors": []}).encode()
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def render_markdown(text: str) -> str:
    """Markdown → HTML with raw HTML disabled (escaped) and unsafe link schemes refused."""
    return MarkdownIt("commonmark", {"html": False}).render(text)


@dataclass
class Ctx:
    """What the routes share: the store, the lease length, the randomness, the public URL."""

    store: FeedbackStore
    lease_seconds: float
    rng: np.random.Generator
    public_url: str
    secure_cookies: bool
    rng_lock: threading.Lock = field(default_factory=threading.Lock)

    def request_rng(self) -> np.random.Generator:
        """A generator for one request, seeded from the app's: request threads never share one
        (a numpy Generator is not thread-safe), and a seeded app stays reproducible."""
        with self.rng_lock:
            return np.random.default_rng(self.rng.integers(2**63))

    def annotator(
        self,
        creds: HTTPAuthorizationCredentials | None = Depends(bearer),
        session: str | None = Depends(session_cookie),
    ) -> AnnotatorRow:
        """Who is asking: a Bearer token, else the session cookie; read from the store each time.
        (A dependency of the routes that are not hot; `/api/next` and `/api/answer` call it in
        their own worker thread: `in_thread`.)"""
        if creds is not None:
            row = self.store.annotator_by_token(creds.credentials)
            why = "unknown, rotated or disabled token"
        elif session:
            row = self.store.annotator_by_session(session)
            why = "your session ended: open your personal sign-in link again"
        else:
            row, why = None, "no token: open your personal sign-in link, or send a Bearer token"
        if row is None:
            raise HTTPException(401, why, headers={"www-authenticate": "Bearer"})
        return row

    async def in_thread(self, work, creds, session, *args):
        """`work(who, *args)` for the annotator the credentials name, in one hop to the thread
        pool — the store lookup of who is asking and the work share it — where a sync dependency
        and a sync route would take one hop each, and the response's validation a third."""

        def both():
            return work(self.annotator(creds, session), *args)

        return await run_in_threadpool(both)

    def admin(self, creds=Depends(bearer), session=Depends(session_cookie)) -> AnnotatorRow:
        who = self.annotator(creds, session)
        if not who.is_admin:
            raise HTTPException(403, "admin only")
        return who

    def link(self, code: str, next_page: str = "/") -> str:
        suffix = "" if next_page == "/" else f"&next={next_page}"
        return f"{self.public_url.rstrip('/')}/login?code={code}{suffix}"


APP_SETTINGS = "RLHFLAB_LABEL_APP"  # `rlhflab label --workers N` passes create_app's arguments here


def app_from_environment() -> FastAPI:
    """The app as each worker of `rlhflab label --workers N` builds it: `create_app` with the
    arguments (JSON) in the environment variable `APP_SETTINGS`."""
    settings = os.environ.get(APP_SETTINGS)
    if not settings:
        raise RuntimeError(f"{APP_SETTINGS} is not set: start the app with `rlhflab label`")
    return create_app(**json.loads(settings))


def create_app(
    store_url: str,
    lease_seconds: float = 300.0,
    max_body: int = 256 * 1024,
    seed: int | None = None,
    public_url: str = "http://127.0.0.1:8000",
    secure_cookies: bool = False,
) -> FastAPI:
    """The app over the store at `store_url`. `public_url` is the address people reach it at
    (links are built from it, never from a request's Host header); `secure_cookies` marks the
    session cookie Secure, for HTTPS deployments."""
    store = FeedbackStore(store_url)
    ctx = Ctx(store, lease_seconds, np.random.default_rng(seed), public_url, secure_cookies)
    app = FastAPI(
        title="rlhflab labeling app",
        description="Judge queries from an RLHF run's feedback store. Every error has the "
        "shape `ErrorBody`: a `detail` string, and for 422 the invalid fields in `errors`.",
        version="2",
    )
    app.add_middleware(MaxBodySize, limit=max_body)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.state.store = store
    _error_handlers(app)
    _pages(app, ctx)
    _sign_in(app, ctx)
    _labeling_api(app, ctx)
    _segment_api(app, ctx)
    _judgement_api(app, ctx)
    _admin_api(app, ctx)
    return app


def _error_handlers(app: FastAPI) -> None:
    """One error shape for every status: {"detail": str, "errors": [...]}."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        status, headers = exc.status_code, dict(exc.headers or {})
        detail = str(exc.detail)
        if status == 400:  # a body that is not JSON at all: malformed, like any other
            status, detail = 422, f"malformed request: {detail.lower()}"
        if status == 405:  # every method the path has, not just those of the first route
            headers["allow"] = ", ".join(_methods(app, request.scope))
        return JSONResponse({"detail": detail, "errors": []}, status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        found = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg")), "type": e["type"]}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in found)
        return JSONResponse({"detail": detail or "malformed request", "errors": found}, 422)

    @app.exception_handler(ValueError)
    async def bad_value(request: Request, exc: ValueError):
        return JSONResponse({"detail": str(exc), "errors": []}, 422)


def _methods(app: FastAPI, scope) -> list[str]:
    from starlette.routing import Match

    found: set[str] = set()
    for route in app.router.routes:
        if route.matches(scope)[0] != Match.NONE:
            found |= set(getattr(route, "methods", None) or ())
    return sorted(found)


def _pages(app: FastAPI, ctx: Ctx) -> None:
    @app.get("/", include_in_schema=False)
    def label_page():
        return FileResponse(STATIC / "label.html")

    @app.get("/admin", include_in_schema=False)
    def admin_page():
        return FileResponse(STATIC / "admin.html")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon():
        return FileResponse(STATIC / "favicon.ico", media_type="image/x-icon")

    @app.get("/guidelines", include_in_schema=False)
    def guidelines():
        text = ctx.store.setting("guidelines", "No guidelines were given for this run.") or ""
        body = Markup(render_markdown(text))
        return HTMLResponse(TEMPLATES.get_template("guidelines.html").render(body=body))


def _sign_in(app: FastAPI, ctx: Ctx) -> None:
    """GET /login shows a form (link previews that fetch it use nothing up); its POST spends
    the one-time code (or checks a token) and sets a session cookie."""

    @app.get("/login", include_in_schema=False)
    def login_form(code: str = "", token: str = "", next: str = "/"):
        page = TEMPLATES.get_template("login.html")
        dest = next if next in NEXT_PAGES else "/"
        return HTMLResponse(page.render(code=code[:200], token=token[:200], next=dest))

    @app.post("/login", include_in_schema=False)
    async def login(request: Request):
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        code, token = form.get("code", [""])[0], form.get("token", [""])[0]
        who = ctx.store.redeem_login_code(code) if code else None
        if who is None and token:
            who = ctx.store.annotator_by_token(token)
        if who is None:
            page = TEMPLATES.get_template("login.html").render(failed=True, next="/")
            return HTMLResponse(page, status_code=401)
        dest = form.get("next", ["/"])[0]
        resp = RedirectResponse(dest if dest in NEXT_PAGES else "/", status_code=303)
        resp.set_cookie(
            COOKIE,
            ctx.store.new_session(who.name),
            max_age=30 * 86400,
            httponly=True,
            samesite="strict",
            secure=ctx.secure_cookies,
        )
        return resp

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request):
        if sid := request.cookies.get(COOKIE):
            ctx.store.end_session(sid)
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(COOKIE)
        return resp


def _labeling_api(app: FastAPI, ctx: Ctx) -> None:
    store = ctx.store

    @app.get("/api/me", response_model=Me, responses=errors(401))
    def me(who: AnnotatorRow = Depends(ctx.annotator)):
        done, open_ = store.progress(who.name)
        state = store.run_state()
        return Me(name=who.name, admin=who.is_admin, done=done, open=open_, run_state=state)

    @app.post(
        "/api/next",
        response_model=NextQuery,
        response_model_exclude_none=True,
        responses={204: {"description": "nothing to judge right now (or the run is over)"}}
        | errors(401),
    )
    async def next_query(
        creds: HTTPAuthorizationCredentials | None = Depends(bearer),
        session: str | None = Depends(session_cookie),
    ):
        """Lease the next query (or the one already leased), in a randomised display order.
        (Progress is `/api/me`'s: counting it here cost a query per judgement.)"""
        return await ctx.in_thread(lease_next, creds, session)

    def lease_next(who: AnnotatorRow):
        leased = store.lease_next(who.name, ctx.lease_seconds, ctx.request_rng())
        if leased is None:
            return Response(status_code=204)
        q, lease = leased
        return {
            "query_id": q.id,
            "kind": q.kind,
            "prompt": q.payload.get("prompt"),
            "parts": q.payload.get("parts"),
            "question": q.payload.get("question"),
            "items": _shown_items(store, q, lease.order),
            "lease_seconds": ctx.lease_seconds,
            "lease": lease_token_of(lease),
        }

    @app.post(
        "/api/answer",
        status_code=201,
        response_model=Acknowledged,
        responses=errors(401, 409, 413, 422),
    )
    async def answer(
        a: Answer,
        creds: HTTPAuthorizationCredentials | None = Depends(bearer),
        session: str | None = Depends(session_cookie),
    ):
        """Answer the leased query (quoting its lease token); stored in the query's own order."""
        return await ctx.in_thread(store_answer, creds, session, a)

    def store_answer(who: AnnotatorRow, a: Answer):
        q = store.query(a.query_id) if a.parts is not None else None
        if q is not None and a.parts is not None:  # process feedback: one per part asked for
            _check_parts(q, len(a.parts))
        try:
            jid = store.answer_lease(
                who.name, a.query_id, lambda kind, order: _stored_answer(kind, a, order), a.lease
            )
        except LeaseError as exc:
            raise HTTPException(409, str(exc)) from None
        return {"judgement_id": jid}


def _segment_api(app: FastAPI, ctx: Ctx) -> None:
    store = ctx.store

    @app.get(
        "/api/queries/{query_id}/segments",
        response_model=Segments,
        responses=errors(401, 403, 404, 422),
    )
    def segments(query_id: Id, who: AnnotatorRow = Depends(ctx.annotator)):
        """Observations and actions of a leased segment query (two; one of a clip rating), in
        shown order (for scripts)."""
        lease = store.lease(query_id)
        if lease is None or lease.annotator != who.name:
            raise HTTPException(403, f"query {query_id} is not leased to you")
        q = store.query(query_id)
        if q is None or q.left is None:
            kind = q.kind if q is not None else "missing"
            raise HTTPException(404, f"query {query_id} has no segments (it is a {kind} query)")
        segs = [row.to_segment() for row in (q.left, q.right) if row is not None]
        shown = [segs[i] for i in lease.order]
        return {"items": [{"obs": g.obs.tolist(), "actions": g.actions.tolist()} for g in shown]}

    @app.get(
        "/api/clips/{segment_id}",
        response_class=Response,
        responses={200: {"content": {"video/mp4": {}, "image/gif": {}}, "description": "a clip"}}
        | errors(401, 403, 404, 422),
    )
    def clip(segment_id: Id, who: AnnotatorRow = Depends(ctx.annotator)):
        """A clip of a segment in a query you lease or have judged (MP4, or GIF in old runs)."""
        if not who.is_admin and not store.segment_visible_to(who.name, segment_id):
            raise HTTPException(403, f"segment {segment_id} is not in a query leased to you")
        found = store.clip(segment_id)
        if found is None:
            raise HTTPException(404, f"no clip for segment {segment_id}")
        mime, data = found
        return Response(data, media_type=mime, headers={"cache-control": "private, max-age=3600"})


def _judgement_api(app: FastAPI, ctx: Ctx) -> None:
    store = ctx.store

    @app.get("/api/judgements", response_model=list[JudgementOut], responses=errors(401))
    def my_judgements(who: AnnotatorRow = Depends(ctx.annotator)):
        return [_judgement_json(r) for r in store.judgement_rows(who.name)]

    @app.get(
        "/api/judgements/{judgement_id}",
        response_model=JudgementOut,
        responses=errors(401, 403, 404, 422),
    )
    def one_judgement(judgement_id: Id, who: AnnotatorRow = Depends(ctx.annotator)):
        return _judgement_json(_own(store, judgement_id, who))

    @app.patch(
        "/api/judgements/{judgement_id}",
        response_model=JudgementOut,
        responses=errors(401, 403, 404, 409, 413, 422),
    )
    def change_judgement(
        judgement_id: Id, change: Relabel, who: AnnotatorRow = Depends(ctx.annotator)
    ):
        """Correct a pairwise answer (yours; an admin may correct anyone's, and every change
        is kept in the audit log). In stored orientation, as GET shows it."""
        row = _own(store, judgement_id, who)
        if row.query.kind not in PAIR_KINDS:
            raise HTTPException(409, "only pairwise judgements can be relabelled")
        store.relabel(judgement_id, change.choice, actor=who.name)
        return _judgement_json(store.judgement_row(judgement_id))


def _dawid_skene_accuracy(rows: list[dict]) -> dict[str, float]:
    """Each annotator's Dawid–Skene accuracy on the pairs judged more than once ({} if none)."""
    try:
        ds = dawid_skene([(r["query_id"], r["annotator"], r["label"]) for r in rows])
    except ValueError:
        return {}
    return {name: ds.accuracy(name) for name in ds.confusion}


def _admin_api(app: FastAPI, ctx: Ctx) -> None:
    store = ctx.store

    @app.get("/api/admin/stats", responses=errors(401, 403))
    def stats(who: AnnotatorRow = Depends(ctx.admin)):
        """Per annotator: counts, agreement with consensus, tie/can't-tell rates, position bias,
        time, and gold-question accuracy over time; κ and α over queries judged twice;
        Dawid–Skene accuracy; and the reward model's reliability estimates (β, flags)."""
        rows = [
            {
                "query_id": r.query_id,
                "annotator": r.annotator,
                "label": r.label,
                "shown_swapped": r.shown_swapped,
                "seconds": r.seconds,
            }
            for r in store.judgement_rows()
            if r.query.kind in PAIR_KINDS
        ]
        report = annotator_report(rows) | {"queries": store.count_queries()}
        gold_rate = float(store.setting("gold_rate", "0") or 0)
        return report | {
            "gold": gold_scores(store.gold_answers()),
            "gold_rate": gold_rate,
            "dawid_skene": _dawid_skene_accuracy(rows),
            "reliability": json.loads(store.setting("annotator_estimates") or "[]"),
        }

    @app.get("/api/admin/audit", response_model=list[AuditEntry], responses=errors(401, 403))
    def audit(who: AnnotatorRow = Depends(ctx.admin)):
        """Changes made to judgements and annotators: who, when, what (before and after)."""
        return [
            {
                "at": r.at.isoformat(),
                "actor": r.actor,
                "action": r.action,
                "subject": r.subject,
                "detail": r.detail,
            }
            for r in store.audit_rows()
        ]

    @app.post(
        "/api/admin/annotators",
        status_code=201,
        response_model=CreatedAnnotator,
        responses=errors(401, 403, 409, 413, 422),
    )
    def add_annotator(new: NewAnnotator, who: AnnotatorRow = Depends(ctx.admin)):
        """Create an annotator; the link (from the configured public URL) signs in once."""
        try:
            token = store.add_annotator(new.name, new.admin)
        except ValueError as exc:
            raise HTTPException(409, str(exc)) from None
        name = new.name.strip()
        store.audit(who.name, "add", f"annotator {name}", {"admin": new.admin})
        link = ctx.link(store.login_code(name), "/admin" if new.admin else "/")
        return {"name": name, "token": token, "link": link}


def _check_parts(q, n: int) -> None:
    """409 unless the query asks for exactly n part judgements."""
    asked = (q.payload or {}).get("parts")
    if asked != n:
        what = f"{asked} parts" if asked else "no parts"
        raise HTTPException(409, f"query {q.id} asks for {what}, got {n} in 'parts'")


def _shown_items(store: FeedbackStore, q, order: list[int]) -> list[dict]:
    if q.left_id is None:
        responses = q.payload.get("responses", [])
        return [{"text": responses[i]} for i in order]
    ids = [q.left_id, q.right_id]
    info = store.clip_info(ids)
    items = []
    for i in order:
        c = info.get(ids[i])
        items.append({"clip": f"/api/clips/{ids[i]}", **c} if c else {"clip": None})
    return items


def _own(store: FeedbackStore, judgement_id: int, who: AnnotatorRow):
    row = store.judgement_row(judgement_id)
    if row is None or row.query.gold is not None:
        raise HTTPException(404, f"no judgement {judgement_id}")
    if row.annotator != who.name and not who.is_admin:
        raise HTTPException(403, "that judgement belongs to another annotator")
    return row


def _stored_answer(kind: str, a: Answer, order: list[int]) -> tuple[str, dict]:
    """Map an answer in shown order to the stored (label, payload); 409 when it does not fit
    the leased query (the body itself was valid)."""
    if kind in PAIR_KINDS:
        if a.choice is None:
            raise HTTPException(409, f"a {kind} query needs 'choice' (one of {', '.join(CHOICES)})")
        swapped = order != sorted(order)
        stored = [FLIP[c] if swapped else c for c in [a.choice, *(a.parts or [])]]
        return stored[0], {} if a.parts is None else {"parts": stored[1:]}
    if kind == "ranking":
        if a.ranking is None or sorted(a.ranking) != list(range(len(order))):
            last = len(order) - 1
            raise HTTPException(
                409, f"a ranking query needs 'ranking': a permutation of 0..{last}, best first"
            )
        return kind, {"order": [order[p] for p in a.ranking]}
    if kind in ("rating", "clip_rating"):
        if a.rating is None:
            raise HTTPException(409, "a rating query needs 'rating' from 1 to 7")
        return kind, {"rating": a.rating}
    if a.text is None or not a.text.strip():
        raise HTTPException(409, f"a {kind} query needs non-empty 'text'")
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
