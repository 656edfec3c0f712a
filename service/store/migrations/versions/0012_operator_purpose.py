"""operator messages: deliveries of purpose `operator`, and notice kinds long enough for them

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30

Messages to our on-call operators were written with the column's default purpose (`partner`), so
an incident's promise reminders and escalations to operators counted in its partner delivery
figures (summary, delivery log, metrics). And `notices.kind` held 24 characters while the kind of
an unanswered question's reminder, `operator_question_unanswered`, has 28: PostgreSQL refused the
reminder (SQLite does not enforce the length).
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

OPERATORS = "_operators"  # service.operators.OPERATORS: never a partner id


def upgrade() -> None:
    with op.batch_alter_table("notices", schema=None) as batch_op:
        batch_op.alter_column(
            "kind", existing_type=sa.String(length=24), type_=sa.String(length=32), existing_nullable=False
        )
    op.execute(f"UPDATE deliveries SET purpose = 'operator' WHERE partner_id = '{OPERATORS}'")  # noqa: S608


def downgrade() -> None:
    op.execute("UPDATE deliveries SET purpose = 'partner' WHERE purpose = 'operator'")
    with op.batch_alter_table("notices", schema=None) as batch_op:
        batch_op.alter_column(
            "kind", existing_type=sa.String(length=32), type_=sa.String(length=24), existing_nullable=False
        )
