"""SearchFilters: the SQL a search runs and the in-memory check a re-run makes agree, row for
row, on a real database holding every combination that matters."""

from __future__ import annotations

import itertools

import pytest

from app.search.filters import SearchFilters
from app.search.ranking import allowed_images
from app.storage.database import make_engine, session_factory, upgrade
from app.storage.tables import Image, Person

SEXES = ["F", "M", None]
BIRTH_YEARS = [1950, 1980, None]
BODY_PARTS = ["KNEE", "CHEST", None]
SIDES = ["L", "R", None]
FILTERS = [
    SearchFilters(),
    SearchFilters(sex="F"),
    SearchFilters(birth_year_min=1960),
    SearchFilters(birth_year_max=1960),
    SearchFilters(birth_year_min=1950, birth_year_max=1980),
    SearchFilters(body_part="KNEE", side="L"),
    SearchFilters(sex="M", birth_year_min=1970, body_part="CHEST"),
]


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('filters') / 'radmatch.db'}"
    upgrade(url)
    engine = make_engine(url)
    factory = session_factory(engine)
    with factory.begin() as session:
        for n, (sex, birth_year) in enumerate(itertools.product(SEXES, BIRTH_YEARS)):
            person = Person(external_ref=f"P{n}", sex=sex, birth_year=birth_year)
            session.add(person)
            for m, (part, side) in enumerate(itertools.product(BODY_PARTS, SIDES)):
                person.images.append(
                    Image(
                        sha256=f"{n:032x}{m:032x}",
                        size_bytes=1,
                        format="png",
                        image_metadata={},
                        body_part=part,
                        side=side,
                    )
                )
    yield factory
    engine.dispose()


@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: f.words() or "none")
def test_the_sql_and_the_in_memory_check_allow_the_same_images(sessions, filters):
    with sessions() as session:
        images = session.query(Image).all()
        expected = sorted(i.id for i in images if filters.matches(i.person, i))
        allowed = allowed_images(session, filters)
    if filters.any():
        assert sorted(allowed.tolist()) == expected
        assert 0 < len(expected) < len(images)
    else:
        assert allowed is None  # no filters: every image
        assert len(expected) == len(images)


def test_stored_filters_read_back_without_names_this_version_does_not_know():
    stored = {"sex": "F", "side": "L", "retired_option": 3}
    assert SearchFilters.from_stored(stored) == SearchFilters(sex="F", side="L")
    assert SearchFilters.from_stored(stored).words() == "sex=F, side=L"
