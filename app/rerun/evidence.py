"""A re-run's evidence. At the original state the candidates are weighed with what the stored
search recorded (its calibration, query date and prior), so that the same similarities give the
same likelihood ratios and open-set answer; now, with the active version's current calibration."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from app.evidence.calibrations import StoredCalibration, calibration_by_id, current_calibration
from app.evidence.open_set import Prior
from app.evidence.service import Assessed, Searched, assess
from app.rerun.replay import Replay
from app.search.answer import SearchAnswer
from app.search.service import search_prior
from app.storage.records import Records
from app.storage.tables import Search


@dataclass(frozen=True)
class RerunEvidence:
    then: Assessed
    now: Assessed


def weigh_replay(
    records: Records, record: Search, stored: SearchAnswer, replayed: Replay
) -> RerunEvidence:
    query = replayed.query
    query_date = date.fromisoformat(stored.query_date) if stored.query_date else None
    then_searched = Searched(
        record.model_version_id, replayed.then.index_generation, query.filters, record.created_at
    )
    now_searched = Searched(replayed.now_version.id, replayed.now.index_generation, query.filters)
    with records.sessions() as session:
        prior = (
            Prior(stored.open_set.prior, stored.open_set.prior_source)
            if stored.open_set is not None
            else search_prior(session, query, record.case_id)
        )
        recorded: StoredCalibration | None = (
            calibration_by_id(session, stored.calibration["id"]) if stored.calibration else None
        )
        then = assess(
            session,
            replayed.then.candidates,
            then_searched,
            calibration=recorded,
            query_date=query_date,
            prior=prior,
        )
        now = assess(
            session,
            replayed.now.candidates,
            now_searched,
            calibration=current_calibration(session, replayed.now_version.id),
            query_date=query_date,
            prior=prior,
        )
    return RerunEvidence(then, now)


def evidence_identical(stored: SearchAnswer, assessed: Assessed) -> bool | None:
    """The candidates' evidence and the open-set answer exactly as stored; None where the stored
    search carried none."""
    if stored.calibration is None:
        return None
    same_evidence = [c.evidence for c in stored.candidates] == [
        c.evidence for c in assessed.candidates
    ]
    return same_evidence and stored.open_set == assessed.open_set
