"""Judgements record the transaction that stored them (PostgreSQL), for commit-ordered reads

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("judgements") as batch_op:
        batch_op.add_column(sa.Column("tx", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("judgements") as batch_op:
        batch_op.drop_column("tx")
