"""Leases: one query to one annotator at a time, answered by quoting the lease token;
gold questions mixed in; progress per annotator."""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import (
    func,
    select,
)
from sqlalchemy.orm import Session

from rlhflab.feedback.schema import (
    LIVE,
    NOT_GOLD,
    PAIR_KINDS,
    JudgementRow,
    LeaseRow,
    QueryRow,
    SettingRow,
    aware,
    judged_count,
    lease_token_of,
    utcnow,
)


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
        judged_count() < QueryRow.overlap,
        QueryRow.id.not_in(mine_done),
        QueryRow.id.not_in(busy),
        LIVE,
        NOT_GOLD,
    )


def _gold_open_to(annotator: str, now: datetime) -> tuple:
    """Gold questions the annotator has not answered and nobody else holds (overlap ignored)."""
    return (QueryRow.gold.is_not(None), LIVE, *_open_to(annotator, now)[1:3])


class LeaseMixin:
    """The lease methods of `FeedbackStore`."""

    if TYPE_CHECKING:  # provided by FeedbackStore

        def _write(self) -> AbstractContextManager[Any]: ...

        def _read(self) -> Any: ...

        sqlite: bool

        def run_state(self) -> str: ...

        def setting(self, key: str, default: str | None = None) -> str | None: ...

        def _insert_judgement(self, s: Any, *args: Any, **kwargs: Any) -> int: ...

    # -- leases: one query to one annotator at a time ---------------------------------------
    def lease_next(
        self, annotator: str, lease_seconds: float, rng: np.random.Generator
    ) -> tuple[QueryRow, LeaseRow] | None:
        """The annotator's live lease, or a new one on the oldest query they may answer; None if
        there is none.

        A query is open to an annotator who has not judged it, while it has fewer judgements than
        its overlap and no live lease held by someone else. Display order is randomised per
        lease."""
        now = utcnow()
        with self._write() as s:  # the run's state and gold rate read in the same transaction
            settings = dict(
                s.execute(
                    select(SettingRow.key, SettingRow.value).where(
                        SettingRow.key.in_(("run_state", "gold_rate"))
                    )
                ).all()
            )
            if settings.get("run_state") == "over":
                return None
            gold_rate = float(settings.get("gold_rate") or 0)
            mine = s.scalars(
                select(LeaseRow).where(LeaseRow.annotator == annotator).order_by(LeaseRow.issued_at)
            ).all()
            for lease in mine:
                if aware(lease.expires_at) > now:
                    return s.get(QueryRow, lease.query_id), lease
            q, lease = None, None
            if gold_rate > 0 and rng.random() < gold_rate:  # a gold question, mixed in at random
                q, lease = self._claim(s, _gold_open_to(annotator, now))
            if q is None:
                q, lease = self._claim(s, _open_to(annotator, now))
            if q is None:
                return None
            n = 2 if q.kind in PAIR_KINDS else len(q.payload.get("responses", [None]))
            order = [int(i) for i in rng.permutation(n)]
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

    def _claim(self, s: Session, where: tuple) -> tuple[QueryRow | None, LeaseRow | None]:
        """The oldest query matching `where`, row-locked, with its current (expired or absent)
        lease.

        On PostgreSQL the query row is taken `FOR UPDATE SKIP LOCKED`, so concurrent workers get
        different queries without waiting. But `where` was judged on the statement's snapshot: an
        answer or a lease committed between that snapshot and the lock is not in it. So `where`
        is checked again for the locked row (a new statement sees them), and a query that no
        longer qualifies is passed over."""
        passed: list[int] = []
        for _ in range(8):
            q = self._first(s, (*where, QueryRow.id.not_in(passed)) if passed else where)
            if q is None:
                return None, None
            if self.sqlite or s.scalar(select(QueryRow.id).where(QueryRow.id == q.id, *where)):
                return q, s.get(LeaseRow, q.id, populate_existing=True)
            passed.append(q.id)
        return None, None

    def _first(self, s: Session, where: tuple) -> QueryRow | None:
        stmt = select(QueryRow).where(*where).order_by(QueryRow.id).limit(1)
        if not self.sqlite:
            # NO KEY UPDATE: a judgement or lease referencing the row (a foreign-key check takes
            # KEY SHARE) is not blocked by it
            stmt = stmt.with_for_update(skip_locked=True, key_share=True, of=QueryRow)
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
        now = utcnow()
        with self._write() as s:
            # PostgreSQL: the lease row is locked, so a worker re-leasing it waits for this answer
            lease = s.get(
                LeaseRow, query_id, with_for_update={"key_share": True} if not self.sqlite else None
            )
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
            if aware(lease.expires_at) <= now:
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
            seconds = min((now - aware(lease.issued_at)).total_seconds(), max_seconds)
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
                {"annotator": a, "at": aware(t), "label": label, "correct": label == gold}
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
                s.scalar(select(func.count(QueryRow.id)).where(*_open_to(annotator, utcnow()))) or 0
            )
            return done, open_
