"""The store's schema over time (feedback/migrate.py): Alembic migrations build exactly the
declared tables; older stores, stamped or from before migrations, open with their data."""

import threading

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from rlhflab.feedback.migrate import HEAD, alembic_config, current_revision
from rlhflab.feedback.schema import Base, engine_url
from rlhflab.feedback.store import FeedbackStore


def migrate_to(url: str, revision: str, forget_version: bool = False) -> None:
    """The store at `url` built by the migrations up to `revision` (with one stored judgement);
    `forget_version` drops the version table, as in stores written before migrations."""
    engine = create_engine(engine_url(url))
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), revision)
        conn.execute(
            text(
                "INSERT INTO queries (kind, payload, overlap, env_steps, created_at) "
                "VALUES ('text_pair', :p, 1, 0, CURRENT_TIMESTAMP)"
            ),
            {"p": '{"prompt": "p", "responses": ["a", "b"]}'},
        )
        conn.execute(
            text(
                "INSERT INTO judgements (query_id, annotator, label, payload, created_at) "
                "VALUES (1, 'alice', 'left', '{}', CURRENT_TIMESTAMP)"
            )
        )
        if forget_version:
            conn.execute(text("DROP TABLE alembic_version"))
    engine.dispose()


def test_head_is_the_last_revision():
    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == HEAD


def test_the_migrations_build_exactly_the_declared_tables(store_url):
    engine = create_engine(engine_url(store_url))
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "head")
    with engine.connect() as conn:
        assert current_revision(conn) == HEAD
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    engine.dispose()


@pytest.mark.parametrize(
    ("revision", "forget_version"),
    [("0001", False), ("0002", False), ("0001", True)],
    ids=["stamped 0001", "stamped 0002", "before migrations"],
)
def test_an_older_store_opens_upgraded_with_its_data(store_url, revision, forget_version):
    migrate_to(store_url, revision, forget_version)
    store = FeedbackStore(store_url)
    assert store.schema == ("adopted" if forget_version else f"upgraded from {revision}")
    assert "tx" in {c["name"] for c in inspect(store.engine).get_columns("judgements")}
    assert store.judgements() == [(1, 1, "alice", "left")]
    # the judgement counter is backfilled from the stored judgement: the query is complete
    assert store.query(1).judged == 1 and store.count_unanswered() == 0
    store.add_text_query("text_pair", "q", ["x", "y"])
    assert FeedbackStore(store_url).schema == "current"


def test_workers_opening_a_new_store_at_once_create_it_once(pg_url):
    """App workers and a trainer starting together: the schema is made under a lock, once."""
    done: list[str] = []
    threads = [
        threading.Thread(target=lambda: done.append(FeedbackStore(pg_url).schema)) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(done) == ["created", "current", "current", "current"]
