"""What a case report shows, read from the database in one pass: the case, each search's stored
answer as it was sent, the conclusions and reviews the requesting examiner may see, the
calibrations that weighed the searches with their validation, and where the audit chain stood."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, defer

from app.access.keys import key_names
from app.audit.chain import HEAD_ID
from app.cases.reviews import blind_sight, refuse_while_masked, review_json
from app.cases.service import conclusions_for
from app.evidence.calibrations import newest_row, shown_source
from app.search.answer import SearchAnswer
from app.storage.tables import (
    AuditChainHead,
    AuditEntry,
    Case,
    ModelCalibration,
    Review,
    Search,
    utcnow,
)


@dataclass(frozen=True)
class AuditHead:
    """Where the audit chain stood when the report was made."""

    case_sequence: int | None  # the latest entry about the case or one of its searches
    case_action: str | None
    case_at: datetime | None
    case_entry_hash: str | None
    chain_sequence: int  # the chain's head: its last entry, about anything
    chain_head_hash: str

    def as_details(self) -> dict[str, Any]:
        """What the report's own audit entry records of it."""
        return {
            "case_sequence": self.case_sequence,
            "case_entry_hash": self.case_entry_hash,
            "chain_sequence": self.chain_sequence,
            "chain_head_hash": self.chain_head_hash,
        }


@dataclass(frozen=True)
class CalibrationShown:
    """A calibration of a model version that the case's searches used, or the version's current
    one; calibration_id None: the version has no calibration at all."""

    model_version_id: int
    calibration_id: int | None = None
    method: str | None = None
    created_at: datetime | None = None
    source: dict[str, Any] | None = None
    validation: dict[str, Any] | None = None
    current: bool = False
    used_by: tuple[int, ...] = ()  # the case's searches weighed with it


@dataclass(frozen=True)
class ReportContents:
    case_id: int
    number: str
    status: str
    description: str
    prior_in_gallery: float | None
    created_at: datetime
    updated_at: datetime
    generated_at: datetime
    requested_by: str
    searches: tuple[SearchAnswer, ...]
    conclusions: dict[str, Any]  # conclusions_for's answer: what the requesting key may see
    reviews: tuple[dict[str, Any], ...]
    calibrations: tuple[CalibrationShown, ...]
    audit: AuditHead


def report_contents(session: Session, case: Case, key_id: int) -> ReportContents:
    """Everything the report shows, as the requesting key may see it: a blind reviewer's report
    leaves out the conclusions their review must not see yet, and shows the case as it was when
    they were asked, as the case page does."""
    names = key_names(session)
    searches = tuple(
        SearchAnswer.from_json(response)
        for response in session.scalars(
            select(Search.response).where(Search.case_id == case.id).order_by(Search.id)
        )
    )
    reviews = session.scalars(
        select(Review).where(Review.case_id == case.id).order_by(Review.id)
    ).all()
    sight = blind_sight(session, case.id, key_id)
    refuse_while_masked(sight, "print the case report")
    view = sight.case_view(case)
    return ReportContents(
        case_id=case.id,
        number=case.number,
        status=view.status,
        description=view.description,
        prior_in_gallery=case.prior_in_gallery,
        created_at=case.created_at,
        updated_at=view.updated_at,
        generated_at=utcnow(),
        requested_by=names.get(key_id, ""),
        searches=searches,
        conclusions=conclusions_for(session, case, key_id, names),
        reviews=tuple(review_json(review, names) for review in reviews),
        calibrations=calibrations_shown(session, searches),
        audit=audit_head(session, case.id, [search.search_id for search in searches]),
    )


def calibrations_shown(
    session: Session, searches: tuple[SearchAnswer, ...]
) -> tuple[CalibrationShown, ...]:
    """Per model version the searches used: the calibrations they were weighed with and the
    version's current one, oldest first."""
    shown = []
    for version_id in sorted({search.model_version.id for search in searches}):
        used: dict[int, list[int]] = {}
        for search in searches:
            if search.model_version.id == version_id and search.calibration is not None:
                used.setdefault(search.calibration["id"], []).append(search.search_id)
        newest = newest_row(session, version_id)
        ids = set(used) | ({newest.id} if newest is not None else set())
        if not ids:
            shown.append(CalibrationShown(model_version_id=version_id))
            continue
        rows = session.scalars(
            select(ModelCalibration)
            .options(defer(ModelCalibration.pairs), defer(ModelCalibration.fit))
            .where(ModelCalibration.id.in_(ids))
            .order_by(ModelCalibration.id)
        )
        shown.extend(
            CalibrationShown(
                model_version_id=version_id,
                calibration_id=row.id,
                method=row.method,
                created_at=row.created_at,
                source=shown_source(row.source),
                validation=row.validation,
                current=newest is not None and row.id == newest.id,
                used_by=tuple(used.get(row.id, ())),
            )
            for row in rows
        )
    return tuple(shown)


def audit_head(session: Session, case_id: int, search_ids: list[int]) -> AuditHead:
    """The latest audit entry about the case or one of its searches, and the chain's head."""
    about_case = or_(
        and_(AuditEntry.target_type == "case", AuditEntry.target_id == case_id),
        and_(AuditEntry.target_type == "search", AuditEntry.target_id.in_(search_ids)),
    )
    latest = session.scalar(
        select(AuditEntry).where(about_case).order_by(AuditEntry.sequence.desc()).limit(1)
    )
    head = session.get(AuditChainHead, HEAD_ID)
    return AuditHead(
        case_sequence=None if latest is None else latest.sequence,
        case_action=None if latest is None else latest.action,
        case_at=None if latest is None else latest.at,
        case_entry_hash=None if latest is None else latest.entry_hash,
        chain_sequence=0 if head is None else head.sequence,
        chain_head_hash="" if head is None else head.head_hash,
    )
