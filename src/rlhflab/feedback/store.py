"""The durable feedback store: segments, queries and judgements in one database.

SQLAlchemy over SQLite in the run directory by default (write-ahead log, full
sync, one transaction per write, so a judgement that was acknowledged survives a
SIGKILL of the writer); any SQLAlchemy URL — a Postgres one, say — works too.
Arrays are stored as `.npy` bytes.
"""

from __future__ import annotations

import io
from datetime import datetime, timezone

import numpy as np
from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, LargeBinary, String, create_engine, event, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from rlhflab.types import Comparison, Judgement, Query, Segment


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _pack(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(a), allow_pickle=False)
    return buf.getvalue()


def _unpack(b: bytes) -> np.ndarray:
    return np.load(io.BytesIO(b), allow_pickle=False)


class Base(DeclarativeBase):
    pass


class SegmentRow(Base):
    __tablename__ = "segments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    obs: Mapped[bytes] = mapped_column(LargeBinary)
    actions: Mapped[bytes] = mapped_column(LargeBinary)
    true_rewards: Mapped[bytes] = mapped_column(LargeBinary)
    env_steps: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)

    def to_segment(self) -> Segment:
        return Segment(_unpack(self.obs), _unpack(self.actions), _unpack(self.true_rewards), self.env_steps)


class QueryRow(Base):
    __tablename__ = "queries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    left_id: Mapped[int] = mapped_column(ForeignKey("segments.id"))
    right_id: Mapped[int] = mapped_column(ForeignKey("segments.id"))
    env_steps: Mapped[int] = mapped_column(Integer, default=0)
    meta: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    left: Mapped[SegmentRow] = relationship(foreign_keys=[left_id], lazy="joined")
    right: Mapped[SegmentRow] = relationship(foreign_keys=[right_id], lazy="joined")


class JudgementRow(Base):
    __tablename__ = "judgements"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    query_id: Mapped[int] = mapped_column(ForeignKey("queries.id"), index=True)
    annotator: Mapped[str] = mapped_column(String(200), default="synthetic")
    label: Mapped[str] = mapped_column(String(16))
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    query: Mapped[QueryRow] = relationship(lazy="joined")


def sqlite_url(path) -> str:
    return f"sqlite:///{path}"


class FeedbackStore:
    def __init__(self, url: str):
        self.url = url
        self.engine = create_engine(url, future=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        Base.metadata.create_all(self.engine)

    # -- writing: one transaction each --------------------------------------------------
    def add_query(self, left: Segment, right: Segment, meta: dict | None = None) -> int:
        if len(left) != len(right):
            raise ValueError(f"a query needs equal-length segments, got {len(left)} and {len(right)}")
        with Session(self.engine) as s, s.begin():
            rows = [SegmentRow(obs=_pack(g.obs), actions=_pack(g.actions), true_rewards=_pack(g.true_rewards), env_steps=g.env_steps) for g in (left, right)]
            s.add_all(rows)
            s.flush()
            q = QueryRow(left_id=rows[0].id, right_id=rows[1].id, env_steps=left.env_steps, meta=meta or {})
            s.add(q)
            s.flush()
            return q.id

    def add_judgement(self, query_id: int, judgement: Judgement | str, annotator: str = "synthetic", seconds: float | None = None) -> int:
        label = Judgement(judgement).value
        with Session(self.engine) as s, s.begin():
            if s.get(QueryRow, query_id) is None:
                raise KeyError(f"no query with id {query_id}")
            row = JudgementRow(query_id=query_id, annotator=annotator, label=label, seconds=seconds)
            s.add(row)
            s.flush()
            return row.id

    # -- reading ----------------------------------------------------------------------
    def count_judgements(self) -> int:
        with Session(self.engine) as s:
            return s.scalar(select(func.count(JudgementRow.id))) or 0

    def count_queries(self) -> int:
        with Session(self.engine) as s:
            return s.scalar(select(func.count(QueryRow.id))) or 0

    def pending_queries(self) -> list[Query]:
        """Queries that no one has judged yet, oldest first."""
        with Session(self.engine) as s:
            judged = select(JudgementRow.query_id)
            rows = s.scalars(select(QueryRow).where(QueryRow.id.not_in(judged)).order_by(QueryRow.id)).unique().all()
            return [Query(r.left.to_segment(), r.right.to_segment(), r.id) for r in rows]

    def comparisons(self) -> list[Comparison]:
        """Every judgement with its two segments, in the order they were given."""
        with Session(self.engine) as s:
            rows = s.scalars(select(JudgementRow).order_by(JudgementRow.id)).unique().all()
            return [
                Comparison(r.query_id, r.query.left.to_segment(), r.query.right.to_segment(), Judgement(r.label), r.annotator, {"seconds": r.seconds})
                for r in rows
            ]

    def judgements(self) -> list[tuple[int, int, str, str]]:
        """(judgement id, query id, annotator, label) rows, in order."""
        with Session(self.engine) as s:
            return [tuple(r) for r in s.execute(select(JudgementRow.id, JudgementRow.query_id, JudgementRow.annotator, JudgementRow.label).order_by(JudgementRow.id))]

    def close(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()
