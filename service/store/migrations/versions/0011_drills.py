"""drills: scenario runs, and the drill flag on incidents, notices and deliveries

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    for table in ("incidents", "notices", "deliveries"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("drill", sa.String(length=8), nullable=True))
    op.create_table(
        "drills",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("scenario_key", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("mode", sa.String(length=8), nullable=False),
        sa.Column("time_scale", sa.Float(), nullable=False),
        sa.Column("scenario", sa.JSON(), nullable=False),
        sa.Column("incident_id", Id, nullable=True),
        sa.Column("started_by", sa.String(length=64), nullable=True),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drills")),
    )
    with op.batch_alter_table("drills", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_drills_scenario_key"), ["scenario_key"], unique=False)


def downgrade() -> None:
    op.drop_table("drills")
    for table in ("deliveries", "notices", "incidents"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("drill")
