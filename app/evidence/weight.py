"""The strength of evidence of each candidate: the similarity of the query to the candidate's best
image as a likelihood ratio, from the model version's calibration, conditioned on the years
between the two images where both dates are known."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

import numpy as np

from app.evidence.calibrations import StoredCalibration
from training.calibration.verbal import verbal_scale

DAYS_PER_YEAR = 365.25


@dataclass(frozen=True)
class Evidence:
    log10_lr: float  # within the calibration's empirical bounds (ELUB)
    lr: float
    bounded: bool  # the ELUB capped it: the data support no stronger value
    verbal: str  # "weak" ... "extremely strong", or "no support"
    supports: str  # "same person", "different people" or "neither"
    years_between: float | None
    band: str  # the calibration curve used: an interval band, or "pooled"
    elub: tuple[float, float]  # that curve's bounds, log10
    calibration_id: int
    note: str | None  # why the pooled calibration was used, where it was

    def as_json(self) -> dict[str, Any]:
        return asdict(self) | {"elub": list(self.elub)}

    @classmethod
    def from_json(cls, stored: dict[str, Any]) -> Evidence:
        return cls(**{**stored, "elub": tuple(stored["elub"])})


def years_between(first: date | None, second: date | None) -> float | None:
    if first is None or second is None:
        return None
    return round(abs((first - second).days) / DAYS_PER_YEAR, 2)


def weigh(
    stored: StoredCalibration,
    similarities: list[float],
    query_date: date | None,
    image_dates: list[date | None],
) -> list[Evidence]:
    """Evidence for each (similarity, best image's date), in one vectorised assessment."""
    years = [years_between(query_date, when) for when in image_dates]
    calibration = stored.calibration
    assessed = calibration.assess(
        np.asarray(similarities, dtype=np.float64),
        np.asarray([np.nan if y is None else y for y in years], dtype=np.float64),
    )
    evidence = []
    for i, log10_lr in enumerate(assessed.log10_lr.tolist()):
        curve = calibration.curve_of(int(assessed.curve[i]))
        scale = verbal_scale(log10_lr)
        evidence.append(
            Evidence(
                log10_lr=log10_lr,
                lr=10.0**log10_lr,
                bounded=bool(assessed.bounded[i]),
                verbal=scale.strength,
                supports=scale.supports,
                years_between=years[i],
                band=curve.label,
                elub=(float(curve.elub[0]), float(curve.elub[1])),
                calibration_id=stored.id,
                note=_pooled_because(curve.years is None, query_date, image_dates[i], years[i]),
            )
        )
    return evidence


def _pooled_because(
    pooled: bool, query_date: date | None, image_date: date | None, years: float | None
) -> str | None:
    if not pooled:
        return None
    if query_date is None:
        return "the query's date is unknown: pooled calibration over all intervals"
    if image_date is None:
        return "the candidate image's date is unknown: pooled calibration over all intervals"
    return f"too few calibration pairs at {years:g} years: pooled calibration over all intervals"
