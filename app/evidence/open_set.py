"""The open-set answer: is the person in the searched gallery at all?

With prior probability `prior` that they are, spread evenly over the gallery's N people, and the
candidates' likelihood ratios LR_i, the posterior that they are in the gallery is
(prior/N)·ΣLR / ((1 − prior) + (prior/N)·ΣLR), the sum running over all N people. The people a
search did not return all scored below its last candidate; each is counted with the largest
likelihood ratio any curve of the calibration gives at or below that similarity, an upper bound,
so that leaving them out of the sum can neither make "probably not in the gallery" nor make the
first candidate's share look larger than the evidence allows."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from training.calibration.calibration import Calibration

CANDIDATE_SUPPORTED = 0.9  # the top candidate's posterior at or above this
PROBABLY_NOT_IN_GALLERY = 0.1  # the posterior of being in the gallery at or below this
DEFAULT_PRIOR = 0.5


@dataclass(frozen=True)
class Prior:
    value: float
    source: str  # "request", "case" or "default"


@dataclass(frozen=True)
class OpenSet:
    prior: float
    prior_source: str
    gallery_people: int
    people_beyond_candidates: int
    beyond_log10_lr: float | None
    p_in_gallery: float
    p_top_candidate: float | None
    decision: str  # "candidate supported", "inconclusive" or "probably not in the gallery"
    thresholds: dict[str, float]
    statement: str

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, stored: dict[str, Any]) -> OpenSet:
        return cls(**stored)


def beyond_bound(calibration: Calibration, lowest_similarity: float) -> float:
    """The largest bounded log10 LR of any curve at any similarity up to the lowest returned."""
    grid = np.linspace(-1.0, lowest_similarity, 201)
    curves = (calibration.pooled, *calibration.bands)
    return max(
        float(np.clip(curve.log10_lr(grid), curve.elub[0], curve.elub[1]).max()) for curve in curves
    )


def open_set(
    prior: Prior,
    candidate_log10_lrs: list[float],
    gallery_people: int,
    beyond_log10_lr: float | None,
) -> OpenSet:
    beyond = max(0, gallery_people - len(candidate_log10_lrs))
    lrs = np.power(10.0, np.asarray(candidate_log10_lrs, dtype=np.float64))
    total = float(lrs.sum()) + (beyond * 10.0**beyond_log10_lr if beyond else 0.0)
    per_person = prior.value / gallery_people if gallery_people else 0.0
    denominator = (1.0 - prior.value) + per_person * total
    p_in = per_person * total / denominator
    p_top = per_person * float(lrs[0]) / denominator if len(lrs) else None
    decision = _decision(p_in, p_top)
    return OpenSet(
        prior=prior.value,
        prior_source=prior.source,
        gallery_people=gallery_people,
        people_beyond_candidates=beyond,
        beyond_log10_lr=beyond_log10_lr if beyond else None,
        p_in_gallery=p_in,
        p_top_candidate=p_top,
        decision=decision,
        thresholds={
            "candidate_supported": CANDIDATE_SUPPORTED,
            "probably_not_in_gallery": PROBABLY_NOT_IN_GALLERY,
        },
        statement=_statement(prior, gallery_people, p_in, p_top, decision),
    )


def _decision(p_in: float, p_top: float | None) -> str:
    if p_top is not None and p_top >= CANDIDATE_SUPPORTED:
        return "candidate supported"
    if p_in <= PROBABLY_NOT_IN_GALLERY:
        return "probably not in the gallery"
    return "inconclusive"


def _statement(prior: Prior, people: int, p_in: float, p_top: float | None, decision: str) -> str:
    top = "" if p_top is None else f", and {p_top:.2f} that they are the first candidate"
    return (
        f"Taking a prior probability of {prior.value:.2f} ({prior.source}) that this person is "
        f"among the {people} people searched, the evidence gives a probability of {p_in:.2f} that "
        f"they are{top}: {decision}. This weighs the model's evidence only; whether a candidate "
        "is the person is the examiner's conclusion."
    )
