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
    select,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from rlhflab.types import Comparison, Judgement, Query, Segment

QUERY_KINDS = ("segments", "text_pair", "ranking", "rating", "critique", "correction")
PAIR_KINDS = ("segments", "text_pair")


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
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)

    def to_segment(self) -> Segment:
        return Segment(
            _unpack(self.obs), _unpack(self.actions), _unpack(self.judged_rewards), self.env_steps
        )


class ClipRow(Base):
    """A rendered, looping clip of one segment (GIF), for people to watch."""

    __tablename__ = "clips"
    segment_id: Mapped[int] = mapped_column(ForeignKey("segments.id"), primary_key=True)
    mime: Mapped[str] = mapped_column(String(40), default="image/gif")
    data: Mapped[bytes] = mapped_column(LargeBinary)


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


def sqlite_url(path) -> str:
    return f"sqlite:///{path}"


class LeaseError(Exception):
    """An answer to a query the annotator does not (or no longer) hold."""


def _open_to(annotator: str, now: datetime) -> tuple:
    """Conditions for a query that `annotator` may be given: short of its overlap, not judged by
    them, and not under someone else's live lease."""
    judged = (
        select(func.count(JudgementRow.id))
        .where(JudgementRow.query_id == QueryRow.id)
        .scalar_subquery()
    )
    mine_done = select(JudgementRow.query_id).where(JudgementRow.annotator == annotator)
    busy = select(LeaseRow.query_id).where(
        LeaseRow.expires_at > now, LeaseRow.annotator != annotator
    )
    return judged < QueryRow.overlap, QueryRow.id.not_in(mine_done), QueryRow.id.not_in(busy)


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
        clips: tuple[bytes, bytes] | None = None,
        overlap: int = 1,
    ) -> int:
        """A pair of segments (and optionally their rendered clips)."""
        return self.add_queries([(left, right)], None if clips is None else [clips], overlap, meta)[
            0
        ]

    def add_queries(
        self,
        pairs: list[tuple[Segment, Segment]],
        clips: list[tuple[bytes, bytes]] | None = None,
        overlap: int = 1,
        meta: dict | None = None,
    ) -> list[int]:
        """Pairs of segments (with their clips, if rendered), all in one transaction."""
        for left, right in pairs:
            if len(left) != len(right):
                raise ValueError(
                    f"a query needs equal-length segments, got {len(left)} and {len(right)}"
                )
        ids = []
        with self._write() as s:
            for k, (left, right) in enumerate(pairs):
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
                if clips is not None:
                    s.add_all(ClipRow(segment_id=r.id, data=c) for r, c in zip(rows, clips[k]))
                q = QueryRow(
                    kind="segments",
                    left_id=rows[0].id,
                    right_id=rows[1].id,
                    env_steps=left.env_steps,
                    payload=meta or {},
                    overlap=overlap,
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
    ) -> int:
        """A text query: `text_pair` (2 responses), `ranking` (K ≥ 2), or
        `rating`/`critique`/`correction` (1)."""
        expected = {
            "text_pair": (2, 2),
            "ranking": (2, 64),
            "rating": (1, 1),
            "critique": (1, 1),
            "correction": (1, 1),
        }
        if kind not in expected:
            raise ValueError(f"unknown text query kind '{kind}' (use {', '.join(expected)})")
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
        with self._read() as s:
            stmt = select(func.count(JudgementRow.id))
            if annotator is not None:
                stmt = stmt.where(JudgementRow.annotator == annotator)
            return s.scalar(stmt) or 0

    def count_queries(self) -> int:
        with self._read() as s:
            return s.scalar(select(func.count(QueryRow.id))) or 0

    def count_unanswered(self) -> int:
        """Queries that still want judgements (fewer than their overlap)."""
        judged = (
            select(func.count(JudgementRow.id))
            .where(JudgementRow.query_id == QueryRow.id)
            .scalar_subquery()
        )
        with self._read() as s:
            return s.scalar(select(func.count(QueryRow.id)).where(judged < QueryRow.overlap)) or 0

    def pending_queries(self) -> list[Query]:
        """Segment queries that no one has judged yet, oldest first."""
        with self._read() as s:
            judged = select(JudgementRow.query_id)
            rows = (
                s.scalars(
                    select(QueryRow)
                    .where(QueryRow.kind == "segments", QueryRow.id.not_in(judged))
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
                .where(QueryRow.kind == "segments", JudgementRow.id > after)
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

    def judgement_rows(self, annotator: str | None = None) -> list[JudgementRow]:
        """Full judgement rows (with their queries), optionally one annotator's."""
        with self._read() as s:
            stmt = select(JudgementRow).order_by(JudgementRow.id)
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
        self, judgement_id: int, judgement: Judgement | str, payload: dict | None = None
    ) -> None:
        with self._write() as s:
            row = s.get(JudgementRow, judgement_id)
            if row is None:
                raise KeyError(f"no judgement with id {judgement_id}")
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
        with self._write() as s:
            mine = s.scalars(
                select(LeaseRow).where(LeaseRow.annotator == annotator).order_by(LeaseRow.issued_at)
            ).all()
            for lease in mine:
                if _aware(lease.expires_at) > now:
                    return s.get(QueryRow, lease.query_id), lease
            stmt = select(QueryRow).where(*_open_to(annotator, now)).order_by(QueryRow.id).limit(1)
            if not self.sqlite:
                stmt = stmt.with_for_update(skip_locked=True)
            q = s.scalars(stmt).first()
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

    def lease(self, query_id: int) -> LeaseRow | None:
        with self._read() as s:
            return s.get(LeaseRow, query_id)

    def answer_lease(
        self,
        annotator: str,
        query_id: int,
        answer,
        max_seconds: float = 3600.0,
        lease_token: str | None = None,
    ) -> int:
        """Store an answer given through a lease, in one transaction.

        `answer(kind, order) -> (label, payload)` maps what the annotator was shown (display
        order `order`) to the stored orientation; it may raise to refuse the answer."""
        now = _now()
        with self._write() as s:
            lease = s.get(LeaseRow, query_id)
            if lease is None or lease.annotator != annotator:
                raise LeaseError(
                    f"query {query_id} is not leased to you (the lease expired and was "
                    f"reassigned, or was never issued); ask for the next query"
                )
            if lease_token is not None and lease_token != lease_token_of(lease):
                raise LeaseError(
                    f"query {query_id} was leased again since you saw it (its display order may "
                    f"differ); ask for the next query"
                )
            q = s.get(QueryRow, query_id)
            done = (
                s.scalar(
                    select(func.count(JudgementRow.id)).where(JudgementRow.query_id == query_id)
                )
                or 0
            )
            if done >= q.overlap:
                raise LeaseError(
                    f"query {query_id} already has the {q.overlap} judgement(s) it needs"
                )
            label, payload = answer(q.kind, lease.order)
            seconds = min((now - _aware(lease.issued_at)).total_seconds(), max_seconds)
            swapped = lease.order != sorted(lease.order) if q.kind in PAIR_KINDS else None
            return self._insert_judgement(s, query_id, label, annotator, seconds, payload, swapped)

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
        with self._read() as s:
            return s.scalar(
                select(AnnotatorRow).where(AnnotatorRow.token_hash == hash_token(token))
            )

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
