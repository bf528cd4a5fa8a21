"""Blind review: a second examiner is asked to review one of a case's searches without knowing
what anyone else concluded.

While any review of theirs in a case is open (neither completed nor withdrawn), the reviewer is
shown no one else's conclusion on any search of that case, and the case's status, description
and last change as they were when the earliest of those reviews was asked (kept on the review,
so a change made since cannot hint at the answer). What they record meanwhile is marked as made
blind. A review completes when its reviewer records a conclusion on its search, and the one who
asked, or an admin, may withdraw it.

Who may ask whom: someone who has worked on the case (created it, searched in it, concluded in
it, or been asked to review in it) may ask another examiner's active key, not an admin's and not
their own, once per search and reviewer while a request is open.

Sequential unmasking, an option of a request: until the reviewer concludes, the search shows them
the query and one candidate (chosen by the asker) without rank, score or evidence, and their
conclusion is recorded as made before the ranking was seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from app.access.keys import key_names
from app.audit.entries import record_entry
from app.core.errors import Conflict, Forbidden, NotFound, Unprocessable
from app.search.answer import SearchAnswer
from app.storage.tables import ApiKey, Case, Conclusion, Review, Search, SearchResult, utcnow


def is_open() -> ColumnElement[bool]:
    return Review.completed_at.is_(None) & Review.withdrawn_at.is_(None)


@dataclass(frozen=True)
class CaseView:
    """A case's fields that a blind reviewer sees as they were when asked."""

    status: str
    description: str
    updated_at: datetime


@dataclass(frozen=True)
class BlindSight:
    """What one key may see of one case: blind while any of its reviews there is open."""

    open_reviews: tuple[Review, ...]  # oldest first

    @property
    def blind(self) -> bool:
        return bool(self.open_reviews)

    @property
    def searches(self) -> list[int]:
        return sorted({review.search_id for review in self.open_reviews})

    def review_for(self, search_id: int) -> Review | None:
        """The open review a conclusion on this search is made under: the one of that search,
        else the earliest (the examiner is blind to the whole case)."""
        for review in self.open_reviews:
            if review.search_id == search_id:
                return review
        return self.open_reviews[0] if self.open_reviews else None

    def masking(self, search_id: int) -> Review | None:
        """The open review under sequential unmasking of this search, if any: until it ends,
        the search shows its reviewer one candidate and no ranking."""
        for review in self.open_reviews:
            if review.search_id == search_id and review.sequential_person_id is not None:
                return review
        return None

    def case_view(self, case: Case) -> CaseView:
        if not self.blind:
            return CaseView(case.status, case.description, case.updated_at)
        asked = self.open_reviews[0]
        return CaseView(
            asked.case_status_when_asked,
            asked.case_description_when_asked,
            asked.case_updated_at_when_asked,
        )


def blind_sight(session: Session, case_id: int, key_id: int) -> BlindSight:
    reviews = session.scalars(
        select(Review)
        .where(Review.case_id == case_id, Review.reviewer_key_id == key_id, is_open())
        .order_by(Review.id)
    )
    return BlindSight(tuple(reviews))


def masked_search_ids(session: Session, key_id: int) -> set[int]:
    """The searches this key reviews under sequential unmasking and has not concluded on yet."""
    return set(
        session.scalars(
            select(Review.search_id).where(
                Review.reviewer_key_id == key_id,
                Review.sequential_person_id.is_not(None),
                is_open(),
            )
        )
    )


def search_sight(session: Session, answer: SearchAnswer, key_id: int) -> BlindSight:
    """What this key may see of the search's case; a search run outside a case hides nothing."""
    if answer.case_id is None:
        return BlindSight(())
    return blind_sight(session, answer.case_id, key_id)


def refuse_while_blind(sight: BlindSight, action: str) -> None:
    if sight.blind:
        raise Conflict(
            f"you are reviewing search {', '.join(f'#{i}' for i in sight.searches)} of this case "
            f"blind and cannot {action} until you have recorded your conclusion on it (or the "
            "request is withdrawn)"
        )


def answer_as_seen(answer: SearchAnswer, sight: BlindSight) -> dict[str, Any]:
    """A search's answer as this key may see it: under sequential unmasking, the one candidate it
    is to examine, without rank, score, evidence or the open-set answer."""
    review = sight.masking(answer.search_id)
    if review is None:
        return answer.as_json() | {"masked": None}
    shown = next(c for c in answer.candidates if c.person_id == review.sequential_person_id)
    masked = {
        "review_id": review.id,
        "person_id": shown.person_id,
        "external_ref": shown.external_ref,
        "image_ids": sorted(match.image_id for match in shown.images),
    }
    return answer.as_json() | {"candidates": [], "open_set": None, "masked": masked}


def refuse_while_masked(sight: BlindSight, action: str) -> None:
    masked = [review.search_id for review in sight.open_reviews if review.sequential_person_id]
    if masked:
        raise Conflict(
            f"you review search {', '.join(f'#{i}' for i in masked)} of this case with "
            f"sequential unmasking and cannot {action} before you have recorded your conclusion"
        )


def request_review(
    session: Session,
    *,
    case: Case,
    search: Search,
    reviewer_key_id: int,
    key: ApiKey,
    sequential_person_id: int | None = None,
) -> Review:
    reviewer = _eligible_reviewer(session, reviewer_key_id, key)
    if not _has_worked_on(session, case.id, key.id):
        raise Forbidden(
            f"you have not worked on case {case.number!r}: only an examiner who created it, "
            "searched or concluded in it, or was asked to review in it may ask for a blind review"
        )
    if session.scalar(
        select(Review.id).where(
            Review.search_id == search.id, Review.reviewer_key_id == reviewer.id, is_open()
        )
    ):
        raise Conflict(f"{reviewer.name} has an open request to review search {search.id} already")
    if session.scalar(
        select(Conclusion.id).where(
            Conclusion.search_id == search.id, Conclusion.key_id == reviewer.id
        )
    ):
        raise Unprocessable(
            f"{reviewer.name} has recorded a conclusion on search {search.id} already; a blind "
            "review needs an examiner who has not"
        )
    if sequential_person_id is not None and not session.scalar(
        select(SearchResult.rank).where(
            SearchResult.search_id == search.id, SearchResult.person_id == sequential_person_id
        )
    ):
        raise Unprocessable(
            f"person {sequential_person_id} is not a candidate of search {search.id}: sequential "
            "unmasking shows the reviewer one of its candidates"
        )
    review = Review(
        sequential_person_id=sequential_person_id,
        case_id=case.id,
        search_id=search.id,
        reviewer_key_id=reviewer.id,
        requested_by_key_id=key.id,
        case_status_when_asked=case.status,
        case_description_when_asked=case.description,
        case_updated_at_when_asked=case.updated_at,
    )
    session.add(review)
    session.flush()
    _audit(session, key, "case.review_request", review)
    return review


def _eligible_reviewer(session: Session, reviewer_key_id: int, key: ApiKey) -> ApiKey:
    reviewer = session.get(ApiKey, reviewer_key_id)
    if reviewer is None or reviewer.revoked_at is not None:
        raise Unprocessable(f"no active key with id {reviewer_key_id} to review")
    if reviewer.id == key.id:
        raise Unprocessable("a blind review is by another examiner, not by the one asking")
    if reviewer.role != "examiner":
        raise Unprocessable(
            f"key {reviewer.id} ({reviewer.name}) is an {reviewer.role}'s: a blind review is by "
            "an examiner"
        )
    return reviewer


def _has_worked_on(session: Session, case_id: int, key_id: int) -> bool:
    return bool(
        session.scalar(
            select(
                or_(
                    exists().where(Case.id == case_id, Case.created_by_key_id == key_id),
                    exists().where(Search.case_id == case_id, Search.key_id == key_id),
                    exists().where(Conclusion.case_id == case_id, Conclusion.key_id == key_id),
                    exists().where(
                        Review.case_id == case_id,
                        or_(Review.reviewer_key_id == key_id, Review.requested_by_key_id == key_id),
                    ),
                )
            )
        )
    )


def withdraw_review(session: Session, *, case: Case, review_id: int, key: ApiKey) -> Review:
    review = session.get(Review, review_id)
    if review is None or review.case_id != case.id:
        raise NotFound(f"no review with id {review_id} in case {case.number!r}")
    if key.id != review.requested_by_key_id and key.role != "admin":
        raise Forbidden("only the examiner who asked for a review, or an admin, may withdraw it")
    if review.completed_at is not None or review.withdrawn_at is not None:
        ended = "completed" if review.completed_at is not None else "withdrawn"
        raise Conflict(f"review {review.id} was {ended} already")
    review.withdrawn_at = utcnow()
    review.withdrawn_by_key_id = key.id
    session.flush()
    _audit(session, key, "case.review_withdraw", review)
    return review


def complete_reviews(session: Session, sight: BlindSight, search_id: int, at: datetime) -> None:
    """A conclusion on a search ends its reviewer's open reviews of that search."""
    for review in sight.open_reviews:
        if review.search_id == search_id:
            review.completed_at = at


def review_json(review: Review, names: dict[int, str]) -> dict[str, Any]:
    if review.completed_at is not None:
        state = "completed"
    else:
        state = "withdrawn" if review.withdrawn_at is not None else "open"
    return {
        "id": review.id,
        "case_id": review.case_id,
        "search_id": review.search_id,
        "reviewer_key_id": review.reviewer_key_id,
        "reviewer": names.get(review.reviewer_key_id, ""),
        "requested_by_key_id": review.requested_by_key_id,
        "requested_by": names.get(review.requested_by_key_id, ""),
        "created_at": review.created_at,
        "state": state,
        "completed_at": review.completed_at,
        "withdrawn_at": review.withdrawn_at,
        "withdrawn_by": names.get(review.withdrawn_by_key_id, "")
        if review.withdrawn_by_key_id is not None
        else None,
        "sequential_unmasking": review.sequential_person_id is not None,
        "person_id": review.sequential_person_id,
    }


def _audit(session: Session, key: ApiKey, action: str, review: Review) -> None:
    record_entry(
        session,
        action=action,
        target_type="case",
        target_id=review.case_id,
        details={
            "review_id": review.id,
            "search_id": review.search_id,
            "reviewer_key_id": review.reviewer_key_id,
        },
        key_id=key.id,
    )


def reviews_waiting_for(session: Session, key_id: int) -> list[dict[str, Any]]:
    """The open requests asked of this key, oldest first, with their case's number and the
    search's number within its case (1 for the case's first search), as the case page shows it."""
    earlier = aliased(Search)
    number_in_case = (
        select(func.count(earlier.id))
        .where(earlier.case_id == Review.case_id, earlier.id <= Review.search_id)
        .scalar_subquery()
    )
    rows = session.execute(
        select(Review, Case.number, number_in_case)
        .join(Case, Case.id == Review.case_id)
        .where(Review.reviewer_key_id == key_id, is_open())
        .order_by(Review.id)
    ).all()
    names = key_names(session)
    return [
        {**review_json(review, names), "case_number": number, "number_in_case": position}
        for review, number, position in rows
    ]
