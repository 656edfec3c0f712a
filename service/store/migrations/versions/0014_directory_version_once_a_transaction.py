"""directory version: raised once a transaction on PostgreSQL

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30

Migration 0013's statement trigger updated the one `directory_version` row for every statement
that wrote partners, contacts or account owners. An import that updates 30,000 contacts one
statement at a time updated that row 30,000 times in one transaction, and PostgreSQL keeps every
version of a row a transaction writes: each update walked a longer chain, and a re-import of
10,000 partners took 18 s instead of about 5. The trigger now raises the version once a
transaction (a transaction-local setting remembers it did). Readers only ever see committed
versions, so once is enough. SQLite is unchanged: its row triggers cost the same every time.
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

ONCE = """
CREATE OR REPLACE FUNCTION herald_directory_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('herald.directory_changed_in', true) IS DISTINCT FROM txid_current()::text THEN
        UPDATE directory_version SET version = version + 1 WHERE id = 1;
        PERFORM set_config('herald.directory_changed_in', txid_current()::text, true);
    END IF;
    RETURN NULL;
END $$
"""
EVERY_STATEMENT = (
    "CREATE OR REPLACE FUNCTION herald_directory_changed() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "BEGIN UPDATE directory_version SET version = version + 1 WHERE id = 1; RETURN NULL; END $$"
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(ONCE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(EVERY_STATEMENT)
