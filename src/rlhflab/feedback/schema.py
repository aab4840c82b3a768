"""The feedback store's tables (SQLAlchemy ORM) and the small pieces every part of the
store shares: array packing, token hashing, lease tokens, the conditions "live" and "not
gold", and the in-place migration of stores written by older versions."""

from __future__ import annotations

import hashlib
import importlib.util
import io
from datetime import datetime, timezone
from typing import cast

import numpy as np
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    inspect,
    text,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from rlhflab.feedback.clips import Clip
from rlhflab.types import Segment

ClipLike = Clip | bytes

QUERY_KINDS = (
    "segments",
    "text_pair",
    "ranking",
    "rating",
    "critique",
    "correction",
    "clip_rating",
)
PAIR_KINDS = ("segments", "text_pair")
MAX_TEXT = 20_000  # characters in one prompt, response or answer: the web API's limit, and import's
MAX_RESPONSES = 64  # responses in one ranking query
MAX_PARTS = 64  # parts of a segment pair judged in one answer (process feedback)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)  # SQLite returns naive datetimes


def pack(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(a), allow_pickle=False)
    return buf.getvalue()


def unpack(b: bytes) -> np.ndarray:
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
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    def to_segment(self) -> Segment:
        return Segment(
            unpack(self.obs),
            unpack(self.actions),
            unpack(self.judged_rewards),
            self.env_steps,
            absorbing=None if self.absorbing is None else unpack(self.absorbing),
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
    __table_args__ = (
        # the queries still short of their judgements, in id order: what a lease claims and what
        # progress counts, without walking the complete ones
        Index(
            "ix_queries_open",
            "id",
            sqlite_where=text("judged < overlap"),
            postgresql_where=text("judged < overlap"),
        ),
        # the gold questions, in id order: what a gold claim walks (`--gold-rate`)
        Index(
            "ix_queries_gold",
            "id",
            sqlite_where=text("gold IS NOT NULL"),
            postgresql_where=text("gold IS NOT NULL"),
        ),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), default="segments")
    left_id: Mapped[int | None] = mapped_column(ForeignKey("segments.id"), nullable=True)
    right_id: Mapped[int | None] = mapped_column(ForeignKey("segments.id"), nullable=True)
    payload: Mapped[dict] = mapped_column(JSON, default=dict)  # text queries: prompt, responses
    overlap: Mapped[int] = mapped_column(
        Integer, default=1
    )  # judgements wanted from distinct annotators
    env_steps: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # withdrawn when the run ended before it was answered: no longer served, answers get 409
    withdrawn: Mapped[bool | None] = mapped_column(Boolean, nullable=True, default=False)
    # a gold question: the known answer (stored orientation); never counted as a run's label
    gold: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # how many judgements it has: kept by the transaction that stores one (`count_judgement`),
    # so "short of its overlap" is a comparison of two columns, not a count per query
    judged: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    left: Mapped[SegmentRow | None] = relationship(foreign_keys=[left_id], lazy="joined")
    right: Mapped[SegmentRow | None] = relationship(foreign_keys=[right_id], lazy="joined")

    def segments(self) -> tuple[Segment, Segment]:
        """The (left, right) segments of a segment query."""
        if self.left is None or self.right is None:
            raise ValueError(f"query {self.id} ({self.kind}) has no segments")
        return self.left.to_segment(), self.right.to_segment()

    def rated_segment(self) -> Segment:
        """The one segment of a clip rating."""
        if self.left is None:
            raise ValueError(f"query {self.id} ({self.kind}) has no segment")
        return self.left.to_segment()


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
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # PostgreSQL: the id of the transaction that stored it, so that incremental reads can follow
    # commit order (ids are drawn at insert, not at commit); NULL on SQLite, whose writers are
    # serialised so that ids already follow commit order
    tx: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    query: Mapped[QueryRow] = relationship(lazy="joined")


class AnnotatorRow(Base):
    __tablename__ = "annotators"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
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
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
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
        f"{lease.query_id}:{lease.annotator}:{aware(lease.issued_at).isoformat()}:{lease.order}".encode()
    ).hexdigest()[:16]


RUN_STATES = ("running", "waiting", "over")
LIVE = QueryRow.withdrawn.is_not(True)  # not withdrawn (NULL in stores older than the column)
NOT_GOLD = QueryRow.gold.is_(None)


# the tables, for Core statements on the hot paths (typed as tables, which mypy cannot infer)
ANNOTATORS = cast(Table, AnnotatorRow.__table__)
QUERIES = cast(Table, QueryRow.__table__)
JUDGEMENTS = cast(Table, JudgementRow.__table__)
LEASES = cast(Table, LeaseRow.__table__)
OPEN = QueryRow.judged < QueryRow.overlap  # short of its judgements (ix_queries_open)


def recount_judged(conn) -> None:
    """Set every query's judgement counter from the judgements stored (a migration's backfill)."""
    conn.execute(
        text(
            "UPDATE queries SET judged = "
            "(SELECT count(*) FROM judgements WHERE judgements.query_id = queries.id)"
        )
    )


def sqlite_url(path) -> str:
    return f"sqlite:///{path}"


class StoreError(RuntimeError):
    """The feedback store cannot be opened: an unreachable database, a bad URL, no driver. The
    message names the URL (without its password)."""


def engine_url(url: str) -> URL:
    """The SQLAlchemy URL for a store URL; `postgresql://…` uses psycopg (3), which
    `pip install 'rlhflab[postgres]'` installs, unless psycopg2 is what is installed."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(
            f"'{url}' is not a database URL (sqlite:///PATH or postgresql://…)"
        ) from exc
    psycopg3 = importlib.util.find_spec("psycopg") or not importlib.util.find_spec("psycopg2")
    if parsed.drivername in ("postgresql", "postgres") and psycopg3:
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "postgresql" and not (
        importlib.util.find_spec("psycopg") or importlib.util.find_spec("psycopg2")
    ):
        raise StoreError(
            f"the store {shown_url(url)} needs a PostgreSQL driver: pip install 'rlhflab[postgres]'"
        )
    return parsed


def shown_url(url: str) -> str:
    """The URL with its password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def add_missing_columns(conn) -> None:
    """Stores written before the Alembic migrations lack newer columns (nullable, or with a
    default) and indexes: add them in place, on the open connection, and fill the judgement
    counters (`migrate.prepare` then stamps the store as current)."""
    inspector = inspect(conn)
    missing = [
        (table.name, column)
        for table in Base.metadata.sorted_tables
        if inspector.has_table(table.name)
        for have in [{c["name"] for c in inspector.get_columns(table.name)}]
        for column in table.columns
        if column.name not in have and (column.nullable or column.server_default is not None)
    ]
    ddl = conn.dialect.ddl_compiler(conn.dialect, None)
    for table, column in missing:
        conn.exec_driver_sql(
            f'ALTER TABLE "{table}" ADD COLUMN {ddl.get_column_specification(column)}'
        )
    for declared in Base.metadata.sorted_tables:
        for index in declared.indexes:
            index.create(conn, checkfirst=True)
    recount_judged(conn)
