"""Cases: an unidentified person's file. Searches run in a case are kept with it; examiners record
conclusions about candidates on the forensic scale, each signed by their key and never changed (a
change of mind is a new entry); a second examiner can be asked for a blind review, and sees no one
else's conclusion on that search until they have recorded their own."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit.entries import record_entry
from app.core.errors import NotFound, Unprocessable
from app.search.answer import SearchAnswer
from app.storage.tables import (
    ApiKey,
    Case,
    Conclusion,
    Review,
    Search,
    SearchResult,
    utcnow,
)

STATUSES = ("open", "identified", "closed")
# The usual forensic identification scale, strongest first.
CONCLUSIONS = ("identification", "probable", "possible", "insufficient", "excluded")


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
    case: Case,
    search_id: int,
    person_id: int,
    conclusion: str,
    comment: str,
    key: ApiKey,
) -> Conclusion:
    search = case_search(session, case, search_id)
    candidate = session.scalar(
        select(SearchResult.rank).where(
            SearchResult.search_id == search.id, SearchResult.person_id == person_id
        )
    )
    if candidate is None:
        raise Unprocessable(f"person {person_id} is not a candidate of search {search_id}")
    entry = Conclusion(
        case_id=case.id,
        search_id=search.id,
        person_id=person_id,
        conclusion=conclusion,
        comment=comment,
        key_id=key.id,
        created_at=utcnow(),
    )
    session.add(entry)
    for review in _open_reviews(session, key.id, search.id):
        review.completed_at = entry.created_at
    session.flush()
    audit(
        session,
        key.id,
        "case.conclusion",
        case.id,
        conclusion_id=entry.id,
        search_id=search.id,
        person_id=person_id,
        conclusion=conclusion,
    )
    return entry


def request_review(
    session: Session, case: Case, search_id: int, reviewer_key_id: int, key: ApiKey
) -> dict[str, Any]:
    search = case_search(session, case, search_id)
    reviewer = session.get(ApiKey, reviewer_key_id)
    if reviewer is None or reviewer.revoked_at is not None:
        raise Unprocessable(f"no active key with id {reviewer_key_id} to review")
    if reviewer.id == key.id:
        raise Unprocessable("a blind review is by another examiner, not by the one asking")
    review = Review(
        case_id=case.id,
        search_id=search.id,
        reviewer_key_id=reviewer.id,
        requested_by_key_id=key.id,
    )
    session.add(review)
    session.flush()
    audit(
        session,
        key.id,
        "case.review_request",
        case.id,
        review_id=review.id,
        search_id=search.id,
        reviewer_key_id=reviewer.id,
    )
    return review_json(review, {reviewer.id: reviewer.name, key.id: key.name})


def review_json(review: Review, names: dict[int, str]) -> dict[str, Any]:
    return {
        "id": review.id,
        "case_id": review.case_id,
        "search_id": review.search_id,
        "reviewer_key_id": review.reviewer_key_id,
        "reviewer": names.get(review.reviewer_key_id, ""),
        "requested_by_key_id": review.requested_by_key_id,
        "requested_by": names.get(review.requested_by_key_id, ""),
        "created_at": review.created_at,
        "completed_at": review.completed_at,
    }


def _open_reviews(session: Session, key_id: int, search_id: int | None = None) -> list[Review]:
    query = select(Review).where(Review.reviewer_key_id == key_id, Review.completed_at.is_(None))
    if search_id is not None:
        query = query.where(Review.search_id == search_id)
    return list(session.scalars(query))


def _key_names(session: Session) -> dict[int, str]:
    return dict(session.execute(select(ApiKey.id, ApiKey.name)).all())


def conclusions_for(
    session: Session, case: Case, key_id: int, names: dict[int, str] | None = None
) -> dict[str, Any]:
    """The case's conclusions, oldest first, as this key may see them: on a search it has been
    asked to review blind and has not yet concluded on, only its own (none, then)."""
    blind = {review.search_id for review in _open_reviews(session, key_id)}
    names = names if names is not None else _key_names(session)
    visible, hidden = [], 0
    for entry in session.scalars(
        select(Conclusion).where(Conclusion.case_id == case.id).order_by(Conclusion.id)
    ):
        if entry.search_id in blind and entry.key_id != key_id:
            hidden += 1
            continue
        visible.append(
            {
                "id": entry.id,
                "search_id": entry.search_id,
                "person_id": entry.person_id,
                "conclusion": entry.conclusion,
                "comment": entry.comment,
                "key_id": entry.key_id,
                "examiner": names.get(entry.key_id, ""),
                "created_at": entry.created_at,
            }
        )
    return {"items": visible, "hidden": hidden, "blind_searches": sorted(blind)}


def case_detail(session: Session, case: Case, key_id: int) -> dict[str, Any]:
    searches = session.scalars(
        select(Search).where(Search.case_id == case.id).order_by(Search.id)
    ).all()
    reviews = session.scalars(
        select(Review).where(Review.case_id == case.id).order_by(Review.id)
    ).all()
    names = _key_names(session)
    return {
        "id": case.id,
        "number": case.number,
        "description": case.description,
        "status": case.status,
        "prior_in_gallery": case.prior_in_gallery,
        "created_at": case.created_at,
        "updated_at": case.updated_at,
        "searches": [SearchAnswer.from_json(search.response).as_json() for search in searches],
        "conclusions": conclusions_for(session, case, key_id, names),
        "reviews": [review_json(review, names) for review in reviews],
    }
