"""Gold questions indexed: a gold claim no longer walks every query

Revision ID: 0004
Revises: 0003

With `--gold-rate` > 0, a share of leases claims the oldest gold question the annotator has
not answered (`gold IS NOT NULL`, in id order). Without an index that walked the queries from
the first; `ix_queries_gold` holds the gold questions alone, in id order.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

GOLD = sa.text("gold IS NOT NULL")


def upgrade() -> None:
    op.create_index("ix_queries_gold", "queries", ["id"], sqlite_where=GOLD, postgresql_where=GOLD)


def downgrade() -> None:
    op.drop_index("ix_queries_gold", table_name="queries")
