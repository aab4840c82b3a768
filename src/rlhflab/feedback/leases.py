"""Leases: one query to one annotator at a time, answered by quoting the lease token;
gold questions mixed in; progress per annotator."""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import timedelta
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import (
    Connection,
    DateTime,
    Integer,
    Row,
    Select,
    String,
    bindparam,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from rlhflab.feedback.schema import (
    JUDGEMENTS,
    LEASES,
    LIVE,
    NOT_GOLD,
    OPEN,
    PAIR_KINDS,
    QUERIES,
    JudgementRow,
    LeaseRow,
    QueryRow,
    SettingRow,
    aware,
    lease_token_of,
    utcnow,
)

# what a lease shows of its query, read as plain columns (no ORM objects, no segment joins)
SHOWN = (
    QueryRow.id,
    QueryRow.kind,
    QueryRow.payload,
    QueryRow.left_id,
    QueryRow.right_id,
    QueryRow.gold,
)
LEASE = (LeaseRow.query_id, LeaseRow.annotator, LeaseRow.order, LeaseRow.issued_at)

# The hot paths' statements are built once, with bound parameters (:annotator, :now, :id):
# SQLAlchemy then reuses their compiled form without rebuilding or re-keying them per request.
ANNOTATOR = bindparam("annotator", type_=String())
NOW = bindparam("now", type_=DateTime(timezone=True))
ID = bindparam("id", type_=Integer())
SETTINGS = select(SettingRow.key, SettingRow.value).where(
    SettingRow.key.in_(("run_state", "gold_rate"))
)
MY_LEASE = (
    select(*LEASE)
    .where(LeaseRow.annotator == ANNOTATOR, LeaseRow.expires_at > NOW)
    .order_by(LeaseRow.issued_at)
    .limit(1)
)
SHOWN_BY_ID = select(*SHOWN).where(QueryRow.id == ID)
LEASE_FOR_ANSWER = (
    select(*LEASE, LeaseRow.expires_at)
    .where(LeaseRow.query_id == ID)
    .with_for_update(key_share=True)  # PostgreSQL: FOR NO KEY UPDATE; SQLite: nothing
)


class LeaseError(Exception):
    """An answer to a query the annotator does not (or no longer) hold."""


def _open_to(annotator: Any = ANNOTATOR, now: Any = NOW) -> tuple:
    """Conditions for a query that `annotator` may be given: short of its overlap, not judged by
    them, and not under someone else's live lease."""
    mine_done = select(JudgementRow.query_id).where(JudgementRow.annotator == annotator)
    busy = select(LeaseRow.query_id).where(
        LeaseRow.expires_at > now, LeaseRow.annotator != annotator
    )
    return (
        OPEN,
        QueryRow.id.not_in(mine_done),
        QueryRow.id.not_in(busy),
        LIVE,
        NOT_GOLD,
    )


def _gold_open_to(annotator: Any = ANNOTATOR, now: Any = NOW) -> tuple:
    """Gold questions the annotator has not answered and nobody else holds (overlap ignored)."""
    return (QueryRow.gold.is_not(None), LIVE, *_open_to(annotator, now)[1:3])


PROGRESS = select(
    select(func.count())
    .select_from(JUDGEMENTS)
    .where(JudgementRow.annotator == ANNOTATOR)
    .scalar_subquery(),
    select(func.count()).select_from(QUERIES).where(*_open_to()).scalar_subquery(),
)


@cache
def _claim_statements(gold: bool, lock: bool) -> tuple[Select, Select]:
    """The claim of the oldest open (or gold) query, and its re-check by id (`_claim`)."""
    where = _gold_open_to() if gold else _open_to()
    claim = select(*SHOWN).where(*where).order_by(QueryRow.id).limit(1)
    if lock:
        # NO KEY UPDATE: a judgement or lease referencing the row (a foreign-key check takes
        # KEY SHARE) is not blocked by it
        claim = claim.with_for_update(skip_locked=True, key_share=True)
    return claim, select(QueryRow.id).where(QueryRow.id == ID, *where)


class LeaseMixin:
    """The lease methods of `FeedbackStore`.

    The two hot paths run prebuilt Core statements on a plain connection (no ORM session's
    bookkeeping) and take row locks on PostgreSQL in one order, the query's row and then its
    lease's: `lease_next` claims the query row `FOR NO KEY UPDATE SKIP LOCKED` and then writes
    the lease; `answer_lease` updates the query's judgement counter and then locks the lease. So
    a late answer and a new lease of the same query wait for each other instead of deadlocking."""

    if TYPE_CHECKING:  # provided by FeedbackStore

        def _write(self) -> AbstractContextManager[Any]: ...

        def _write_core(self) -> AbstractContextManager[Connection]: ...

        def _read(self) -> Any: ...

        sqlite: bool
        reader: Any

        def run_state(self) -> str: ...

        def setting(self, key: str, default: str | None = None) -> str | None: ...

        def _count_judgement(self, s: Any, query_id: int) -> Any: ...

        def _add_judgement_row(self, s: Any, *args: Any) -> int: ...

    # -- leases: one query to one annotator at a time ---------------------------------------
    def lease_next(
        self, annotator: str, lease_seconds: float, rng: np.random.Generator
    ) -> tuple[QueryRow, LeaseRow] | None:
        """The annotator's live lease, or a new one on the oldest query they may answer; None if
        there is none. Both come back as detached rows holding what the annotator is shown.

        A query is open to an annotator who has not judged it, while it has fewer judgements than
        its overlap and no live lease held by someone else. Display order is randomised per
        lease."""
        now = utcnow()
        who = {"annotator": annotator, "now": now}
        with self._write_core() as c:  # the run's state and gold rate read in the same transaction
            settings = {k: v for k, v in c.execute(SETTINGS)}
            if settings.get("run_state") == "over":
                return None
            mine = c.execute(MY_LEASE, who).first()
            if mine is not None:
                held = c.execute(SHOWN_BY_ID, {"id": mine.query_id}).one()
                return QueryRow(**held._mapping), LeaseRow(**mine._mapping)
            gold_rate = float(settings.get("gold_rate") or 0)
            q = None
            if gold_rate > 0 and rng.random() < gold_rate:  # a gold question, mixed in at random
                q = self._claim(c, who, gold=True)
            if q is None:
                q = self._claim(c, who, gold=False)
            if q is None:
                return None
            n = 2 if q.kind in PAIR_KINDS else len(q.payload.get("responses", [None]))
            lease = LeaseRow(
                query_id=q.id,
                annotator=annotator,
                order=[int(i) for i in rng.permutation(n)],
                issued_at=now,
                expires_at=now + timedelta(seconds=lease_seconds),
            )
            values = {col.key: getattr(lease, col.key) for col in LEASES.columns}
            insert = (sqlite_insert if self.sqlite else pg_insert)(LEASES)
            c.execute(  # a new lease, or the query's expired one re-issued: one statement
                insert.values(values).on_conflict_do_update(
                    index_elements=["query_id"], set_=values
                )
            )
            return QueryRow(**q._mapping), lease

    def _claim(self, c: Connection, who: dict, gold: bool) -> Row | None:
        """The oldest open (or gold) query for `who` (its `SHOWN` columns), row-locked.

        On PostgreSQL the query row is taken `FOR UPDATE SKIP LOCKED`, so concurrent workers get
        different queries without waiting. But the conditions were judged on the statement's
        snapshot: an answer or a lease committed between that snapshot and the lock is not in
        it. So they are checked again for the locked row (a new statement sees them), and a
        query that no longer qualifies is passed over."""
        claim, recheck = _claim_statements(gold, lock=not self.sqlite)
        passed: list[int] = []
        for _ in range(8):
            stmt = claim.where(QueryRow.id.not_in(passed)) if passed else claim
            q = c.execute(stmt, who).first()
            if q is None:
                return None
            if self.sqlite or c.scalar(recheck, {**who, "id": q.id}):
                return q
            passed.append(q.id)
        return None

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
        to the stored orientation; it may raise to refuse the answer (and then nothing, not even
        the counter, is changed)."""
        now = utcnow()
        with self._write_core() as s:
            q = self._count_judgement(s, query_id)  # locks the query row first (class docstring)
            found = s.execute(LEASE_FOR_ANSWER, {"id": query_id}).first()
            lease = None if found is None else LeaseRow(**found._mapping)
            if q is None or lease is None or lease.annotator != annotator:
                raise LeaseError(
                    f"query {query_id} is not leased to you (the lease expired and was "
                    "reassigned, the run is over, or it was never issued); ask for the next query"
                )
            if lease_token != lease_token_of(lease):
                raise LeaseError(
                    f"query {query_id} was leased again since you saw it (its display order "
                    "may differ); ask for the next query"
                )
            if aware(lease.expires_at) <= now:
                raise LeaseError(f"your lease on query {query_id} expired; ask for the next query")
            if q.withdrawn:
                raise LeaseError(f"query {query_id} was withdrawn: the run is over")
            if q.gold is None and q.judged > q.overlap:  # `judged` counts this answer already
                raise LeaseError(
                    f"query {query_id} already has the {q.overlap} judgement(s) it needs"
                )
            label, payload = answer(q.kind, lease.order)
            seconds = min((now - aware(lease.issued_at)).total_seconds(), max_seconds)
            swapped = lease.order != sorted(lease.order) if q.kind in PAIR_KINDS else None
            return self._add_judgement_row(s, query_id, label, annotator, seconds, payload, swapped)

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
                {"annotator": a, "at": aware(t), "label": label, "correct": label == gold}
                for a, t, label, gold in rows
            ]

    def progress(self, annotator: str) -> tuple[int, int]:
        """(judgements given, queries open to them now) for one annotator, in one statement."""
        with self.reader.connect() as c:
            done, open_ = c.execute(PROGRESS, {"annotator": annotator, "now": utcnow()}).one()
            return int(done), int(open_)
