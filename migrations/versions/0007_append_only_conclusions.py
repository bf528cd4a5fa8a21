"""Conclusions and blind reviews become append-only, as the audit log is (0004): triggers refuse
any UPDATE or DELETE of a conclusion, any DELETE of a review, and any UPDATE of a review but the
one the service makes, its completion (completed_at from NULL to a time, nothing else changed).

A later migration that rebuilds `conclusions` or `reviews` on SQLite (batch mode recreates the
table) drops these triggers with the old table and must create them again.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# 23001 (restrict_violation) on PostgreSQL and RAISE(ABORT) on SQLite both reach the caller as an
# integrity error, as the audit log's refusals do.
_POSTGRESQL_UP = [
    """
    CREATE FUNCTION conclusions_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'conclusions are append-only: % refused', TG_OP USING ERRCODE = '23001';
    END
    $$
    """,
    """
    CREATE TRIGGER conclusions_no_update_or_delete BEFORE UPDATE OR DELETE ON conclusions
    FOR EACH ROW EXECUTE FUNCTION conclusions_append_only()
    """,
    """
    CREATE TRIGGER conclusions_no_truncate BEFORE TRUNCATE ON conclusions
    FOR EACH STATEMENT EXECUTE FUNCTION conclusions_append_only()
    """,
    # The whole row but completed_at must stay as it was, so that a column added later is
    # covered without this function changing.
    """
    CREATE FUNCTION reviews_complete_only() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        unchanged reviews;
    BEGIN
        IF TG_OP = 'UPDATE' AND OLD.completed_at IS NULL AND NEW.completed_at IS NOT NULL THEN
            unchanged := NEW;
            unchanged.completed_at := NULL;
            IF unchanged IS NOT DISTINCT FROM OLD THEN
                RETURN NEW;
            END IF;
        END IF;
        RAISE EXCEPTION 'reviews are append-only (only their completion is recorded): % refused',
            TG_OP USING ERRCODE = '23001';
    END
    $$
    """,
    """
    CREATE TRIGGER reviews_complete_only BEFORE UPDATE OR DELETE ON reviews
    FOR EACH ROW EXECUTE FUNCTION reviews_complete_only()
    """,
    """
    CREATE TRIGGER reviews_no_truncate BEFORE TRUNCATE ON reviews
    FOR EACH STATEMENT EXECUTE FUNCTION reviews_complete_only()
    """,
]
_POSTGRESQL_DOWN = [
    "DROP TRIGGER reviews_no_truncate ON reviews",
    "DROP TRIGGER reviews_complete_only ON reviews",
    "DROP FUNCTION reviews_complete_only()",
    "DROP TRIGGER conclusions_no_truncate ON conclusions",
    "DROP TRIGGER conclusions_no_update_or_delete ON conclusions",
    "DROP FUNCTION conclusions_append_only()",
]
_SQLITE_UP = [
    """
    CREATE TRIGGER conclusions_no_update BEFORE UPDATE ON conclusions
    BEGIN SELECT RAISE(ABORT, 'conclusions are append-only: UPDATE refused'); END
    """,
    """
    CREATE TRIGGER conclusions_no_delete BEFORE DELETE ON conclusions
    BEGIN SELECT RAISE(ABORT, 'conclusions are append-only: DELETE refused'); END
    """,
    # SQLite cannot compare whole rows: every column of reviews as of this revision, by IS
    # (equal, or both NULL).
    """
    CREATE TRIGGER reviews_complete_only BEFORE UPDATE ON reviews
    WHEN NOT (
        OLD.completed_at IS NULL AND NEW.completed_at IS NOT NULL
        AND NEW.id IS OLD.id
        AND NEW.case_id IS OLD.case_id
        AND NEW.search_id IS OLD.search_id
        AND NEW.reviewer_key_id IS OLD.reviewer_key_id
        AND NEW.requested_by_key_id IS OLD.requested_by_key_id
        AND NEW.created_at IS OLD.created_at
    )
    BEGIN
        SELECT RAISE(ABORT,
            'reviews are append-only (only their completion is recorded): UPDATE refused');
    END
    """,
    """
    CREATE TRIGGER reviews_no_delete BEFORE DELETE ON reviews
    BEGIN
        SELECT RAISE(ABORT,
            'reviews are append-only (only their completion is recorded): DELETE refused');
    END
    """,
]
_SQLITE_DOWN = [
    "DROP TRIGGER reviews_no_delete",
    "DROP TRIGGER reviews_complete_only",
    "DROP TRIGGER conclusions_no_delete",
    "DROP TRIGGER conclusions_no_update",
]


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for statement in _POSTGRESQL_UP if dialect == "postgresql" else _SQLITE_UP:
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for statement in _POSTGRESQL_DOWN if dialect == "postgresql" else _SQLITE_DOWN:
        op.execute(statement)
