"""Cases: an unidentified person's file. Searches run in a case are kept with it; examiners record
conclusions about candidates on the forensic scale, each signed by their key and never changed (a
change of mind is a new entry); what a blind reviewer may see of a case is app/cases/reviews.py's."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from app.access.keys import key_names
from app.audit.entries import record_entry
from app.cases.marks import Findings, ImageFrame
from app.cases.reviews import (
    answer_as_seen,
    blind_sight,
    complete_reviews,
    is_open,
    refuse_while_blind,
    review_json,
)
from app.core.errors import Conflict, NotFound, Unprocessable
from app.search.answer import SearchAnswer
from app.storage.tables import (
    ApiKey,
    Case,
    Conclusion,
    Image,
    Review,
    Search,
    SearchResult,
    utcnow,
)

STATUSES = ("open", "identified", "closed")
# The usual forensic identification scale, strongest first.
CONCLUSIONS = ("identification", "probable", "possible", "insufficient", "excluded")
NO_FINDINGS = Findings()


def live_case(session: Session, case_id: int) -> Case:
    case = session.get(Case, case_id)
    if case is None:
        raise NotFound(f"no case with id {case_id}")
    return case


def audit(session: Session, key_id: int, action: str, case_id: int, **details: Any) -> None:
    record_entry(
        session,
        action=action,
        target_type="case",
        target_id=case_id,
        details=details,
        key_id=key_id,
    )


def case_search(session: Session, case: Case, search_id: int) -> Search:
    search = session.get(Search, search_id)
    if search is None or search.case_id != case.id:
        raise Unprocessable(f"search {search_id} was not run in case {case.number!r}")
    return search


def record_conclusion(
    session: Session,
    *,
    case: Case,
    search_id: int,
    person_id: int,
    conclusion: str,
    comment: str,
    key: ApiKey,
    findings: Findings = NO_FINDINGS,
    query: ImageFrame | None = None,
) -> Conclusion:
    """Record a conclusion on a candidate of one of the case's searches, with the marks and
    measurements made on the query (`query`: its frame, needed when any lies on it) and on one
    of the candidate's images."""
    search = case_search(session, case, search_id)
    sight = blind_sight(session, case.id, key.id)
    masking = sight.masking(search.id)
    _check_candidate(session, search, person_id, masking)
    marks, measurements = findings.checked(
        query=query, candidate=candidate_frame(session, findings, person_id)
    )
    under = sight.review_for(search.id)
    entry = Conclusion(
        case_id=case.id,
        search_id=search.id,
        person_id=person_id,
        conclusion=conclusion,
        comment=comment,
        key_id=key.id,
        created_at=utcnow(),
        blind_review_id=None if under is None else under.id,
        ranking_seen=masking is None,
        candidate_image_id=findings.candidate_image_id,
        marks=marks,
        measurements=measurements,
    )
    session.add(entry)
    complete_reviews(session, sight, search.id, entry.created_at)
    session.flush()
    case.updated_at = entry.created_at
    reopened = case.status == "identified" and not has_identification(session, case.id)
    if reopened:
        case.status = "open"
    audit(
        session,
        key.id,
        "case.conclusion",
        case.id,
        conclusion_id=entry.id,
        search_id=search.id,
        person_id=person_id,
        conclusion=conclusion,
        blind_review_id=entry.blind_review_id,
        ranking_seen=entry.ranking_seen,
        marks=len(marks),
        measurements=len(measurements),
        **({"status": "open"} if reopened else {}),
    )
    return entry


def _check_candidate(
    session: Session, search: Search, person_id: int, masking: Review | None
) -> None:
    """A conclusion is about a candidate of the search: under sequential unmasking, the one
    its examiner was shown."""
    if not session.scalar(
        select(SearchResult.rank).where(
            SearchResult.search_id == search.id, SearchResult.person_id == person_id
        )
    ):
        raise Unprocessable(f"person {person_id} is not a candidate of search {search.id}")
    if masking is not None and masking.sequential_person_id != person_id:
        raise Unprocessable(
            f"under sequential unmasking you conclude on person {masking.sequential_person_id}, "
            f"the candidate you were shown, before any other of search {search.id}"
        )


def candidate_frame(session: Session, findings: Findings, person_id: int) -> ImageFrame | None:
    """The frame of the candidate's image the findings were made on; None when none is named."""
    image_id = findings.candidate_image_id
    if image_id is None:
        if findings.on_candidate:
            raise Unprocessable(
                "marks and measurements on the candidate need candidate_image_id: the image "
                "they were made on"
            )
        return None
    image = session.get(Image, image_id)
    if image is None or image.deleted_at is not None or image.person_id != person_id:
        raise Unprocessable(f"image {image_id} is not an image of person {person_id} on record")
    metadata = image.image_metadata
    return ImageFrame(
        f"candidate's image {image_id}",
        metadata["width"],
        metadata["height"],
        image.pixel_spacing_mm,
    )


def has_identification(session: Session, case_id: int) -> bool:
    """Whether an examiner's standing conclusion (their latest about a candidate of a search)
    in the case is an identification."""
    latest = (
        select(func.max(Conclusion.id))
        .where(Conclusion.case_id == case_id)
        .group_by(Conclusion.key_id, Conclusion.search_id, Conclusion.person_id)
    )
    return bool(
        session.scalar(
            select(func.count())
            .select_from(Conclusion)
            .where(Conclusion.id.in_(latest), Conclusion.conclusion == "identification")
        )
    )


def update_case(session: Session, *, case: Case, changes: dict[str, Any], key: ApiKey) -> Case:
    """Change the case's status, description or prior. Its status follows the conclusions: it
    can be "identified" only while an examiner's standing conclusion in it is an
    identification (and a later conclusion that leaves none re-opens it: record_conclusion)."""
    refuse_while_blind(blind_sight(session, case.id, key.id), "change the case")
    if changes.get("status") == "identified" and not has_identification(session, case.id):
        raise Conflict(
            f"case {case.number!r} has no identification among its examiners' standing "
            "conclusions: record one before marking the case identified"
        )
    for name, value in changes.items():
        setattr(case, name, value)
    case.updated_at = utcnow()
    audit(session, key.id, "case.update", case.id, **changes)
    return case


def conclusion_json(entry: Conclusion, names: dict[int, str]) -> dict[str, Any]:
    return {
        "id": entry.id,
        "search_id": entry.search_id,
        "person_id": entry.person_id,
        "conclusion": entry.conclusion,
        "comment": entry.comment,
        "key_id": entry.key_id,
        "examiner": names.get(entry.key_id, ""),
        "created_at": entry.created_at,
        "made_blind": entry.blind_review_id is not None,
        "blind_review_id": entry.blind_review_id,
        "ranking_seen": entry.ranking_seen,
        "candidate_image_id": entry.candidate_image_id,
        "marks": entry.marks,
        "measurements": entry.measurements,
    }


def conclusions_for(
    session: Session, case: Case, key_id: int, names: dict[int, str] | None = None
) -> dict[str, Any]:
    """The case's conclusions, oldest first, as this key may see them: while it reviews any
    search of the case blind, only its own."""
    sight = blind_sight(session, case.id, key_id)
    names = names if names is not None else key_names(session)
    visible, hidden = [], 0
    for entry in session.scalars(
        select(Conclusion).where(Conclusion.case_id == case.id).order_by(Conclusion.id)
    ):
        if sight.blind and entry.key_id != key_id:
            hidden += 1
        else:
            visible.append(conclusion_json(entry, names))
    return {"items": visible, "hidden": hidden, "blind_searches": sight.searches}


def case_detail(session: Session, case: Case, key_id: int) -> dict[str, Any]:
    searches = session.scalars(
        select(Search).where(Search.case_id == case.id).order_by(Search.id)
    ).all()
    reviews = session.scalars(
        select(Review).where(Review.case_id == case.id).order_by(Review.id)
    ).all()
    names = key_names(session)
    sight = blind_sight(session, case.id, key_id)
    view = sight.case_view(case)
    return {
        "id": case.id,
        "number": case.number,
        "description": view.description,
        "status": view.status,
        "prior_in_gallery": case.prior_in_gallery,
        "created_at": case.created_at,
        "updated_at": view.updated_at,
        "searches": [
            answer_as_seen(SearchAnswer.from_json(search.response), sight) for search in searches
        ],
        "conclusions": conclusions_for(session, case, key_id, names),
        "reviews": [review_json(review, names) for review in reviews],
    }


def cases_page(
    session: Session,
    *,
    key_id: int,
    status: str | None,
    number: str | None,
    limit: int,
    offset: int,
) -> dict[str, Any]:
    """A page of cases, newest first, each as this key may see it: a case it reviews blind
    shows (and is filtered by) the status it had when the earliest open review was asked."""
    earliest = (
        select(Review.case_id, func.min(Review.id).label("review_id"))
        .where(Review.reviewer_key_id == key_id, is_open())
        .group_by(Review.case_id)
        .subquery()
    )
    asked = aliased(Review)
    seen_status = func.coalesce(asked.case_status_when_asked, Case.status)
    query = (
        select(
            Case,
            seen_status.label("seen_status"),
            func.coalesce(asked.case_description_when_asked, Case.description),
            func.coalesce(asked.case_updated_at_when_asked, Case.updated_at),
        )
        .outerjoin(earliest, earliest.c.case_id == Case.id)
        .outerjoin(asked, asked.id == earliest.c.review_id)
    )
    if status is not None:
        query = query.where(seen_status == status)
    if number is not None:
        query = query.where(Case.number == number)
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    rows = session.execute(query.order_by(Case.id.desc()).limit(limit).offset(offset)).all()
    items = [
        {
            "id": case.id,
            "number": case.number,
            "description": description,
            "status": seen,
            "prior_in_gallery": case.prior_in_gallery,
            "created_at": case.created_at,
            "updated_at": updated_at,
        }
        for case, seen, description, updated_at in rows
    ]
    return {"items": items, "total": total, "limit": limit, "offset": offset}
