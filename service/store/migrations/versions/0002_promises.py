"""promises: each promised next update, its state and its reminders

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "promises",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("incident_id", Id, nullable=False),
        sa.Column("notice_id", Id, nullable=False),
        sa.Column("due_at", sa.Float(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("check_at", sa.Float(), nullable=True),
        sa.Column("kept_by_notice_id", Id, nullable=True),
        sa.Column("kept_at", sa.Float(), nullable=True),
        sa.Column("reminded_due_soon_at", sa.Float(), nullable=True),
        sa.Column("reminded_overdue_at", sa.Float(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_promises")),
        sa.UniqueConstraint("notice_id", name=op.f("uq_promises_notice_id")),
    )
    with op.batch_alter_table("promises", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_promises_incident_id"), ["incident_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_promises_check_at"), ["check_at"], unique=False)


def downgrade() -> None:
    op.drop_table("promises")
