"""The run's lifecycle as annotators see it: its state (running, waiting for labels, over),
withdrawing the unanswered queries when it stops and reopening them when it resumes, and the
key–value settings (guidelines, the state itself) the app reads."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from rlhflab.feedback.schema import (
    LIVE,
    NOT_GOLD,
    OPEN,
    RUN_STATES,
    LeaseRow,
    QueryRow,
    SettingRow,
)


class RunStateMixin:
    """The run-state and settings methods of `FeedbackStore`."""

    if TYPE_CHECKING:  # provided by FeedbackStore
        sqlite: bool

        def _write(self) -> AbstractContextManager[Any]: ...

        def _read(self) -> Any: ...

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
            ids = list(s.scalars(select(QueryRow.id).where(OPEN, LIVE, NOT_GOLD)))
            if ids:
                s.execute(update(QueryRow).where(QueryRow.id.in_(ids)).values(withdrawn=True))
                s.execute(delete(LeaseRow).where(LeaseRow.query_id.in_(ids)))
        return len(ids)

    def reopen_withdrawn(self) -> int:
        """A stopped run resumes: its withdrawn queries that still want judgements are served
        again (the loop counts them as asked). Returns how many."""
        with self._write() as s:
            rows = select(QueryRow.id).where(QueryRow.withdrawn.is_(True), OPEN, NOT_GOLD)
            ids = list(s.scalars(rows))
            if ids:
                s.execute(update(QueryRow).where(QueryRow.id.in_(ids)).values(withdrawn=False))
        return len(ids)

    def finish_run(self) -> int:
        """The run ended or stopped: withdraw its unanswered queries and tell annotators."""
        withdrawn = self.withdraw_unanswered()
        self.set_run_state("over")
        return withdrawn

    def set_setting(self, key: str, value: str) -> None:
        """Insert or replace, in one statement: app workers starting at once may all set it."""
        insert = sqlite_insert if self.sqlite else pg_insert
        upsert = insert(SettingRow).values(key=key, value=value)
        with self._write() as s:
            s.execute(upsert.on_conflict_do_update(index_elements=["key"], set_={"value": value}))

    def setting(self, key: str, default: str | None = None) -> str | None:
        with self._read() as s:
            row = s.get(SettingRow, key)
            return row.value if row else default
