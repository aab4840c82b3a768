"""Each query counts its judgements (kept by the answer's transaction), indexed where open

Revision ID: 0003
Revises: 0002

`queries.judged` replaces the per-query count of judgements that leasing, progress and
withdrawal evaluated for every query; the backfill sets it from the judgements already stored,
and `ix_queries_open` indexes the queries still short of their overlap (`judged < overlap`).
"""

import sqlalchemy as sa
from alembic import op

from rlhflab.feedback.schema import recount_judged

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

OPEN = sa.text("judged < overlap")


def upgrade() -> None:
    # a plain ADD COLUMN (SQLite allows NOT NULL with a constant default): a batch would rebuild
    # the table, which the judgements' foreign keys forbid
    op.add_column(
        "queries", sa.Column("judged", sa.Integer(), server_default=sa.text("0"), nullable=False)
    )
    recount_judged(op.get_bind())
    op.create_index("ix_queries_open", "queries", ["id"], sqlite_where=OPEN, postgresql_where=OPEN)


def downgrade() -> None:
    op.drop_index("ix_queries_open", table_name="queries")
    with op.batch_alter_table("queries") as batch_op:
        batch_op.drop_column("judged")
