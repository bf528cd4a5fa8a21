"""The case database: the single source of truth. The FAISS index is derived from `embeddings`.

Rows that evidence depends on are never deleted: a deleted person or image is marked deleted (who,
when, why) so that stored searches keep pointing at what they showed.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Timestamps in UTC, read back as aware datetimes on SQLite too (it stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {
        dict[str, Any]: JSON,
        list[dict[str, Any]]: JSON,
        datetime: UTCDateTime,
    }


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(20))  # "examiner" or "admin"
    prefix: Mapped[str] = mapped_column(
        String(16), unique=True
    )  # the key's public part, for lookup
    key_hash: Mapped[str] = mapped_column(String(64))  # sha256 of the whole key
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


class Person(Base):
    __tablename__ = "people"

    id: Mapped[int] = mapped_column(primary_key=True)
    external_ref: Mapped[str] = mapped_column(String(200), unique=True)
    sex: Mapped[str | None] = mapped_column(String(1))  # "F", "M" or "X"
    birth_year: Mapped[int | None]
    notes: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    deleted_at: Mapped[datetime | None]
    images: Mapped[list[Image]] = relationship(back_populates="person", order_by="Image.id")


class Image(Base):
    __tablename__ = "images"
    # The same bytes for the same person are one image (idempotent uploads); a deleted image may
    # be uploaded again.
    __table_args__ = (
        Index(
            "ix_images_person_sha256_live",
            "person_id",
            "sha256",
            unique=True,
            sqlite_where=text("deleted_at IS NULL"),
            postgresql_where=text("deleted_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)  # of the original bytes
    size_bytes: Mapped[int]
    format: Mapped[str] = mapped_column(String(10))  # "dicom", "png", "jpeg" or "tiff"
    filename: Mapped[str | None] = mapped_column(String(255))  # as uploaded, for display only
    image_metadata: Mapped[dict[str, Any]]  # what decoding read from the file
    body_part: Mapped[str | None] = mapped_column(String(32))
    side: Mapped[str | None] = mapped_column(String(1))  # "L" or "R"
    acquisition_date: Mapped[date | None] = mapped_column(Date)
    visit_months: Mapped[float | None] = mapped_column(Float)
    pixel_spacing_mm: Mapped[float | None] = mapped_column(Float)
    # A DICOM object's own identity: the same instance sent again, re-encoded on the way (a PACS
    # transcoding it), is the same image.
    sop_instance_uid: Mapped[str | None] = mapped_column(String(64), index=True)
    uploaded_at: Mapped[datetime] = mapped_column(default=utcnow)
    uploaded_by_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    deleted_at: Mapped[datetime | None]
    original_purged_at: Mapped[datetime | None]
    person: Mapped[Person] = relationship(back_populates="images")


class ModelVersion(Base):
    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)  # of the checkpoint file
    checkpoint_path: Mapped[str] = mapped_column(Text)
    dimension: Mapped[int]
    metrics: Mapped[dict[str, Any]]
    info: Mapped[dict[str, Any]]  # training config, code version, cohort hash
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    # Bumped in every transaction that adds or removes one of this version's embeddings; the row
    # lock orders those transactions, so generations are committed in order and without gaps.
    index_generation: Mapped[int] = mapped_column(default=0)
    # Bumped when a worker publishes a rebuilt index snapshot; servers then load it.
    index_build: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    activated_at: Mapped[datetime | None]


class ModelCalibration(Base):
    """How a model version's similarities become likelihood ratios: fitted on scored pairs of
    people it was never trained on. Never updated: a refit is a new row, and the newest row is the
    version's current calibration; a search records the one it used."""

    __tablename__ = "calibrations"

    id: Mapped[int] = mapped_column(primary_key=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    method: Mapped[str] = mapped_column(String(20))  # "logistic" or "kde"
    source: Mapped[dict[str, Any]]  # validation people or a manifest, with its sha256 and counts
    fit: Mapped[dict[str, Any]]  # training.calibration.Calibration.as_json()
    pairs: Mapped[dict[str, Any]]  # training.calibration.Pairs.as_json(): what it was fitted on
    validation: Mapped[dict[str, Any]]  # cross-validated over people: Cllr, ELUB, per band
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))


class Embedding(Base):
    __tablename__ = "embeddings"
    __table_args__ = (
        Index("ix_embeddings_added", "model_version_id", "added_generation"),
        Index("ix_embeddings_removed", "model_version_id", "removed_generation"),
    )

    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), primary_key=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), primary_key=True)
    vector: Mapped[bytes] = mapped_column(LargeBinary)  # float32, unit length
    added_generation: Mapped[int]
    removed_generation: Mapped[int | None]


class Case(Base):
    """An unidentified person's file: the searches run for them and the examiners' conclusions."""

    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(100), unique=True)  # the lab's case number
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(12), default="open")  # open, identified, closed
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The probability, before any search, that this person is in the gallery at all; a search's
    # open-set answer uses it unless the search gives its own. None: the default, 0.5.
    prior_in_gallery: Mapped[float | None] = mapped_column(Float)


class Search(Base):
    __tablename__ = "searches"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    query_sha256: Mapped[str] = mapped_column(String(64), index=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    index_generation: Mapped[int]
    index_size: Mapped[int]
    parameters: Mapped[dict[str, Any]]
    response: Mapped[dict[str, Any]]  # the answer exactly as sent


class SearchResult(Base):
    __tablename__ = "search_results"

    search_id: Mapped[int] = mapped_column(ForeignKey("searches.id"), primary_key=True)
    rank: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"))  # the person's best image
    similarity: Mapped[float] = mapped_column(Float)
    distance: Mapped[float] = mapped_column(Float)


class Conclusion(Base):
    """An examiner's conclusion about one candidate of one search. Never updated: a change of mind
    is a new row, and the case's history shows both."""

    __tablename__ = "conclusions"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    search_id: Mapped[int] = mapped_column(ForeignKey("searches.id"))
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    # identification, probable, possible, insufficient or excluded
    conclusion: Mapped[str] = mapped_column(String(16))
    comment: Mapped[str] = mapped_column(Text, default="")
    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"))  # who signed it
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The open review its examiner was under when they signed it: a conclusion made blind.
    blind_review_id: Mapped[int | None] = mapped_column(ForeignKey("reviews.id"))
    # False when signed under sequential unmasking, before the ranking and evidence were shown.
    ranking_seen: Mapped[bool] = mapped_column(Boolean, default=True)
    # The candidate's image compared, and what the examiner marked and measured on the two
    # images (app/cases/marks.py), in the originals' pixels.
    candidate_image_id: Mapped[int | None] = mapped_column(ForeignKey("images.id"))
    marks: Mapped[list[dict[str, Any]]] = mapped_column(default=list)
    measurements: Mapped[list[dict[str, Any]]] = mapped_column(default=list)


class Review(Base):
    """A request that a second examiner review a search blind. While it is open (neither completed
    nor withdrawn) the reviewer is shown no one else's conclusion in the case, and the case's
    status and description as they were when it was asked (kept here). It completes when the
    reviewer records a conclusion on its search; the one who asked, or an admin, may withdraw it."""

    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    search_id: Mapped[int] = mapped_column(ForeignKey("searches.id"))
    reviewer_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"), index=True)
    requested_by_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None]
    withdrawn_at: Mapped[datetime | None]
    withdrawn_by_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    case_status_when_asked: Mapped[str] = mapped_column(String(12))
    case_description_when_asked: Mapped[str] = mapped_column(Text)
    case_updated_at_when_asked: Mapped[datetime]
    # Sequential unmasking: the one candidate the reviewer is shown, without rank, score or
    # evidence, until they conclude; None for a review that shows the whole ranking.
    sequential_person_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))


class DicomSource(Base):
    """A DICOM application entity (a mortuary's or hospital's system) allowed to send radiographs
    by C-STORE, and where its images go: a case's inbox, or the gallery with people grouped by
    PatientID under `issuer`. Revoked rather than deleted: received images' audit names it."""

    __tablename__ = "dicom_sources"
    __table_args__ = (
        Index(
            "ix_dicom_sources_ae_title_live",
            "ae_title",
            unique=True,
            sqlite_where=text("revoked_at IS NULL"),
            postgresql_where=text("revoked_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    ae_title: Mapped[str] = mapped_column(String(16))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))  # set: a case's inbox
    issuer: Mapped[str | None] = mapped_column(String(64))  # set: the gallery
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    revoked_at: Mapped[datetime | None]


class InboxItem(Base):
    """A radiograph of a case's unknown person that arrived by DICOM (C-STORE, STOW-RS), kept
    with the case until an examiner searches with it. Its original is in the original store."""

    __tablename__ = "inbox_items"
    __table_args__ = (Index("ix_inbox_items_case_sha256", "case_id", "sha256", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int]
    sop_instance_uid: Mapped[str | None] = mapped_column(String(64))
    image_metadata: Mapped[dict[str, Any]]  # what decoding read from the file
    received_via: Mapped[str] = mapped_column(String(20))  # "c-store", "stow-rs", ...
    sender: Mapped[str] = mapped_column(String(200))  # calling AE title, API key name, ...
    key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class DicomWebServer(Base):
    """A remote DICOMweb server (a hospital's PACS) radiographs can be pulled from. `auth` holds
    how to authenticate, secrets included; the API never returns it."""

    __tablename__ = "dicomweb_servers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    base_url: Mapped[str] = mapped_column(Text)
    auth: Mapped[dict[str, Any]]
    issuer: Mapped[str] = mapped_column(String(64))  # whose PatientIDs the server's are
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))


class Job(Base):
    """Long work (index rebuilds, model activation, training), done by `radmatch worker`. A worker
    claims a queued job, heartbeats while it runs, and every write it makes is fenced by
    (worker, attempt), so a worker presumed dead cannot overwrite the job's next attempt."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(30))  # see app.jobs.kinds
    # queued, running, succeeded, failed or cancelled
    status: Mapped[str] = mapped_column(String(12), index=True)
    parameters: Mapped[dict[str, Any]]
    result: Mapped[dict[str, Any] | None]
    progress_done: Mapped[int] = mapped_column(default=0)
    progress_total: Mapped[int | None]
    progress_message: Mapped[str] = mapped_column(Text, default="")
    log_tail: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(default=0)  # claims so far
    max_attempts: Mapped[int] = mapped_column(default=3)
    worker: Mapped[str | None] = mapped_column(String(200))  # host:pid of the current claim
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    started_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class AuditEntry(Base):
    """Append-only and chained: the service inserts and never updates or deletes (the database's
    triggers refuse both), and each entry's hash covers the previous entry's, so an edited,
    removed or reordered entry breaks the chain (`radmatch audit verify`). `sequence`,
    `previous_hash` and `entry_hash` are filled in at flush time by app.audit.chain, never by callers."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))  # None: the command line
    action: Mapped[str] = mapped_column(String(40))
    target_type: Mapped[str] = mapped_column(String(20))
    target_id: Mapped[int | None]
    details: Mapped[dict[str, Any]]
    sequence: Mapped[int] = mapped_column(unique=True, index=True)  # 1, 2, 3, ... without gaps
    previous_hash: Mapped[str] = mapped_column(String(64))  # the previous entry's entry_hash
    entry_hash: Mapped[str] = mapped_column(String(64))  # sha256 of app.audit.canonical_entry


class AuditChainHead(Base):
    """The audit chain's head, one row: the last entry's sequence and hash. Writers take it with
    an UPDATE, which orders concurrent writers and is rolled back with their transaction."""

    __tablename__ = "audit_chain"
    __table_args__ = (CheckConstraint("id = 1", name="ck_audit_chain_one_row"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    sequence: Mapped[int]  # 0 before the first entry
    head_hash: Mapped[str] = mapped_column(String(64))  # 64 zeros before the first entry
