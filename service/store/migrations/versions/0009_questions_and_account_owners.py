"""partner questions, inbound mail, account owners; delivery purpose

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "account_owners",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("partner_id", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("channels", sa.JSON(), nullable=False),
        sa.Column("language", sa.String(length=2), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name=op.f("fk_account_owners_partner_id_partners"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_owners")),
        sa.UniqueConstraint("partner_id", "key", name="uq_account_owners_partner_key"),
    )
    with op.batch_alter_table("account_owners", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_account_owners_partner_id"), ["partner_id"], unique=False)

    op.create_table(
        "questions",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("incident_id", Id, nullable=True),
        sa.Column("notice_id", Id, nullable=False),
        sa.Column("partner_id", sa.String(length=64), nullable=False),
        sa.Column("contact_id", Id, nullable=False),
        sa.Column("delivery_id", Id, nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("language", sa.String(length=2), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("asked_at", sa.Float(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("answer", sa.JSON(), nullable=True),
        sa.Column("answered_by", sa.String(length=64), nullable=True),
        sa.Column("answered_at", sa.Float(), nullable=True),
        sa.Column("publish", sa.JSON(), nullable=True),
        sa.Column("published_in_notice_id", Id, nullable=True),
        sa.Column("remind_due_at", sa.Float(), nullable=True),
        sa.Column("reminders", sa.Integer(), nullable=False),
        sa.Column("inbound_mail_id", Id, nullable=True),
        sa.ForeignKeyConstraint(["notice_id"], ["notices.id"], name=op.f("fk_questions_notice_id_notices")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_questions")),
    )
    with op.batch_alter_table("questions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_questions_incident_id"), ["incident_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_questions_remind_due_at"), ["remind_due_at"], unique=False)

    op.create_table(
        "inbound_mail",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("received_at", sa.Float(), nullable=False),
        sa.Column("message_id", sa.String(length=998), nullable=True),
        sa.Column("sender", sa.String(length=320), nullable=True),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("question_id", Id, nullable=True),
        sa.Column("notice_id", Id, nullable=True),
        sa.Column("partner_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_mail")),
    )
    with op.batch_alter_table("inbound_mail", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_inbound_mail_received_at"), ["received_at"], unique=False)

    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("purpose", sa.String(length=16), server_default="partner", nullable=False))
        batch_op.add_column(sa.Column("owner_id", Id, nullable=True))
        batch_op.add_column(sa.Column("question_id", Id, nullable=True))
        batch_op.create_index(batch_op.f("ix_deliveries_question_id"), ["question_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deliveries_question_id"))
        batch_op.drop_column("question_id")
        batch_op.drop_column("owner_id")
        batch_op.drop_column("purpose")
    op.drop_table("inbound_mail")
    op.drop_table("questions")
    op.drop_table("account_owners")
