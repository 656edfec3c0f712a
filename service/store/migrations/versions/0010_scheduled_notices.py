"""scheduled notices: the time a notice is to be published, and the notice that scheduled it

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("notices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("send_at", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("follows_id", Id, nullable=True))
        batch_op.create_index(batch_op.f("ix_notices_send_at"), ["send_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_notices_follows_id"), ["follows_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("notices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notices_follows_id"))
        batch_op.drop_index(batch_op.f("ix_notices_send_at"))
        batch_op.drop_column("follows_id")
        batch_op.drop_column("send_at")
