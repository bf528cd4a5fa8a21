"""Blind review that is really blind: a review keeps the case's status, description and last
change as they were when it was asked (what its reviewer is shown until it ends), it can be
withdrawn (when, and by whom), and a conclusion names the open review its examiner was under
when they signed it (a conclusion made blind).

Reviews open before this revision get the case as it is now: what it was when they were asked
was never recorded.

The append-only triggers of 0007 are taken down while the tables change (SQLite's batch mode
recreates the tables, which drops them; the backfill is an UPDATE they would refuse) and put
back; the reviews trigger then admits one more change of an open review: its withdrawal.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

SNAPSHOT_COLUMNS = {
    "case_status_when_asked": (sa.String(length=12), "status"),
    "case_description_when_asked": (sa.Text(), "description"),
    "case_updated_at_when_asked": (sa.DateTime(timezone=True), "updated_at"),
}

# An open review (neither completed nor withdrawn) may be completed (completed_at set) or
# withdrawn (withdrawn_at and withdrawn_by_key_id set), nothing else changed; nothing more.
_POSTGRESQL_REVIEWS = """
    CREATE OR REPLACE FUNCTION reviews_complete_only() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        unchanged reviews;
    BEGIN
        IF TG_OP = 'UPDATE' AND OLD.completed_at IS NULL AND OLD.withdrawn_at IS NULL THEN
            unchanged := NEW;
            IF NEW.completed_at IS NOT NULL AND NEW.withdrawn_at IS NULL
                    AND NEW.withdrawn_by_key_id IS NULL THEN
                unchanged.completed_at := NULL;
                IF unchanged IS NOT DISTINCT FROM OLD THEN
                    RETURN NEW;
                END IF;
            ELSIF NEW.completed_at IS NULL AND NEW.withdrawn_at IS NOT NULL
                    AND NEW.withdrawn_by_key_id IS NOT NULL THEN
                unchanged.withdrawn_at := NULL;
                unchanged.withdrawn_by_key_id := NULL;
                IF unchanged IS NOT DISTINCT FROM OLD THEN
                    RETURN NEW;
                END IF;
            END IF;
        END IF;
        RAISE EXCEPTION
            'reviews are append-only (only their completion or withdrawal is recorded): % refused',
            TG_OP USING ERRCODE = '23001';
    END
    $$
"""
_SQLITE_REVIEWS = [
    "DROP TRIGGER reviews_complete_only",
    """
    CREATE TRIGGER reviews_complete_only BEFORE UPDATE ON reviews
    WHEN NOT (
        OLD.completed_at IS NULL AND OLD.withdrawn_at IS NULL
        AND (
            (NEW.completed_at IS NOT NULL AND NEW.withdrawn_at IS NULL
                AND NEW.withdrawn_by_key_id IS NULL)
            OR (NEW.completed_at IS NULL AND NEW.withdrawn_at IS NOT NULL
                AND NEW.withdrawn_by_key_id IS NOT NULL)
        )
        AND NEW.id IS OLD.id
        AND NEW.case_id IS OLD.case_id
        AND NEW.search_id IS OLD.search_id
        AND NEW.reviewer_key_id IS OLD.reviewer_key_id
        AND NEW.requested_by_key_id IS OLD.requested_by_key_id
        AND NEW.created_at IS OLD.created_at
        AND NEW.case_status_when_asked IS OLD.case_status_when_asked
        AND NEW.case_description_when_asked IS OLD.case_description_when_asked
        AND NEW.case_updated_at_when_asked IS OLD.case_updated_at_when_asked
    )
    BEGIN
        SELECT RAISE(ABORT,
            'reviews are append-only (only their completion or withdrawal is recorded): UPDATE refused');
    END
    """,
]


def _append_only():
    """Revision 0007's module: its triggers come down and go back up around the changes."""
    path = Path(__file__).with_name("0007_append_only_conclusions.py")
    spec = importlib.util.spec_from_file_location("revision_0007", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upgrade() -> None:
    append_only = _append_only()
    append_only.downgrade()
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.add_column(sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("withdrawn_by_key_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            "fk_reviews_withdrawn_by_key_id", "api_keys", ["withdrawn_by_key_id"], ["id"]
        )
        for name, (kind, _) in SNAPSHOT_COLUMNS.items():
            batch_op.add_column(sa.Column(name, kind, nullable=True))
    for name, (_, case_column) in SNAPSHOT_COLUMNS.items():
        op.execute(
            f"UPDATE reviews SET {name} = "
            f"(SELECT cases.{case_column} FROM cases WHERE cases.id = reviews.case_id)"
        )
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        for name, (kind, _) in SNAPSHOT_COLUMNS.items():
            batch_op.alter_column(name, existing_type=kind, nullable=False)
    with op.batch_alter_table("conclusions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("blind_review_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            "fk_conclusions_blind_review_id", "reviews", ["blind_review_id"], ["id"]
        )
    append_only.upgrade()
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_POSTGRESQL_REVIEWS)
    else:
        for statement in _SQLITE_REVIEWS:
            op.execute(statement)


def downgrade() -> None:
    append_only = _append_only()
    append_only.downgrade()
    with op.batch_alter_table("conclusions", schema=None) as batch_op:
        batch_op.drop_constraint("fk_conclusions_blind_review_id", type_="foreignkey")
        batch_op.drop_column("blind_review_id")
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        for name in SNAPSHOT_COLUMNS:
            batch_op.drop_column(name)
        batch_op.drop_constraint("fk_reviews_withdrawn_by_key_id", type_="foreignkey")
        batch_op.drop_column("withdrawn_by_key_id")
        batch_op.drop_column("withdrawn_at")
    append_only.upgrade()
