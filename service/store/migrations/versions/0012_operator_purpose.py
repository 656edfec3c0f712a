"""messages to our on-call operators are deliveries of purpose `operator`, not `partner`

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30

They were written with the column's default (`partner`), so an incident's promise reminders and
escalations to operators counted in its partner delivery figures (summary, delivery log, metrics).
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

OPERATORS = "_operators"  # service.operators.OPERATORS: never a partner id


def upgrade() -> None:
    op.execute(f"UPDATE deliveries SET purpose = 'operator' WHERE partner_id = '{OPERATORS}'")  # noqa: S608


def downgrade() -> None:
    op.execute("UPDATE deliveries SET purpose = 'partner' WHERE purpose = 'operator'")
