"""The feedback store's schema over time, since stores outlive versions.

Opening a store (`prepare`) brings it to the current schema, in one transaction and, on
PostgreSQL, under an advisory lock, so that several app workers and a trainer starting at once
do not race:

- an empty database gets the tables of `schema.Base` and is stamped with `HEAD`;
- a store stamped by an older rlhflab is upgraded by the Alembic migrations in
  `feedback/migrations/versions/` (one module per revision);
- a store written before rlhflab had migrations (tables but no `alembic_version`) first gets the
  nullable columns it lacks, added in place (`schema.add_missing_columns`, the way such stores
  were always upgraded), and is then stamped with `HEAD`: from then on only Alembic migrates it.

A schema change is a new revision (`alembic revision --autogenerate`, docs/feedback-store.md) and
a new `HEAD` here; `tests/test_migrations.py` checks that the migrations build exactly the tables
`schema.Base` declares, and that `HEAD` is the last revision.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect, text

from rlhflab.feedback.schema import Base, add_missing_columns

HEAD = "0004"  # the newest revision in migrations/versions/
SCRIPTS = Path(__file__).parent / "migrations"
LOCK_KEY = 0x726C_6866  # "rlhf": the advisory lock that serialises schema changes on PostgreSQL
VERSION_TABLE = "alembic_version"


def alembic_config(connection=None, url: str | None = None):
    """Alembic's configuration for the store's migrations, on an open connection or a URL."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPTS))
    cfg.set_main_option("file_template", "v%%(rev)s_%%(slug)s")  # v0003_add_x.py: importable
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["connection"] = connection
    return cfg


def current_revision(conn) -> str | None:
    """The revision the store is stamped with; None before migrations (or for an empty one)."""
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    return conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def _stamp(conn, revision: str) -> None:
    conn.execute(
        text(
            f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version_num VARCHAR(32) NOT NULL, "
            f"CONSTRAINT {VERSION_TABLE}_pkc PRIMARY KEY (version_num))"
        )
    )
    conn.execute(text(f"DELETE FROM {VERSION_TABLE}"))
    conn.execute(text(f"INSERT INTO {VERSION_TABLE} (version_num) VALUES (:v)"), {"v": revision})


def prepare(engine) -> str:
    """Bring the store at `engine` to `HEAD`; returns what was done: "current", "created",
    "upgraded from REV" or "adopted" (a store from before migrations)."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY})
        revision = current_revision(conn)
        if revision == HEAD:
            return "current"
        if revision is not None:
            from alembic import command

            command.upgrade(alembic_config(conn), "head")
            return f"upgraded from {revision}"
        existing = set(inspect(conn).get_table_names()) & set(Base.metadata.tables)
        Base.metadata.create_all(conn)  # tables the store lacks, whole (all of them when empty)
        if existing:
            add_missing_columns(conn)
        _stamp(conn, HEAD)
        return "adopted" if existing else "created"
