"""The durable feedback store: segments, clips, queries, judgements, annotators and leases.

SQLAlchemy over SQLite in the run directory by default (write-ahead log,
one transaction per write, so a judgement that was acknowledged survives a SIGKILL of
the writer); any SQLAlchemy URL — a Postgres one, say — works too. The training loop
and the labeling app meet only here.

Query kinds: `segments` (two trajectory segments, optionally with clips), `text_pair`
(a prompt and two responses), `ranking` (K responses), `rating` (one response, 1–7),
`critique` (free text about one response), `correction` (an edited response), `clip_rating`
(one trajectory segment, 1–7). A segment pair may ask for process feedback (`payload["parts"]`:
n aligned parts); its judgements then carry one judgement per part (`payload["parts"]`).
Pairwise answers are stored in the query's own orientation; `shown_swapped` records
whether the annotator saw the two sides the other way round.
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import numpy as np
from sqlalchemy import (
    BigInteger,
    and_,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, aliased

from rlhflab.feedback.accounts import AccountsMixin
from rlhflab.feedback.clips import GIF, MP4, Clip
from rlhflab.feedback.leases import LeaseMixin
from rlhflab.feedback.migrate import prepare
from rlhflab.feedback.run_state import RunStateMixin
from rlhflab.feedback.schema import (
    JUDGEMENTS,
    LEASES,
    LIVE,
    MAX_RESPONSES,
    NOT_GOLD,
    OPEN,
    PAIR_KINDS,
    QUERIES,
    AuditRow,
    ClipLike,
    ClipRow,
    JudgementRow,
    LeaseRow,
    QueryRow,
    SegmentRow,
    SettingRow,
    StoreError,
    engine_url,
    pack,
    shown_url,
    utcnow,
)
from rlhflab.types import Comparison, Judgement, Query, Segment

# the statements every stored judgement runs, built once (see leases.py)
COUNT_JUDGEMENT = (
    update(QUERIES)
    .where(QUERIES.c.id == bindparam("qid"))
    .values(judged=QUERIES.c.judged + 1)
    .returning(
        QUERIES.c.kind, QUERIES.c.overlap, QUERIES.c.judged, QUERIES.c.withdrawn, QUERIES.c.gold
    )
)
END_LEASE = delete(LEASES).where(LEASES.c.query_id == bindparam("qid"))
JUDGEMENT_FIELDS = ("annotator", "label", "seconds", "payload", "shown_swapped", "created_at")


class FeedbackStore(LeaseMixin, AccountsMixin, RunStateMixin):
    def __init__(self, url: str):
        self.url = url
        target = engine_url(url)
        self.sqlite = target.get_backend_name() == "sqlite"
        # PostgreSQL: enough connections for an app worker's thread pool. Not pinged before use
        # (pool_pre_ping: a round trip on every checkout, several per judgement): after the
        # server restarts, the first statement on a stale connection fails (its request gets an
        # error, nothing is acknowledged) and SQLAlchemy then invalidates the whole pool, so the
        # next checkouts connect afresh (its "optimistic" disconnect handling)
        options = (
            {}
            if self.sqlite
            else {
                "pool_size": 10,
                "max_overflow": 20,
                "connect_args": {"connect_timeout": 10},
            }
        )
        self.engine = create_engine(target, future=True, **options)
        self.reader = self.engine
        # SQLite: writers in this process queue on a lock (FIFO) before BEGIN IMMEDIATE takes the
        # database's; PostgreSQL: writers run concurrently, rows locked where it matters
        self._write_lock: AbstractContextManager = (
            threading.Lock() if self.sqlite else nullcontext()
        )
        # PostgreSQL: each judgement records its transaction, for commit-ordered reads
        self._tx: Any = (
            None
            if self.sqlite
            else literal_column("pg_current_xact_id()::text::bigint", BigInteger)
        )
        # the judgement insert, built once (PostgreSQL: with the transaction id)
        self._insert_judgement_stmt = (
            insert(JUDGEMENTS)
            .values(
                {
                    **{k: bindparam(k) for k in JUDGEMENT_FIELDS},
                    "query_id": bindparam("qid"),
                    "tx": self._tx,
                }
            )
            .returning(JUDGEMENTS.c.id)
        )
        if self.sqlite:  # writers take the lock at BEGIN; readers (a second engine) never block
            event.listen(self.engine, "connect", _sqlite_connect)
            event.listen(self.engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
            self.reader = create_engine(url, future=True)
            event.listen(self.reader, "connect", _sqlite_pragmas)
        try:
            self.schema = prepare(self.engine)  # created, current, upgraded or adopted
        except (OperationalError, InterfaceError) as exc:
            self.close()
            reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
            raise StoreError(f"cannot open the feedback store {shown_url(url)}: {reason}") from exc

    @contextmanager
    def _write(self):
        """One write transaction; on SQLite it takes the write lock at BEGIN, so read-then-write is
        atomic.

        Writers in this process queue on a lock first: a FIFO wait instead of SQLite's
        sleep-and-retry."""
        with self._write_lock, Session(self.engine, expire_on_commit=False) as s, s.begin():
            yield s

    @contextmanager
    def _write_core(self):
        """`_write` on a plain connection, for the hot paths' Core statements."""
        with self._write_lock, self.engine.begin() as conn:
            yield conn

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
        parts: int = 0,
    ) -> list[int]:
        """Pairs of segments (with their clips, if rendered), all in one transaction.

        A clip is a `clips.Clip` (bytes, type, frame count and rate) or encoded bytes (MP4 or
        GIF, recognised by their header). A pair of identical segments is refused: nobody can
        prefer one of two equal things. `gold` gives each pair a known answer (gold questions).
        `parts` > 0 asks for process feedback too: a judgement of each of that many aligned
        parts of the pair."""
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
                rows = [_segment_row(g) for g in (left, right)]
                s.add_all(rows)
                s.flush()
                if clips is not None:
                    s.add_all(_clip_row(r.id, c) for r, c in zip(rows, clips[k]))
                q = QueryRow(
                    kind="segments",
                    left_id=rows[0].id,
                    right_id=rows[1].id,
                    env_steps=left.env_steps,
                    payload={**(meta or {}), **({"parts": parts} if parts else {})},
                    overlap=overlap,
                    gold=None if gold is None else Judgement(gold[k]).value,
                )
                s.add(q)
                s.flush()
                ids.append(q.id)
        return ids

    def add_rating_queries(
        self,
        segments: list[Segment],
        clips: list[ClipLike] | None = None,
        overlap: int = 1,
    ) -> list[int]:
        """`clip_rating` queries: one segment each (with its clip, if rendered), to be rated 1–7;
        all in one transaction."""
        ids = []
        with self._write() as s:
            for k, segment in enumerate(segments):
                row = _segment_row(segment)
                s.add(row)
                s.flush()
                if clips is not None:
                    s.add(_clip_row(row.id, clips[k]))
                q = QueryRow(
                    kind="clip_rating", left_id=row.id, env_steps=segment.env_steps, overlap=overlap
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
                    kind=r.kind,
                    payload={"prompt": r.prompt, "responses": list(r.responses)},
                    judged=1,
                )
                s.add(q)
                s.flush()
                s.add(
                    JudgementRow(
                        query_id=q.id,
                        annotator=annotator,
                        label=r.label,
                        payload=r.payload,
                        tx=self._tx,
                    )
                )
        return len(records)

    def add_judged_pairs(self, pairs: list[tuple[Segment, Segment]], records: list) -> int:
        """Imported judgements of segment pairs (`exchange.SegmentFeedback`), in one transaction."""
        with self._write() as s:
            for (left, right), r in zip(pairs, records):
                rows = [
                    SegmentRow(
                        obs=pack(g.obs),
                        actions=pack(g.actions),
                        judged_rewards=pack(g.judged_rewards),
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

    def add_judgements(self, items: list[tuple], annotator: str = "synthetic") -> list[int]:
        """Several (query id, judgement) or (query id, judgement, payload) answers by one
        annotator, in one transaction."""
        with self._write() as s:
            return [
                self._insert_judgement(s, qid, j, annotator, payload=rest[0] if rest else None)
                for qid, j, *rest in items
            ]

    def _insert_judgement(
        self, s, query_id, judgement, annotator, seconds=None, payload=None, shown_swapped=None
    ) -> int:
        q = self._count_judgement(s, query_id)
        if q is None:
            raise KeyError(f"no query with id {query_id}")
        label = Judgement(judgement).value if q.kind in PAIR_KINDS else q.kind
        if q.kind not in PAIR_KINDS and judgement != q.kind:
            raise ValueError(
                f"query {query_id} is a {q.kind} query; its answer is a {q.kind}, not '{judgement}'"
            )
        return self._add_judgement_row(
            s, query_id, label, annotator, seconds, payload, shown_swapped
        )

    def _count_judgement(self, s, query_id: int):
        """One more judgement on the query's counter, in the transaction that stores it (so the
        counter is exact: a refused answer rolls both back), which on PostgreSQL locks the query
        row. Returns the query's kind, overlap, judged (counting this one), withdrawn and gold,
        or None if there is no such query."""
        return s.execute(COUNT_JUDGEMENT, {"qid": query_id}).first()

    def _add_judgement_row(
        self, s, query_id, label, annotator, seconds=None, payload=None, shown_swapped=None
    ) -> int:
        """Insert the judgement (its query already counted it) and end the query's lease."""
        values = {
            "qid": query_id,
            "annotator": annotator,
            "label": label,
            "seconds": seconds,
            "payload": payload or {},
            "shown_swapped": shown_swapped,
            "created_at": utcnow(),
        }
        jid = s.execute(self._insert_judgement_stmt, values).scalar_one()
        s.execute(END_LEASE, {"qid": query_id})
        return jid

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
        wanted = (OPEN, LIVE, NOT_GOLD)
        with self._read() as s:
            return s.scalar(select(func.count(QueryRow.id)).where(*wanted)) or 0

    def pending_queries(self) -> list[Query]:
        """Segment-pair queries that no one has judged yet, oldest first."""
        return [Query(*r.segments(), r.id) for r in self._unjudged("segments")]

    def pending_ratings(self) -> list[tuple[int, Segment]]:
        """`clip_rating` queries that no one has judged yet, oldest first: (id, segment)."""
        return [(r.id, r.rated_segment()) for r in self._unjudged("clip_rating")]

    def _unjudged(self, kind: str) -> list[QueryRow]:
        with self._read() as s:
            judged = select(JudgementRow.query_id)
            stmt = select(QueryRow).where(
                QueryRow.kind == kind, QueryRow.id.not_in(judged), LIVE, NOT_GOLD
            )
            return list(s.scalars(stmt.order_by(QueryRow.id)).unique().all())

    def unjudged_text_queries(self) -> list[tuple[int, str, dict]]:
        """Text comparison queries (text_pair, ranking) no one has judged, live, not gold, oldest
        first, as (id, kind, payload)."""
        with self._read() as s:
            judged = select(JudgementRow.query_id)
            rows = s.execute(
                select(QueryRow.id, QueryRow.kind, QueryRow.payload)
                .where(
                    QueryRow.kind.in_(("text_pair", "ranking")),
                    QueryRow.id.not_in(judged),
                    LIVE,
                    NOT_GOLD,
                )
                .order_by(QueryRow.id)
            )
            return [(r[0], r[1], r[2]) for r in rows]

    def comparisons(self, after: int = 0) -> list[Comparison]:
        """Every judgement of a segment pair with its two segments, in the order they were
        committed; with `after` (the id of the last one read), only those committed since.

        On SQLite writers are serialised, so ids follow commit order. On PostgreSQL an id is
        drawn at insert, not at commit, so a slower transaction can commit a lower id after a
        higher one has been read: there rows come ordered by (transaction, id), only from
        transactions older than every one still open (`pg_snapshot_xmin`), and `after` resumes
        behind its own row in that order; a row is read once it can no longer be overtaken."""
        with self._read() as s:
            stmt = (
                select(JudgementRow)
                .join(QueryRow, JudgementRow.query_id == QueryRow.id)
                .where(QueryRow.kind == "segments", NOT_GOLD, *self._since(after))
                .order_by(*self._commit_order())
            )
            rows = s.scalars(stmt).unique().all()
            return [
                Comparison(
                    r.query_id,
                    *r.query.segments(),
                    Judgement(r.label),
                    r.annotator,
                    {"seconds": r.seconds, "shown_swapped": r.shown_swapped}
                    | ({"parts": r.payload["parts"]} if (r.payload or {}).get("parts") else {}),
                    r.id,
                )
                for r in rows
            ]

    def ratings(self) -> list[tuple[int, Segment, int, str]]:
        """Every judgement of a `clip_rating` query, in order: (judgement id, segment, rating
        1–7, annotator)."""
        with self._read() as s:
            stmt = (
                select(JudgementRow)
                .join(QueryRow, JudgementRow.query_id == QueryRow.id)
                .where(QueryRow.kind == "clip_rating", NOT_GOLD)
                .order_by(JudgementRow.id)
            )
            rows = s.scalars(stmt).unique().all()
            return [
                (r.id, r.query.rated_segment(), int(r.payload["rating"]), r.annotator) for r in rows
            ]

    def _commit_order(self) -> tuple:
        if self.sqlite:
            return (JudgementRow.id,)
        return (func.coalesce(JudgementRow.tx, 0), JudgementRow.id)

    def _since(self, after: int) -> tuple:
        """Conditions for the judgements committed after judgement `after` (see `comparisons`)."""
        if self.sqlite:
            return (JudgementRow.id > after,)
        tx = func.coalesce(JudgementRow.tx, 0)  # NULL: stored before the column, long committed
        last = aliased(JudgementRow)
        last_tx = select(func.coalesce(last.tx, 0)).where(last.id == after).scalar_subquery()
        horizon = literal_column(
            "pg_snapshot_xmin(pg_current_snapshot())::text::bigint", BigInteger
        )
        return (
            tx < horizon,  # every transaction below the horizon has ended: nothing can overtake
            or_(
                tx > last_tx,
                and_(tx == last_tx, JudgementRow.id > after),
                and_(last_tx.is_(None), JudgementRow.id > after),  # `after` is 0 (or unknown)
            ),
        )

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
            counter = s.get(SettingRow, "relabels", with_for_update=not self.sqlite) or SettingRow(
                key="relabels", value="0"
            )
            counter.value = str(
                int(counter.value) + 1
            )  # readers that cache judgements re-read when this changes
            s.add(counter)

    def close(self) -> None:
        self.engine.dispose()
        self.reader.dispose()


def _segment_row(g: Segment) -> SegmentRow:
    return SegmentRow(
        obs=pack(g.obs),
        actions=pack(g.actions),
        judged_rewards=pack(g.judged_rewards),
        env_steps=g.env_steps,
        absorbing=None if g.absorbing is None else pack(g.absorbing),
    )


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
