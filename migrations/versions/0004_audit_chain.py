"""The audit log becomes a hash chain and append-only: each entry gets a position, the previous
entry's hash and its own; a one-row `audit_chain` table holds the head; triggers refuse UPDATE and
DELETE on `audit_log`. Existing entries are chained in id order.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

import hashlib
import json
from datetime import UTC

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

GENESIS_HASH = "0" * 64

# The same statements on both databases would be nicer; SQLite has no trigger functions and
# PostgreSQL no RAISE(ABORT). 23001 (restrict_violation) makes both an integrity error.
_POSTGRESQL_UP = [
    """
    CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP USING ERRCODE = '23001';
    END
    $$
    """,
    """
    CREATE TRIGGER audit_log_no_update_or_delete BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()
    """,
    """
    CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()
    """,
    """
    CREATE FUNCTION audit_chain_forward_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'UPDATE' AND NEW.id = OLD.id AND NEW.sequence >= OLD.sequence THEN
            RETURN NEW;
        END IF;
        RAISE EXCEPTION 'the audit chain head only moves forward: % refused', TG_OP
            USING ERRCODE = '23001';
    END
    $$
    """,
    """
    CREATE TRIGGER audit_chain_forward_only BEFORE UPDATE OR DELETE ON audit_chain
    FOR EACH ROW EXECUTE FUNCTION audit_chain_forward_only()
    """,
]
_POSTGRESQL_DOWN = [
    "DROP TRIGGER audit_chain_forward_only ON audit_chain",
    "DROP FUNCTION audit_chain_forward_only()",
    "DROP TRIGGER audit_log_no_truncate ON audit_log",
    "DROP TRIGGER audit_log_no_update_or_delete ON audit_log",
    "DROP FUNCTION audit_log_append_only()",
]
_SQLITE_UP = [
    """
    CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused'); END
    """,
    """
    CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused'); END
    """,
    """
    CREATE TRIGGER audit_chain_no_rewind BEFORE UPDATE ON audit_chain
    WHEN NEW.id != OLD.id OR NEW.sequence < OLD.sequence
    BEGIN SELECT RAISE(ABORT, 'the audit chain head only moves forward: UPDATE refused'); END
    """,
    """
    CREATE TRIGGER audit_chain_no_delete BEFORE DELETE ON audit_chain
    BEGIN SELECT RAISE(ABORT, 'the audit chain head only moves forward: DELETE refused'); END
    """,
]
_SQLITE_DOWN = [
    "DROP TRIGGER audit_chain_no_delete",
    "DROP TRIGGER audit_chain_no_rewind",
    "DROP TRIGGER audit_log_no_delete",
    "DROP TRIGGER audit_log_no_update",
]


def _entry_hash(row, sequence: int, previous_hash: str) -> str:
    """The chain's hash as app.audit.canonical_entry defines it, frozen here as of this
    revision so that later code changes cannot change what this migration wrote."""
    at = row.at if row.at.tzinfo is not None else row.at.replace(tzinfo=UTC)
    fields = {
        "sequence": sequence,
        "previous_hash": previous_hash,
        "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
        "key_id": row.key_id,
        "action": row.action,
        "target_type": row.target_type,
        "target_id": row.target_id,
        "details": json.loads(json.dumps(row.details)),
    }
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def upgrade() -> None:
    _create_audit_chain()
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sequence", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("previous_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("entry_hash", sa.String(length=64), nullable=True))
    count, head_hash = _chain_existing_entries()
    _insert_chain_head(count, head_hash)
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.alter_column("sequence", existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column("previous_hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column("entry_hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.create_index(batch_op.f("ix_audit_log_sequence"), ["sequence"], unique=True)

    # After the table's last rebuild (SQLite's batch mode recreates it, dropping its triggers).
    dialect = op.get_bind().dialect.name
    for statement in _POSTGRESQL_UP if dialect == "postgresql" else _SQLITE_UP:
        op.execute(statement)


def _create_audit_chain() -> None:
    op.create_table(
        "audit_chain",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("head_hash", sa.String(length=64), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_audit_chain_one_row"),
        sa.PrimaryKeyConstraint("id"),
    )


def _chain_existing_entries() -> tuple[int, str]:
    """Chain the entries there are, in the order they were written; return how many there are
    and the last one's hash (the genesis hash when there are none)."""
    log = sa.table(
        "audit_log",
        sa.column("id", sa.Integer()),
        sa.column("at", sa.DateTime(timezone=True)),
        sa.column("key_id", sa.Integer()),
        sa.column("action", sa.String()),
        sa.column("target_type", sa.String()),
        sa.column("target_id", sa.Integer()),
        sa.column("details", sa.JSON()),
        sa.column("sequence", sa.Integer()),
        sa.column("previous_hash", sa.String()),
        sa.column("entry_hash", sa.String()),
    )
    connection = op.get_bind()
    rows = connection.execute(sa.select(log).order_by(log.c.id)).all()
    chained, previous = [], GENESIS_HASH
    for sequence, row in enumerate(rows, start=1):
        digest = _entry_hash(row, sequence, previous)
        chained.append({"row_id": row.id, "s": sequence, "p": previous, "h": digest})
        previous = digest
    if chained:
        connection.execute(
            log.update()
            .where(log.c.id == sa.bindparam("row_id"))
            .values(
                sequence=sa.bindparam("s"),
                previous_hash=sa.bindparam("p"),
                entry_hash=sa.bindparam("h"),
            ),
            chained,
        )
    return len(chained), previous


def _insert_chain_head(sequence: int, head_hash: str) -> None:
    op.bulk_insert(
        sa.table(
            "audit_chain",
            sa.column("id", sa.Integer()),
            sa.column("sequence", sa.Integer()),
            sa.column("head_hash", sa.String()),
        ),
        [{"id": 1, "sequence": sequence, "head_hash": head_hash}],
    )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for statement in _POSTGRESQL_DOWN if dialect == "postgresql" else _SQLITE_DOWN:
        op.execute(statement)
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_log_sequence"))
        batch_op.drop_column("entry_hash")
        batch_op.drop_column("previous_hash")
        batch_op.drop_column("sequence")
    op.drop_table("audit_chain")
