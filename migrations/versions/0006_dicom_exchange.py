"""DICOM exchange: the application entities allowed to send by C-STORE, a case's inbox of received
query radiographs, the DICOMweb servers radiographs are pulled from, and each image's SOP Instance
UID (a re-sent DICOM object is the same image).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    _add_sop_instance_uid()
    _create_dicom_sources()
    _create_inbox_items()
    _create_dicomweb_servers()


def _add_sop_instance_uid() -> None:
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sop_instance_uid", sa.String(length=64), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_images_sop_instance_uid"), ["sop_instance_uid"], unique=False
        )


def _create_dicom_sources() -> None:
    op.create_table(
        "dicom_sources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ae_title", sa.String(length=16), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("issuer", sa.String(length=64), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by_key_id", sa.Integer(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.ForeignKeyConstraint(["created_by_key_id"], ["api_keys.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_dicom_sources_ae_title_live",
        "dicom_sources",
        ["ae_title"],
        unique=True,
        sqlite_where=sa.text("revoked_at IS NULL"),
        postgresql_where=sa.text("revoked_at IS NULL"),
    )


def _create_inbox_items() -> None:
    op.create_table(
        "inbox_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=True),
        sa.Column("image_metadata", sa.JSON(), nullable=False),
        sa.Column("received_via", sa.String(length=20), nullable=False),
        sa.Column("sender", sa.String(length=200), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.ForeignKeyConstraint(["key_id"], ["api_keys.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_inbox_items_case_id", "inbox_items", ["case_id"], unique=False)
    op.create_index("ix_inbox_items_sha256", "inbox_items", ["sha256"], unique=False)
    op.create_index("ix_inbox_items_case_sha256", "inbox_items", ["case_id", "sha256"], unique=True)


def _create_dicomweb_servers() -> None:
    op.create_table(
        "dicomweb_servers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("base_url", sa.Text(), nullable=False),
        sa.Column("auth", sa.JSON(), nullable=False),
        sa.Column("issuer", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by_key_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["created_by_key_id"], ["api_keys.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("dicomweb_servers")
    op.drop_index("ix_inbox_items_case_sha256", table_name="inbox_items")
    op.drop_index("ix_inbox_items_sha256", table_name="inbox_items")
    op.drop_index("ix_inbox_items_case_id", table_name="inbox_items")
    op.drop_table("inbox_items")
    op.drop_index("ix_dicom_sources_ae_title_live", table_name="dicom_sources")
    op.drop_table("dicom_sources")
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_images_sop_instance_uid"))
        batch_op.drop_column("sop_instance_uid")
