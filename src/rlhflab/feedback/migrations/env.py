"""Alembic's environment: migrations run on the connection `feedback.migrate` hands over (inside
its transaction and, on PostgreSQL, under its advisory lock), or on `sqlalchemy.url` when the
`alembic` command is run by hand (see docs/feedback-store.md)."""

from alembic import context
from sqlalchemy import create_engine

from rlhflab.feedback.schema import Base

config = context.config
connection = config.attributes.get("connection")
if connection is not None:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=Base.metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
