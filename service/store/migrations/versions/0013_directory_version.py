"""directory version: one number the database raises on every write to the directory

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30

A dry run plans the whole audience of a notice. Reading 10,000 partners and 30,000 contacts for
each preview took most of its time, so a process keeps a summary of the directory between requests
(service/store/directory_snapshot.py). The summary is current while this number is unchanged:
triggers raise it on every insert, update and delete of partners, contacts and account owners,
whoever writes them (the API, an import, another process, a hand-written SQL statement).
PostgreSQL raises it once per statement, SQLite (which has only row triggers) once per row.
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

TABLES = ("partners", "contacts", "account_owners")
SQLITE_EVENTS = ("insert", "update", "delete")


def upgrade() -> None:
    op.create_table(
        "directory_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_directory_version")),
    )
    op.execute("INSERT INTO directory_version (id, version) VALUES (1, 0)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION herald_directory_changed() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN UPDATE directory_version SET version = version + 1 WHERE id = 1; RETURN NULL; END $$"
        )
        for table in TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_directory_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION herald_directory_changed()"
            )
        return
    for table in TABLES:
        for event in SQLITE_EVENTS:
            op.execute(
                f"CREATE TRIGGER {table}_directory_{event} AFTER {event.upper()} ON {table} "  # noqa: S608
                "BEGIN UPDATE directory_version SET version = version + 1 WHERE id = 1; END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"DROP TRIGGER {table}_directory_changed ON {table}")
        op.execute("DROP FUNCTION herald_directory_changed()")
    else:
        for table in TABLES:
            for event in SQLITE_EVENTS:
                op.execute(f"DROP TRIGGER {table}_directory_{event}")
    op.drop_table("directory_version")
