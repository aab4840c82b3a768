"""Annotator accounts: tokens (stored hashed), roles, disabling and rotation that take
effect at once, one-time login codes, sessions, and the audit log of admin changes."""

from __future__ import annotations

import secrets
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    bindparam,
    delete,
    select,
)
from sqlalchemy.orm import Session

from rlhflab.feedback.schema import (
    ANNOTATORS,
    AnnotatorRow,
    AuditRow,
    LeaseRow,
    LoginCodeRow,
    SessionRow,
    aware,
    hash_token,
    utcnow,
)

BY_TOKEN = select(*ANNOTATORS.columns).where(
    ANNOTATORS.c.token_hash == bindparam("token_hash"), ANNOTATORS.c.disabled.is_not(True)
)


class AccountsMixin:
    """The account methods of `FeedbackStore`."""

    if TYPE_CHECKING:  # provided by FeedbackStore

        def _write(self) -> AbstractContextManager[Any]: ...

        def _read(self) -> Any: ...

        reader: Any

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
        """The enabled annotator holding this token, read from the store on every call (every
        request is authenticated by it: a prebuilt Core statement, returning a detached row)."""
        with self.reader.connect() as c:
            row = c.execute(BY_TOKEN, {"token_hash": hash_token(token)}).first()
            return None if row is None else AnnotatorRow(**row._mapping)

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
            expires = utcnow() + timedelta(seconds=ttl_seconds)
            s.add(LoginCodeRow(code_hash=hash_token(code), annotator=name, expires_at=expires))
        return code

    def redeem_login_code(self, code: str) -> AnnotatorRow | None:
        """The enabled annotator a live login code belongs to; the code is used up either way."""
        with self._write() as s:
            row = s.get(LoginCodeRow, hash_token(code))
            if row is None:
                return None
            s.delete(row)
            if aware(row.expires_at) <= utcnow():
                return None
            return self._enabled_annotator(s, row.annotator)

    def new_session(self, name: str, ttl_seconds: float = 30 * 86400) -> str:
        sid = secrets.token_urlsafe(32)
        with self._write() as s:
            expires = utcnow() + timedelta(seconds=ttl_seconds)
            s.add(SessionRow(id_hash=hash_token(sid), annotator=name, expires_at=expires))
        return sid

    def annotator_by_session(self, sid: str) -> AnnotatorRow | None:
        """The enabled annotator of a live session, read from the store on every call."""
        with self._read() as s:
            row = s.get(SessionRow, hash_token(sid))
            if row is None or aware(row.expires_at) <= utcnow():
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

    def annotators(self) -> list[AnnotatorRow]:
        with self._read() as s:
            return list(s.scalars(select(AnnotatorRow).order_by(AnnotatorRow.id)))
