"""The durable feedback store: segments, clips, queries, judgements, annotators and leases.

SQLAlchemy over SQLite in the run directory by default (write-ahead log,
one transaction per write, so a judgement that was acknowledged survives a SIGKILL of
the writer); any SQLAlchemy URL — a Postgres one, say — works too. The training loop
and the labeling app meet only here.

Query kinds: `segments` (two trajectory segments, optionally with clips), `text_pair`
(a prompt and two responses), `ranking` (K responses), `rating` (one response, 1–7),
`critique` (free text about one response), `correction` (an edited response).
Pairwise answers are stored in the query's own orientation; `shown_swapped` records
whether the annotator saw the two sides the other way round.
"""

from __future__ import annotations

import hashlib
import io
import secrets
import threading
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import numpy as np
from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    func,
    inspect,
    select,
    update,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from rlhflab.feedback.clips import GIF, MP4, Clip
from rlhflab.types import Comparison, Judgement, Query, Segment

ClipLike = Clip | bytes

QUERY_KINDS = ("segments", "text_pair", "ranking", "rating", "critique", "correction")
PAIR_KINDS = ("segments", "text_pair")
MAX_TEXT = 20_000  # characters in one prompt, response or answer: the web API's limit, and import's
MAX_RESPONSES = 64  # responses in one ranking query


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)  # SQLite returns naive datetimes


def _pack(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(a), allow_pickle=False)
    return buf.getvalue()


def _unpack(b: bytes) -> np.ndarray:
    return np.load(io.BytesIO(b), allow_pickle=False)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Base(DeclarativeBase):
    pass


class SegmentRow(Base):
    __tablename__ = "segments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    obs: Mapped[bytes] = mapped_column(LargeBinary)
    actions: Mapped[bytes] = mapped_column(LargeBinary)
    judged_rewards: Mapped[bytes] = mapped_column(
        "true_rewards", LargeBinary
    )  # column name kept: older stores open
    env_steps: Mapped[int] = mapped_column(Integer, default=0)
    absorbing: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)

    def to_segment(self) -> Segment:
        return Segment(
            _unpack(self.obs),
            _unpack(self.actions),
            _unpack(self.judged_rewards),
            self.env_steps,
            absorbing=None if self.absorbing is None else _unpack(self.absorbing),
        )


class ClipRow(Base):
    """A rendered clip of one segment (H.264 MP4, or GIF in older stores), for people to watch."""

    __tablename__ = "clips"
    segment_id: Mapped[int] = mapped_column(ForeignKey("segments.id"), primary_key=True)
    mime: Mapped[str] = mapped_column(String(40), default="image/gif")
    data: Mapped[bytes] = mapped_column(LargeBinary)
    frames: Mapped[int | None] = mapped_column(Integer, nullable=True)
    fps: Mapped[float | None] = mapped_column(Float, nullable=True)


class QueryRow(Base):
    __tablename__ = "queries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), default="segments")
    left_id: Mapped[int | None] = mapped_column(ForeignKey("segments.id"), nullable=True)
    right_id: Mapped[int | None] = mapped_column(ForeignKey("segments.id"), nullable=True)
    payload: Mapped[dict] = mapped_column(JSON, default=dict)  # text queries: prompt, responses
    overlap: Mapped[int] = mapped_column(
        Integer, default=1
    )  # judgements wanted from distinct annotators
    env_steps: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    # withdrawn when the run ended before it was answered: no longer served, answers get 409
    withdrawn: Mapped[bool | None] = mapped_column(Boolean, nullable=True, default=False)
    # a gold question: the known answer (stored orientation); never counted as a run's label
    gold: Mapped[str | None] = mapped_column(String(16), nullable=True)
    left: Mapped[SegmentRow | None] = relationship(foreign_keys=[left_id], lazy="joined")
    right: Mapped[SegmentRow | None] = relationship(foreign_keys=[right_id], lazy="joined")

    def segments(self) -> tuple[Segment, Segment]:
        """The (left, right) segments of a segment query."""
        if self.left is None or self.right is None:
            raise ValueError(f"query {self.id} ({self.kind}) has no segments")
        return self.left.to_segment(), self.right.to_segment()


class JudgementRow(Base):
    __tablename__ = "judgements"
    __table_args__ = (
        UniqueConstraint("query_id", "annotator", name="one_judgement_per_annotator"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    query_id: Mapped[int] = mapped_column(ForeignKey("queries.id"), index=True)
    annotator: Mapped[str] = mapped_column(String(200), default="synthetic", index=True)
    label: Mapped[str] = mapped_column(
        String(16)
    )  # left/right/equal/cant_tell, or the kind of a text answer
    payload: Mapped[dict] = mapped_column(
        JSON, default=dict
    )  # ranking order, rating, critique or edited text
    shown_swapped: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    query: Mapped[QueryRow] = relationship(lazy="joined")


class AnnotatorRow(Base):
    __tablename__ = "annotators"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    disabled: Mapped[bool | None] = mapped_column(Boolean, nullable=True, default=False)


class SessionRow(Base):
    """A browser session (its cookie holds the session id, never the annotator's token)."""

    __tablename__ = "sessions"
    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    annotator: Mapped[str] = mapped_column(String(200), index=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LoginCodeRow(Base):
    """A one-time login code: the personal link carries it; the first sign-in uses it up."""

    __tablename__ = "login_codes"
    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    annotator: Mapped[str] = mapped_column(String(200), index=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AuditRow(Base):
    """Who changed what: judgements changed through the API, annotators added, disabled, rotated."""

    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(40))
    subject: Mapped[str] = mapped_column(String(200))  # "judgement 12", "annotator alice"
    detail: Mapped[dict] = mapped_column(JSON, default=dict)


class LeaseRow(Base):
    """At most one live lease per query: the annotator who is answering it now."""

    __tablename__ = "leases"
    query_id: Mapped[int] = mapped_column(ForeignKey("queries.id"), primary_key=True)
    annotator: Mapped[str] = mapped_column(String(200), index=True)
    order: Mapped[list] = mapped_column(JSON)  # shown position → stored index (a permutation)
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SettingRow(Base):
    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


def lease_token_of(lease: LeaseRow) -> str:
    """Identifies one issue of a lease (and so its display order): the answer must quote it."""
    return hashlib.sha256(
        f"{lease.query_id}:{lease.annotator}:{_aware(lease.issued_at).isoformat()}:{lease.order}".encode()
    ).hexdigest()[:16]


RUN_STATES = ("running", "waiting", "over")
LIVE = QueryRow.withdrawn.is_not(True)  # not withdrawn (NULL in stores older than the column)
NOT_GOLD = QueryRow.gold.is_(None)


def _judged_count():
    return (
        select(func.count(JudgementRow.id))
        .where(JudgementRow.query_id == QueryRow.id)
        .scalar_subquery()
    )


def sqlite_url(path) -> str:
    return f"sqlite:///{path}"


class LeaseError(Exception):
    """An answer to a query the annotator does not (or no longer) hold."""


def _open_to(annotator: str, now: datetime) -> tuple:
    """Conditions for a query that `annotator` may be given: short of its overlap, not judged by
    them, and not under someone else's live lease."""
    mine_done = select(JudgementRow.query_id).where(JudgementRow.annotator == annotator)
    busy = select(LeaseRow.query_id).where(
        LeaseRow.expires_at > now, LeaseRow.annotator != annotator
    )
    return (
        _judged_count() < QueryRow.overlap,
        QueryRow.id.not_in(mine_done),
        QueryRow.id.not_in(busy),
        LIVE,
        NOT_GOLD,
    )


def _gold_open_to(annotator: str, now: datetime) -> tuple:
    """Gold questions the annotator has not answered and nobody else holds (overlap ignored)."""
    return (QueryRow.gold.is_not(None), LIVE, *_open_to(annotator, now)[1:3])


def _add_missing_columns(engine) -> None:
    """Stores written by an older rlhflab lack newer nullable columns: add them in place."""
    with engine.connect() as conn:
        inspector = inspect(conn)
        missing = [
            (table.name, column)
            for table in Base.metadata.sorted_tables
            if inspector.has_table(table.name)
            for have in [{c["name"] for c in inspector.get_columns(table.name)}]
            for column in table.columns
            if column.name not in have and column.nullable
        ]
    if missing:
        with engine.begin() as conn:
            for table, column in missing:
                kind = column.type.compile(engine.dialect)
                conn.exec_driver_sql(f'ALTER TABLE "{table}" ADD COLUMN "{column.name}" {kind}')


class FeedbackStore:
    def __init__(self, url: str):
        self.url = url
        self.engine = create_engine(url, future=True)
        self.sqlite = self.engine.dialect.name == "sqlite"
        self.reader = self.engine
        self._write_lock = threading.Lock()
        if (
            self.sqlite
        ):  # writers take the lock at BEGIN; readers (a second engine) never block on WAL
            event.listen(self.engine, "connect", _sqlite_connect)
            event.listen(self.engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
            self.reader = create_engine(url, future=True)
            event.listen(self.reader, "connect", _sqlite_pragmas)
        Base.metadata.create_all(self.engine)
        _add_missing_columns(self.engine)

    @contextmanager
    def _write(self):
        """One write transaction; on SQLite it takes the write lock at BEGIN, so read-then-write is
        atomic.

        Writers in this process queue on a lock first: a FIFO wait instead of SQLite's
        sleep-and-retry."""
        with self._write_lock, Session(self.engine, expire_on_commit=False) as s, s.begin():
            yield s

    def _read(self) -> Session:
        return Session(self.reader)

    # -- queries ----------------------------------------------------------------------
    def add_query(
        self,
        left: Segment,
        right: Segment,
        meta: dict | None = None,
        clips: tuple[ClipLike, ClipLike] | None = None,
        overlap: int = 1,
        gold: str | None = None,
    ) -> int:
        """A pair of segments (and optionally their rendered clips)."""
        pairs, clip_list = [(left, right)], None if clips is None else [clips]
        return self.add_queries(
            pairs, clip_list, overlap, meta, gold=None if gold is None else [gold]
        )[0]

    def add_queries(
        self,
        pairs: list[tuple[Segment, Segment]],
        clips: list[tuple[ClipLike, ClipLike]] | None = None,
        overlap: int = 1,
        meta: dict | None = None,
        gold: list[str] | None = None,
    ) -> list[int]:
        """Pairs of segments (with their clips, if rendered), all in one transaction.

        A clip is a `clips.Clip` (bytes, type, frame count and rate) or encoded bytes (MP4 or
        GIF, recognised by their header). A pair of identical segments is refused: nobody can
        prefer one of two equal things. `gold` gives each pair a known answer (gold questions)."""
        for left, right in pairs:
            if len(left) != len(right):
                raise ValueError(
                    f"a query needs equal-length segments, got {len(left)} and {len(right)}"
                )
            if np.array_equal(left.obs, right.obs) and np.array_equal(left.actions, right.actions):
                raise ValueError("a query needs two different segments, got the same one twice")
        if gold is not None and len(gold) != len(pairs):
            raise ValueError(f"{len(pairs)} pairs but {len(gold)} gold answers")
        ids = []
        with self._write() as s:
            for k, (left, right) in enumerate(pairs):
                rows = [
                    SegmentRow(
                        obs=_pack(g.obs),
                        actions=_pack(g.actions),
                        judged_rewards=_pack(g.judged_rewards),
                        env_steps=g.env_steps,
                        absorbing=None if g.absorbing is None else _pack(g.absorbing),
                    )
                    for g in (left, right)
                ]
                s.add_all(rows)
                s.flush()
                if clips is not None:
                    s.add_all(_clip_row(r.id, c) for r, c in zip(rows, clips[k]))
                q = QueryRow(
                    kind="segments",
                    left_id=rows[0].id,
                    right_id=rows[1].id,
                    env_steps=left.env_steps,
                    payload=meta or {},
                    overlap=overlap,
                    gold=None if gold is None else Judgement(gold[k]).value,
                )
                s.add(q)
                s.flush()
                ids.append(q.id)
        return ids

    def add_text_query(
        self,
        kind: str,
        prompt: str,
        responses: list[str],
        overlap: int = 1,
        meta: dict | None = None,
        gold: str | None = None,
    ) -> int:
        """A text query: `text_pair` (2 responses), `ranking` (K ≥ 2), or `rating`/`critique`/
        `correction` (1). `gold` makes a text_pair a gold question with that known answer."""
        expected = {
            "text_pair": (2, 2),
            "ranking": (2, MAX_RESPONSES),
            "rating": (1, 1),
            "critique": (1, 1),
            "correction": (1, 1),
        }
        if kind not in expected:
            raise ValueError(f"unknown text query kind '{kind}' (use {', '.join(expected)})")
        if gold is not None and kind != "text_pair":
            raise ValueError("only text_pair (and segment) queries can be gold questions")
        lo, hi = expected[kind]
        if (
            not lo <= len(responses) <= hi
            or not all(isinstance(r, str) for r in responses)
            or not isinstance(prompt, str)
        ):
            raise ValueError(
                f"a {kind} query needs a prompt and {lo if lo == hi else f'{lo}–{hi}'} response "
                f"strings, got {len(responses)}"
            )
        with self._write() as s:
            q = QueryRow(
                kind=kind,
                payload={"prompt": prompt, "responses": list(responses), **(meta or {})},
                overlap=overlap,
                gold=None if gold is None else Judgement(gold).value,
            )
            s.add(q)
            s.flush()
            return q.id

    def add_text_feedback(self, records: list, annotator: str) -> int:
        """Judged text queries (`exchange.TextFeedback`), all in one transaction: all or nothing."""
        with self._write() as s:
            for r in records:
                q = QueryRow(
                    kind=r.kind, payload={"prompt": r.prompt, "responses": list(r.responses)}
                )
                s.add(q)
                s.flush()
                s.add(
                    JudgementRow(
                        query_id=q.id, annotator=annotator, label=r.label, payload=r.payload
                    )
                )
        return len(records)

    def add_judged_pairs(self, pairs: list[tuple[Segment, Segment]], records: list) -> int:
        """Imported judgements of segment pairs (`exchange.SegmentFeedback`), in one transaction."""
        with self._write() as s:
            for (left, right), r in zip(pairs, records):
                rows = [
                    SegmentRow(
                        obs=_pack(g.obs),
                        actions=_pack(g.actions),
                        judged_rewards=_pack(g.judged_rewards),
                        env_steps=g.env_steps,
                    )
                    for g in (left, right)
                ]
                s.add_all(rows)
                s.flush()
                q = QueryRow(left_id=rows[0].id, right_id=rows[1].id, env_steps=left.env_steps)
                s.add(q)
                s.flush()
                self._insert_judgement(
                    s, q.id, r.choice, r.annotator, r.seconds, None, r.shown_swapped
                )
        return len(records)

    def segment(self, segment_id: int) -> Segment | None:
        with self._read() as s:
            row = s.get(SegmentRow, segment_id)
            return row.to_segment() if row else None

    def clip_ids(self, segment_ids: list[int]) -> set[int]:
        """Which of these segments have a rendered clip (without loading the clips)."""
        with self._read() as s:
            return set(
                s.scalars(select(ClipRow.segment_id).where(ClipRow.segment_id.in_(segment_ids)))
            )

    def segment_visible_to(self, annotator: str, segment_id: int) -> bool:
        """Whether the annotator leases, or has judged, a query that shows this segment."""
        with self._read() as s:
            shows = select(QueryRow.id).where(
                (QueryRow.left_id == segment_id) | (QueryRow.right_id == segment_id)
            )
            leased = select(LeaseRow.query_id).where(
                LeaseRow.annotator == annotator, LeaseRow.query_id.in_(shows)
            )
            judged = select(JudgementRow.query_id).where(
                JudgementRow.annotator == annotator, JudgementRow.query_id.in_(shows)
            )
            either = leased.union(judged).subquery()
            return (s.scalar(select(func.count()).select_from(either)) or 0) > 0

    def clip(self, segment_id: int) -> tuple[str, bytes] | None:
        with self._read() as s:
            row = s.get(ClipRow, segment_id)
            return (row.mime, row.data) if row else None

    def clip_info(self, segment_ids: list[int]) -> dict[int, dict]:
        """Type, frame count and rate of these segments' clips (without loading the clips)."""
        with self._read() as s:
            rows = s.execute(
                select(ClipRow.segment_id, ClipRow.mime, ClipRow.frames, ClipRow.fps).where(
                    ClipRow.segment_id.in_(segment_ids)
                )
            )
            return {r[0]: {"mime": r[1], "frames": r[2], "fps": r[3]} for r in rows}

    def query(self, query_id: int) -> QueryRow | None:
        with self._read() as s:
            return s.get(QueryRow, query_id)

    # -- judgements ---------------------------------------------------------------------
    def add_judgement(
        self,
        query_id: int,
        judgement: Judgement | str,
        annotator: str = "synthetic",
        seconds: float | None = None,
        payload: dict | None = None,
        shown_swapped: bool | None = None,
    ) -> int:
        with self._write() as s:
            return self._insert_judgement(
                s, query_id, judgement, annotator, seconds, payload, shown_swapped
            )

    def add_judgements(
        self, items: list[tuple[int, Judgement | str]], annotator: str = "synthetic"
    ) -> list[int]:
        """Several (query id, judgement) answers by one annotator, in one transaction."""
        with self._write() as s:
            return [self._insert_judgement(s, qid, j, annotator) for qid, j in items]

    def _insert_judgement(
        self, s, query_id, judgement, annotator, seconds=None, payload=None, shown_swapped=None
    ) -> int:
        q = s.get(QueryRow, query_id)
        if q is None:
            raise KeyError(f"no query with id {query_id}")
        label = Judgement(judgement).value if q.kind in PAIR_KINDS else q.kind
        if q.kind not in PAIR_KINDS and judgement != q.kind:
            raise ValueError(
                f"query {query_id} is a {q.kind} query; its answer is a {q.kind}, not '{judgement}'"
            )
        row = JudgementRow(
            query_id=query_id,
            annotator=annotator,
            label=label,
            seconds=seconds,
            payload=payload or {},
            shown_swapped=shown_swapped,
        )
        s.add(row)
        s.flush()
        s.execute(delete(LeaseRow).where(LeaseRow.query_id == query_id))
        return row.id

    def count_judgements(self, annotator: str | None = None) -> int:
        """Judgements that count as the run's labels (answers to gold questions do not)."""
        with self._read() as s:
            stmt = (
                select(func.count(JudgementRow.id))
                .join(QueryRow, JudgementRow.query_id == QueryRow.id)
                .where(NOT_GOLD)
            )
            if annotator is not None:
                stmt = stmt.where(JudgementRow.annotator == annotator)
            return s.scalar(stmt) or 0

    def count_queries(self) -> int:
        with self._read() as s:
            return s.scalar(select(func.count(QueryRow.id)).where(NOT_GOLD)) or 0

    def count_unanswered(self) -> int:
        """Queries that still want judgements (fewer than their overlap), not withdrawn."""
        wanted = (_judged_count() < QueryRow.overlap, LIVE, NOT_GOLD)
        with self._read() as s:
            return s.scalar(select(func.count(QueryRow.id)).where(*wanted)) or 0

    def pending_queries(self) -> list[Query]:
        """Segment queries that no one has judged yet, oldest first."""
        with self._read() as s:
            judged = select(JudgementRow.query_id)
            rows = (
                s.scalars(
                    select(QueryRow)
                    .where(QueryRow.kind == "segments", QueryRow.id.not_in(judged), LIVE, NOT_GOLD)
                    .order_by(QueryRow.id)
                )
                .unique()
                .all()
            )
            return [Query(*r.segments(), r.id) for r in rows]

    def comparisons(self, after: int = 0) -> list[Comparison]:
        """Every judgement of a segment pair (with id > `after`) with its two segments, in the order
        they were given."""
        with self._read() as s:
            stmt = (
                select(JudgementRow)
                .join(QueryRow, JudgementRow.query_id == QueryRow.id)
                .where(QueryRow.kind == "segments", JudgementRow.id > after, NOT_GOLD)
                .order_by(JudgementRow.id)
            )
            rows = s.scalars(stmt).unique().all()
            return [
                Comparison(
                    r.query_id,
                    *r.query.segments(),
                    Judgement(r.label),
                    r.annotator,
                    {"seconds": r.seconds, "shown_swapped": r.shown_swapped},
                    r.id,
                )
                for r in rows
            ]

    def judgements(self) -> list[tuple[int, int, str, str]]:
        """(judgement id, query id, annotator, label) rows, in order."""
        with self._read() as s:
            rows = s.execute(
                select(
                    JudgementRow.id,
                    JudgementRow.query_id,
                    JudgementRow.annotator,
                    JudgementRow.label,
                ).order_by(JudgementRow.id)
            )
            return [(r[0], r[1], r[2], r[3]) for r in rows]

    def judgement_rows(
        self, annotator: str | None = None, gold: bool = False
    ) -> list[JudgementRow]:
        """Full judgement rows (with their queries), optionally one annotator's; answers to gold
        questions only when `gold` is true (and then only those)."""
        with self._read() as s:
            stmt = (
                select(JudgementRow)
                .join(QueryRow, JudgementRow.query_id == QueryRow.id)
                .where(QueryRow.gold.is_not(None) if gold else NOT_GOLD)
                .order_by(JudgementRow.id)
            )
            if annotator is not None:
                stmt = stmt.where(JudgementRow.annotator == annotator)
            return list(s.scalars(stmt).unique().all())

    def pair_judgement_records(self) -> list[dict]:
        """Every pairwise judgement as the plain record `agreement.annotator_report` reads."""
        return [
            {
                "query_id": r.query_id,
                "annotator": r.annotator,
                "label": r.label,
                "shown_swapped": r.shown_swapped,
                "seconds": r.seconds,
            }
            for r in self.judgement_rows()
            if r.query.kind in PAIR_KINDS
        ]

    def judgement_row(self, judgement_id: int) -> JudgementRow | None:
        with self._read() as s:
            return s.get(JudgementRow, judgement_id)

    def relabel(
        self,
        judgement_id: int,
        judgement: Judgement | str,
        payload: dict | None = None,
        actor: str | None = None,
    ) -> None:
        """Change a judgement; with `actor` (who changed it) an audit record is kept."""
        with self._write() as s:
            row = s.get(JudgementRow, judgement_id)
            if row is None:
                raise KeyError(f"no judgement with id {judgement_id}")
            if actor is not None:
                s.add(
                    AuditRow(
                        actor=actor,
                        action="relabel",
                        subject=f"judgement {judgement_id}",
                        detail={
                            "annotator": row.annotator,
                            "before": row.label,
                            "after": Judgement(judgement).value,
                        },
                    )
                )
            row.label = Judgement(judgement).value if row.query.kind in PAIR_KINDS else row.label
            if payload is not None:
                row.payload = payload
            counter = s.get(SettingRow, "relabels") or SettingRow(key="relabels", value="0")
            counter.value = str(
                int(counter.value) + 1
            )  # readers that cache judgements re-read when this changes
            s.add(counter)

    # -- leases: one query to one annotator at a time ---------------------------------------
    def lease_next(
        self, annotator: str, lease_seconds: float, rng: np.random.Generator
    ) -> tuple[QueryRow, LeaseRow] | None:
        """The annotator's live lease, or a new one on the oldest query they may answer; None if
        there is none.

        A query is open to an annotator who has not judged it, while it has fewer judgements than
        its overlap and no live lease held by someone else. Display order is randomised per
        lease."""
        now = _now()
        if self.run_state() == "over":
            return None
        gold_rate = float(self.setting("gold_rate", "0") or 0)
        with self._write() as s:
            mine = s.scalars(
                select(LeaseRow).where(LeaseRow.annotator == annotator).order_by(LeaseRow.issued_at)
            ).all()
            for lease in mine:
                if _aware(lease.expires_at) > now:
                    return s.get(QueryRow, lease.query_id), lease
            q = None
            if gold_rate > 0 and rng.random() < gold_rate:  # a gold question, mixed in at random
                q = self._first(s, _gold_open_to(annotator, now))
            q = q or self._first(s, _open_to(annotator, now))
            if q is None:
                return None
            n = 2 if q.kind in PAIR_KINDS else len(q.payload.get("responses", [None]))
            order = [int(i) for i in rng.permutation(n)]
            lease = s.get(LeaseRow, q.id)
            if lease is None:
                lease = LeaseRow(query_id=q.id)
                s.add(lease)
            lease.annotator, lease.order, lease.issued_at, lease.expires_at = (
                annotator,
                order,
                now,
                now + timedelta(seconds=lease_seconds),
            )
            s.flush()
            return q, lease

    def _first(self, s: Session, where: tuple) -> QueryRow | None:
        stmt = select(QueryRow).where(*where).order_by(QueryRow.id).limit(1)
        if not self.sqlite:
            stmt = stmt.with_for_update(skip_locked=True)
        return s.scalars(stmt).first()

    def lease(self, query_id: int) -> LeaseRow | None:
        with self._read() as s:
            return s.get(LeaseRow, query_id)

    def answer_lease(
        self,
        annotator: str,
        query_id: int,
        answer,
        lease_token: str,
        max_seconds: float = 3600.0,
    ) -> int:
        """Store an answer given through a lease, in one transaction.

        `lease_token` is the token issued with the lease (`lease_token_of`): an answer quoting
        another issue of the lease, or arriving after it expired, is refused. `answer(kind,
        order) -> (label, payload)` maps what the annotator was shown (display order `order`)
        to the stored orientation; it may raise to refuse the answer."""
        now = _now()
        with self._write() as s:
            lease = s.get(LeaseRow, query_id)
            if lease is None or lease.annotator != annotator:
                raise LeaseError(
                    f"query {query_id} is not leased to you (the lease expired and was "
                    "reassigned, the run is over, or it was never issued); ask for the next query"
                )
            if lease_token != lease_token_of(lease):
                raise LeaseError(
                    f"query {query_id} was leased again since you saw it (its display order "
                    "may differ); ask for the next query"
                )
            if _aware(lease.expires_at) <= now:
                raise LeaseError(f"your lease on query {query_id} expired; ask for the next query")
            q = s.get(QueryRow, query_id)
            if q.withdrawn:
                raise LeaseError(f"query {query_id} was withdrawn: the run is over")
            done = (
                s.scalar(
                    select(func.count(JudgementRow.id)).where(JudgementRow.query_id == query_id)
                )
                or 0
            )
            if q.gold is None and done >= q.overlap:
                raise LeaseError(
                    f"query {query_id} already has the {q.overlap} judgement(s) it needs"
                )
            label, payload = answer(q.kind, lease.order)
            seconds = min((now - _aware(lease.issued_at)).total_seconds(), max_seconds)
            swapped = lease.order != sorted(lease.order) if q.kind in PAIR_KINDS else None
            return self._insert_judgement(s, query_id, label, annotator, seconds, payload, swapped)

    def gold_answers(self) -> list[dict]:
        """Every answer to a gold question, in order: annotator, time, whether it was right."""
        with self._read() as s:
            rows = s.execute(
                select(
                    JudgementRow.annotator,
                    JudgementRow.created_at,
                    JudgementRow.label,
                    QueryRow.gold,
                )
                .join(QueryRow, JudgementRow.query_id == QueryRow.id)
                .where(QueryRow.gold.is_not(None))
                .order_by(JudgementRow.id)
            )
            return [
                {"annotator": a, "at": _aware(t), "label": label, "correct": label == gold}
                for a, t, label, gold in rows
            ]

    def progress(self, annotator: str) -> tuple[int, int]:
        """(judgements given, queries open to them now) for one annotator, in one read."""
        with self._read() as s:
            done = (
                s.scalar(
                    select(func.count(JudgementRow.id)).where(JudgementRow.annotator == annotator)
                )
                or 0
            )
            open_ = (
                s.scalar(select(func.count(QueryRow.id)).where(*_open_to(annotator, _now()))) or 0
            )
            return done, open_

    # -- annotators and settings ------------------------------------------------------------
    def add_annotator(self, name: str, is_admin: bool = False) -> str:
        """Create an annotator; returns their secret token (only its hash is stored)."""
        name = name.strip()
        if not name or len(name) > 200:
            raise ValueError("an annotator name must be 1–200 characters")
        token = secrets.token_urlsafe(24)
        with self._write() as s:
            if s.scalar(select(AnnotatorRow).where(AnnotatorRow.name == name)) is not None:
                raise ValueError(f"an annotator named '{name}' already exists")
            s.add(AnnotatorRow(name=name, token_hash=hash_token(token), is_admin=is_admin))
        return token

    def annotator_by_token(self, token: str) -> AnnotatorRow | None:
        """The enabled annotator holding this token, read from the store on every call."""
        with self._read() as s:
            return s.scalar(
                select(AnnotatorRow).where(
                    AnnotatorRow.token_hash == hash_token(token), AnnotatorRow.disabled.is_not(True)
                )
            )

    def annotator(self, name: str) -> AnnotatorRow | None:
        with self._read() as s:
            return s.scalar(select(AnnotatorRow).where(AnnotatorRow.name == name))

    def _annotator_for_change(self, s: Session, name: str) -> AnnotatorRow:
        row = s.scalar(select(AnnotatorRow).where(AnnotatorRow.name == name))
        if row is None:
            raise KeyError(f"no annotator named '{name}'")
        return row

    def _sign_out(self, s: Session, name: str) -> None:
        """End the annotator's sessions, unused login codes and leases (their queries go back)."""
        s.execute(delete(SessionRow).where(SessionRow.annotator == name))
        s.execute(delete(LoginCodeRow).where(LoginCodeRow.annotator == name))
        s.execute(delete(LeaseRow).where(LeaseRow.annotator == name))

    def set_disabled(self, name: str, disabled: bool = True, actor: str = "cli") -> None:
        """Disable (or enable) an annotator: their token, sessions and leases stop at once."""
        with self._write() as s:
            row = self._annotator_for_change(s, name)
            row.disabled = disabled
            if disabled:
                self._sign_out(s, name)
            action = "disable" if disabled else "enable"
            s.add(AuditRow(actor=actor, action=action, subject=f"annotator {name}"))

    def set_admin(self, name: str, is_admin: bool, actor: str = "cli") -> None:
        """Promote or demote an annotator; effective on their next request."""
        with self._write() as s:
            self._annotator_for_change(s, name).is_admin = is_admin
            action = "promote" if is_admin else "demote"
            s.add(AuditRow(actor=actor, action=action, subject=f"annotator {name}"))

    def rotate_token(self, name: str, actor: str = "cli") -> str:
        """A new token for the annotator; the old one, their sessions and codes stop at once."""
        token = secrets.token_urlsafe(24)
        with self._write() as s:
            row = self._annotator_for_change(s, name)
            row.token_hash = hash_token(token)
            self._sign_out(s, name)
            s.add(AuditRow(actor=actor, action="rotate", subject=f"annotator {name}"))
        return token

    def login_code(self, name: str, ttl_seconds: float = 7 * 86400) -> str:
        """A one-time login code for the annotator's personal link (only its hash is stored)."""
        code = secrets.token_urlsafe(18)
        with self._write() as s:
            self._annotator_for_change(s, name)
            expires = _now() + timedelta(seconds=ttl_seconds)
            s.add(LoginCodeRow(code_hash=hash_token(code), annotator=name, expires_at=expires))
        return code

    def redeem_login_code(self, code: str) -> AnnotatorRow | None:
        """The enabled annotator a live login code belongs to; the code is used up either way."""
        with self._write() as s:
            row = s.get(LoginCodeRow, hash_token(code))
            if row is None:
                return None
            s.delete(row)
            if _aware(row.expires_at) <= _now():
                return None
            return self._enabled_annotator(s, row.annotator)

    def new_session(self, name: str, ttl_seconds: float = 30 * 86400) -> str:
        sid = secrets.token_urlsafe(32)
        with self._write() as s:
            expires = _now() + timedelta(seconds=ttl_seconds)
            s.add(SessionRow(id_hash=hash_token(sid), annotator=name, expires_at=expires))
        return sid

    def annotator_by_session(self, sid: str) -> AnnotatorRow | None:
        """The enabled annotator of a live session, read from the store on every call."""
        with self._read() as s:
            row = s.get(SessionRow, hash_token(sid))
            if row is None or _aware(row.expires_at) <= _now():
                return None
            return self._enabled_annotator(s, row.annotator)

    @staticmethod
    def _enabled_annotator(s: Session, name: str) -> AnnotatorRow | None:
        """The annotator named `name` unless disabled (NULL in stores older than the column)."""
        return s.scalar(
            select(AnnotatorRow).where(
                AnnotatorRow.name == name, AnnotatorRow.disabled.is_not(True)
            )
        )

    def end_session(self, sid: str) -> None:
        with self._write() as s:
            s.execute(delete(SessionRow).where(SessionRow.id_hash == hash_token(sid)))

    def audit(self, actor: str, action: str, subject: str, detail: dict | None = None) -> None:
        with self._write() as s:
            s.add(AuditRow(actor=actor, action=action, subject=subject, detail=detail or {}))

    def audit_rows(self) -> list[AuditRow]:
        with self._read() as s:
            return list(s.scalars(select(AuditRow).order_by(AuditRow.id)))

    # -- the run's state, as annotators see it ---------------------------------------------
    def set_run_state(self, state: str) -> None:
        """`running`, `waiting` (RL paused for labels) or `over` (nothing more will be asked)."""
        if state not in RUN_STATES:
            raise ValueError(f"unknown run state '{state}' (use {', '.join(RUN_STATES)})")
        self.set_setting("run_state", state)

    def run_state(self) -> str:
        return self.setting("run_state", "running") or "running"

    def withdraw_unanswered(self) -> int:
        """Withdraw every query still short of its judgements (the run ended): they are no
        longer served, their leases end, and a late answer gets 409. Returns how many."""
        with self._write() as s:
            ids = list(
                s.scalars(
                    select(QueryRow.id).where(_judged_count() < QueryRow.overlap, LIVE, NOT_GOLD)
                )
            )
            if ids:
                s.execute(update(QueryRow).where(QueryRow.id.in_(ids)).values(withdrawn=True))
                s.execute(delete(LeaseRow).where(LeaseRow.query_id.in_(ids)))
        return len(ids)

    def reopen_withdrawn(self) -> int:
        """A stopped run resumes: its withdrawn queries that still want judgements are served
        again (the loop counts them as asked). Returns how many."""
        with self._write() as s:
            rows = select(QueryRow.id).where(
                QueryRow.withdrawn.is_(True), _judged_count() < QueryRow.overlap, NOT_GOLD
            )
            ids = list(s.scalars(rows))
            if ids:
                s.execute(update(QueryRow).where(QueryRow.id.in_(ids)).values(withdrawn=False))
        return len(ids)

    def finish_run(self) -> int:
        """The run ended or stopped: withdraw its unanswered queries and tell annotators."""
        withdrawn = self.withdraw_unanswered()
        self.set_run_state("over")
        return withdrawn

    def annotators(self) -> list[AnnotatorRow]:
        with self._read() as s:
            return list(s.scalars(select(AnnotatorRow).order_by(AnnotatorRow.id)))

    def set_setting(self, key: str, value: str) -> None:
        with self._write() as s:
            row = s.get(SettingRow, key)
            if row is None:
                s.add(SettingRow(key=key, value=value))
            else:
                row.value = value

    def setting(self, key: str, default: str | None = None) -> str | None:
        with self._read() as s:
            row = s.get(SettingRow, key)
            return row.value if row else default

    def close(self) -> None:
        self.engine.dispose()
        self.reader.dispose()


def _clip_row(segment_id: int, clip: ClipLike) -> ClipRow:
    if isinstance(clip, Clip):
        return ClipRow(
            segment_id=segment_id, data=clip.data, mime=clip.mime, frames=clip.frames, fps=clip.fps
        )
    mime = GIF if clip[:4] == b"GIF8" else MP4 if clip[4:8] == b"ftyp" else None
    if mime is None:
        raise ValueError("a clip must be a clips.Clip, or MP4 or GIF bytes")
    return ClipRow(segment_id=segment_id, data=clip, mime=mime)


def _sqlite_connect(dbapi_conn, record) -> None:
    dbapi_conn.isolation_level = None  # let SQLAlchemy's "begin" event issue BEGIN IMMEDIATE
    _sqlite_pragmas(dbapi_conn, record)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # WAL + NORMAL: a committed transaction survives the process being killed (SIGKILL); only an
    # OS crash or power loss can roll back the last few. FULL would fsync every commit.
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()
