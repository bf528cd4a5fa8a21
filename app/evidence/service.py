"""Evidence for a ranking: each candidate's likelihood ratio and the open-set answer, from a
calibration: the model version's current one for a search, the recorded one for a re-run."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from app.evidence.calibrations import StoredCalibration
from app.evidence.open_set import OpenSet, Prior, beyond_bound, open_set
from app.evidence.weight import weigh
from app.search.answer import Candidate
from app.search.filters import SearchFilters
from app.search.ranking import present
from app.storage.tables import Embedding, Image, Person


@dataclass(frozen=True)
class Assessed:
    candidates: tuple[Candidate, ...]  # with evidence, where there is a calibration
    calibration: StoredCalibration | None
    open_set: OpenSet | None


@dataclass(frozen=True)
class Searched:
    """What was searched: the version's gallery at a generation, as the filters narrow it."""

    model_version_id: int
    generation: int
    filters: SearchFilters
    as_of: datetime | None = None


def assess(
    session: Session,
    candidates: tuple[Candidate, ...],
    searched: Searched,
    *,
    calibration: StoredCalibration | None,
    query_date: date | None,
    prior: Prior,
) -> Assessed:
    """Weigh the candidates with the calibration. Without one the candidates carry no evidence
    and there is no open-set answer."""
    stored = calibration
    if stored is None:
        return Assessed(candidates, None, None)
    dates = _image_dates(session, [c.best_image_id for c in candidates])
    evidence = weigh(stored, [c.similarity for c in candidates], query_date, dates)
    weighed = tuple(replace(c, evidence=e) for c, e in zip(candidates, evidence, strict=True))
    people = gallery_people(session, searched)
    beyond = (
        beyond_bound(stored.calibration, candidates[-1].similarity)
        if candidates and people > len(candidates)
        else None
    )
    answer = open_set(prior, [e.log10_lr for e in evidence], people, beyond)
    return Assessed(weighed, stored, answer)


def _image_dates(session: Session, image_ids: list[int]) -> list[date | None]:
    rows = session.execute(
        select(Image.id, Image.acquisition_date).where(Image.id.in_(image_ids))
    ).all()
    dates = dict(rows)
    return [dates.get(image_id) for image_id in image_ids]


def gallery_people(session: Session, searched: Searched) -> int:
    """The people the search could have returned: those with an image embedded by the version
    at the generation, present at the time, that the filters allow."""
    generation = searched.generation
    query = (
        select(func.count(func.distinct(Image.person_id)))
        .select_from(Embedding)
        .join(Image, Image.id == Embedding.image_id)
        .join(Person, Person.id == Image.person_id)
        .where(
            Embedding.model_version_id == searched.model_version_id,
            Embedding.added_generation <= generation,
            or_(Embedding.removed_generation.is_(None), Embedding.removed_generation > generation),
            present(Image.deleted_at, searched.as_of),
            present(Person.deleted_at, searched.as_of),
            *searched.filters.person_conditions(),
            *searched.filters.image_conditions(),
        )
    )
    return int(session.scalar(query) or 0)
