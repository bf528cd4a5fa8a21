"""Conclusions and blind reviews are append-only in the database itself, as the audit log is: with
direct write access one can neither rewrite nor remove a conclusion, nor remove a review or change
it other than by completing or withdrawing it once. Revision 0006 is the schema before the
protection."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from app.access.keys import create_key
from app.cases.reviews import withdraw_review
from app.cases.service import record_conclusion
from app.storage.database import downgrade, make_engine, session_factory, upgrade
from app.storage.tables import (
    ApiKey,
    Case,
    Conclusion,
    Image,
    ModelVersion,
    Person,
    Review,
    Search,
    SearchResult,
)

BEFORE_PROTECTION = "0006"

REFUSED_STATEMENTS = [
    "UPDATE conclusions SET conclusion = 'excluded'",
    "UPDATE conclusions SET comment = 'rewritten' WHERE id = 1",
    "UPDATE conclusions SET key_id = (SELECT max(id) FROM api_keys)",
    "DELETE FROM conclusions WHERE id = 1",
    "DELETE FROM conclusions",
    "DELETE FROM reviews",
    "DELETE FROM reviews WHERE completed_at IS NULL",
    # An open review completed and handed to someone else at once.
    "UPDATE reviews SET completed_at = CURRENT_TIMESTAMP, "
    "reviewer_key_id = requested_by_key_id WHERE completed_at IS NULL",
    "UPDATE reviews SET search_id = search_id + 0, case_id = case_id * 1, "
    "created_at = CURRENT_TIMESTAMP WHERE completed_at IS NULL",
    # A completed review reopened, or completed again at another time.
    "UPDATE reviews SET completed_at = NULL WHERE completed_at IS NOT NULL",
    "UPDATE reviews SET completed_at = CURRENT_TIMESTAMP WHERE completed_at IS NOT NULL",
]
# Columns that came after the protection (revisions 0008, 0009): refused at the head, absent
# before.
REFUSED_AT_HEAD = [
    "UPDATE conclusions SET blind_review_id = NULL",
    "UPDATE conclusions SET ranking_seen = NOT ranking_seen",
    "UPDATE conclusions SET marks = measurements, candidate_image_id = NULL",
    # An open review completed while it is turned into one with sequential unmasking.
    "UPDATE reviews SET completed_at = CURRENT_TIMESTAMP, "
    "sequential_person_id = (SELECT max(id) FROM people) WHERE completed_at IS NULL",
    # A completed review withdrawn; an open one withdrawn by no one, or completed and withdrawn.
    "UPDATE reviews SET withdrawn_at = CURRENT_TIMESTAMP, withdrawn_by_key_id = reviewer_key_id "
    "WHERE completed_at IS NOT NULL",
    "UPDATE reviews SET withdrawn_at = CURRENT_TIMESTAMP WHERE completed_at IS NULL",
    "UPDATE reviews SET withdrawn_at = CURRENT_TIMESTAMP, completed_at = CURRENT_TIMESTAMP, "
    "withdrawn_by_key_id = reviewer_key_id WHERE completed_at IS NULL",
    # What the reviewer is shown of the case, rewritten.
    "UPDATE reviews SET case_status_when_asked = 'identified'",
]


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    upgrade(database_url)
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def write_a_case(engine: sa.Engine) -> dict[str, int]:
    """A case with one search, a conclusion on its candidate, a completed review and an open
    one; the ids of what the tests change."""
    with session_factory(engine).begin() as session:
        examiner, _ = create_key(session, "first examiner", "examiner")
        reviewer, _ = create_key(session, "second examiner", "examiner")
        person = Person(external_ref="P-1")
        version = ModelVersion(
            sha256="b" * 64, checkpoint_path="/x", dimension=128, metrics={}, info={}
        )
        case = Case(number="C-1")
        session.add_all([person, version, case])
        session.flush()
        image = Image(
            person_id=person.id, sha256="a" * 64, size_bytes=1, format="png", image_metadata={}
        )
        session.add(image)
        session.flush()
        searches = [
            Search(
                case_id=case.id,
                query_sha256="c" * 64,
                model_version_id=version.id,
                index_generation=1,
                index_size=1,
                parameters={},
                response={},
            )
            for _ in range(2)
        ]
        session.add_all(searches)
        session.flush()
        for search in searches:
            session.add(
                SearchResult(
                    search_id=search.id,
                    rank=1,
                    person_id=person.id,
                    image_id=image.id,
                    similarity=0.9,
                    distance=0.1,
                )
            )
            session.add(
                Review(
                    case_id=case.id,
                    search_id=search.id,
                    reviewer_key_id=reviewer.id,
                    requested_by_key_id=examiner.id,
                    case_status_when_asked=case.status,
                    case_description_when_asked=case.description,
                    case_updated_at_when_asked=case.updated_at,
                )
            )
        session.flush()
        for conclusion, key in (("identification", examiner), ("probable", reviewer)):
            record_conclusion(
                session,
                case=case,
                search_id=searches[0].id,
                person_id=person.id,
                conclusion=conclusion,
                comment="",
                key=key,
            )
        return {"case": case.id, "search": searches[1].id, "person": person.id}


def reviews(engine: sa.Engine) -> list[tuple]:
    with engine.connect() as connection:
        return connection.execute(sa.select(Review.__table__).order_by(Review.id)).all()


def conclusions(engine: sa.Engine) -> list[tuple]:
    with engine.connect() as connection:
        return connection.execute(sa.select(Conclusion.__table__).order_by(Conclusion.id)).all()


class RolledBack(Exception):
    """Raised inside a transaction to undo what it did."""


def changes_rows(engine: sa.Engine, statement: str) -> bool:
    """Whether the statement changes any row (undone afterwards)."""
    try:
        with engine.begin() as connection:
            changed = connection.exec_driver_sql(statement).rowcount
            raise RolledBack
    except RolledBack:
        return changed > 0


def test_direct_sql_cannot_rewrite_or_remove_conclusions_and_reviews(engine, database_url):
    write_a_case(engine)
    written = conclusions(engine), reviews(engine)
    assert len(written[0]) == 2 and [r.completed_at is None for r in written[1]] == [False, True]
    for statement in REFUSED_STATEMENTS + REFUSED_AT_HEAD:
        refused = pytest.raises(sa.exc.IntegrityError, match="append-only")
        with refused, engine.begin() as connection:
            connection.exec_driver_sql(statement)
    if engine.dialect.name == "postgresql":
        for table in ("conclusions", "reviews"):
            refused = pytest.raises(sa.exc.IntegrityError, match="append-only")
            with refused, engine.begin() as connection:
                connection.exec_driver_sql(f"TRUNCATE {table} CASCADE")
    # Through the ORM too: an edited conclusion does not commit.
    refused = pytest.raises(sa.exc.IntegrityError, match="append-only")
    with refused, session_factory(engine).begin() as session:
        session.scalars(sa.select(Conclusion)).first().conclusion = "excluded"
    assert (conclusions(engine), reviews(engine)) == written

    # Before the protection (revision 0006), anyone with write access could: every statement
    # changes rows.
    downgrade(database_url, BEFORE_PROTECTION)
    assert [s for s in REFUSED_STATEMENTS if not changes_rows(engine, s)] == []


def test_the_service_still_completes_a_review_and_adds_conclusions(engine, database_url):
    ids = write_a_case(engine)
    open_review = reviews(engine)[1]
    with session_factory(engine).begin() as session:
        reviewer = session.get(ApiKey, open_review.reviewer_key_id)
        record_conclusion(
            session,
            case=session.get(Case, ids["case"]),
            search_id=ids["search"],
            person_id=ids["person"],
            conclusion="possible",
            comment="seen blind",
            key=reviewer,
        )
    completed = reviews(engine)[1]
    assert completed.completed_at is not None
    assert {**completed._mapping, "completed_at": None} == dict(open_review._mapping)
    assert [row.conclusion for row in conclusions(engine)] == [
        "identification",
        "probable",
        "possible",
    ]


def test_the_service_withdraws_an_open_review_once(engine):
    ids = write_a_case(engine)
    open_review = reviews(engine)[1]
    with session_factory(engine).begin() as session:
        asker = session.get(ApiKey, open_review.requested_by_key_id)
        withdraw_review(
            session, case=session.get(Case, ids["case"]), review_id=open_review.id, key=asker
        )
    withdrawn = reviews(engine)[1]
    assert withdrawn.withdrawn_at is not None and withdrawn.withdrawn_by_key_id == asker.id
    unchanged = {"withdrawn_at": None, "withdrawn_by_key_id": None}
    assert {**withdrawn._mapping, **unchanged} == dict(open_review._mapping)
    refused = pytest.raises(sa.exc.IntegrityError, match="append-only")
    with refused, engine.begin() as connection:
        connection.exec_driver_sql("UPDATE reviews SET withdrawn_at = NULL")


def test_a_case_with_reviews_and_conclusions_migrates_down_and_up_again(engine, database_url):
    """Revision 0009 rebuilds `reviews`, which conclusions refer to, on SQLite: with a case's
    rows in place it goes down and up again, keeping them, and conclusions from before it say
    they were made with the ranking seen and carry no marks."""
    write_a_case(engine)
    before = [(r.id, r.case_id, r.search_id, r.completed_at) for r in reviews(engine)]
    downgrade(database_url, "0008")
    upgrade(database_url)
    assert [(r.id, r.case_id, r.search_id, r.completed_at) for r in reviews(engine)] == before
    with session_factory(engine)() as session:
        kept = session.scalars(sa.select(Conclusion).order_by(Conclusion.id)).all()
        assert [(c.ranking_seen, c.marks, c.measurements) for c in kept] == [(True, [], [])] * 2
        assert all(r.sequential_person_id is None for r in session.scalars(sa.select(Review)))
