"""Marked features and sequential unmasking: a conclusion keeps the candidate image it was made
on, the examiner's numbered marks and measurements, and whether its examiner had seen the
ranking (false when signed under sequential unmasking); a review may show its reviewer one
candidate, without rank, score or evidence, until they conclude.

Conclusions recorded before this revision had no marks and were all made with the ranking shown.

The append-only triggers (0007, and 0008's for reviews) are taken down while the tables change
(SQLite's batch mode recreates the tables, which drops them) and put back; SQLite's reviews
trigger names every column, so it is made again with the new one. Recreating `reviews`, which
conclusions refer to, relies on migrations/env.py's SQLite foreign keys: off while the
migrations run, checked once after.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

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
        AND NEW.sequential_person_id IS OLD.sequential_person_id
    )
    BEGIN
        SELECT RAISE(ABORT,
            'reviews are append-only (only their completion or withdrawal is recorded): UPDATE refused');
    END
    """,
]


def _revision(filename: str):
    path = Path(__file__).with_name(filename)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _triggers_down() -> None:
    _revision("0007_append_only_conclusions.py").downgrade()


def _triggers_up(sqlite_reviews: list[str]) -> None:
    """0007's triggers, then the reviews trigger as 0008 (PostgreSQL: it compares whole rows) or
    `sqlite_reviews` make it."""
    _revision("0007_append_only_conclusions.py").upgrade()
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_revision("0008_blind_review.py")._POSTGRESQL_REVIEWS)
    else:
        for statement in sqlite_reviews:
            op.execute(statement)


def upgrade() -> None:
    _triggers_down()
    with op.batch_alter_table("conclusions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("ranking_seen", sa.Boolean(), nullable=False, server_default=sa.true())
        )
        batch_op.add_column(sa.Column("candidate_image_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("marks", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.add_column(
            sa.Column("measurements", sa.JSON(), nullable=False, server_default="[]")
        )
        batch_op.create_foreign_key(
            "fk_conclusions_candidate_image_id", "images", ["candidate_image_id"], ["id"]
        )
    with op.batch_alter_table("conclusions", schema=None) as batch_op:
        for name in ("ranking_seen", "marks", "measurements"):
            batch_op.alter_column(name, server_default=None)
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sequential_person_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            "fk_reviews_sequential_person_id", "people", ["sequential_person_id"], ["id"]
        )
    _triggers_up(_SQLITE_REVIEWS)


def downgrade() -> None:
    _triggers_down()
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.drop_constraint("fk_reviews_sequential_person_id", type_="foreignkey")
        batch_op.drop_column("sequential_person_id")
    with op.batch_alter_table("conclusions", schema=None) as batch_op:
        batch_op.drop_constraint("fk_conclusions_candidate_image_id", type_="foreignkey")
        for name in ("measurements", "marks", "candidate_image_id", "ranking_seen"):
            batch_op.drop_column(name)
    _triggers_up(_revision("0008_blind_review.py")._SQLITE_REVIEWS)
