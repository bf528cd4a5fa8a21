"""How well a calibration's LRs would serve people it has never seen.

validate() cross-validates over people, not pairs: the people are dealt into folds, and each
fold's pairs get LRs from a calibration fitted only on pairs of the other folds' people, so no
person behind an assessed LR helped fit it. A different-person pair whose two people fall in two
folds is neither fitted nor assessed in any round (fitting on it would put a held-out person in
the fit); the pairs assessed are those whose people share a fold: every same-person pair and
about 1/folds of the different-person pairs. "cross_fold_pairs" counts the ones left out.

The report's numbers are plain JSON: measures that need both kinds of pair are null without them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from training.calibration.calibration import band_label, in_band, year_bands
from training.calibration.fit import fit_calibration
from training.calibration.metrics import cllr, cllr_min, eer, elub, misleading_rates
from training.calibration.pairs import Pairs


def validate(pairs: Pairs, method: str = "logistic", folds: int = 5, seed: int = 0) -> dict:
    """Cross-validated measures of the LRs of `method` on these pairs, overall and per band of
    years (report_on's keys), with "method", "folds" and "cross_fold_pairs"."""
    log10_lrs, assessed = cross_validated(pairs, method, folds, seed)
    report = report_on(
        log10_lrs[assessed],
        pairs.same[assessed],
        pairs.similarity[assessed],
        pairs.years[assessed],
    )
    cross_fold = int(np.count_nonzero(~assessed))
    return {**report, "method": method, "folds": folds, "cross_fold_pairs": cross_fold}


def cross_validated(
    pairs: Pairs, method: str = "logistic", folds: int = 5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Each pair's cross-validated (ELUB-bounded) log10 LR, NaN where not assessed, and the mask
    of the assessed pairs (those whose two people share a fold)."""
    first_fold, second_fold = person_folds(pairs, folds, seed)
    log10_lrs = np.full(len(pairs), np.nan)
    for fold in range(folds):
        held_out = (first_fold == fold) & (second_fold == fold)
        fitted_on = (first_fold != fold) & (second_fold != fold)
        calibration = fit_calibration(pairs.subset(fitted_on), method)
        assessment = calibration.assess(pairs.similarity[held_out], pairs.years[held_out])
        log10_lrs[held_out] = assessment.log10_lr
    return log10_lrs, first_fold == second_fold


def person_folds(pairs: Pairs, folds: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The fold of each pair's first and second person: the people in the pairs, in a seeded
    random order, dealt round like cards, so fold sizes differ by at most one person."""
    person = np.unique(np.asarray(pairs.people, dtype=object), return_inverse=True)[1].ravel()
    present = np.unique(np.concatenate([person[pairs.first], person[pairs.second]]))
    if not 2 <= folds <= len(present):
        raise ValueError(f"{folds} folds need at least 2 folds and as many people ({len(present)})")
    fold_of_person = np.full(person.max(initial=-1) + 1, -1, dtype=np.int64)
    dealt = np.random.default_rng(seed).permutation(present)
    fold_of_person[dealt] = np.arange(len(present)) % folds
    return fold_of_person[person[pairs.first]], fold_of_person[person[pairs.second]]


def report_on(
    log10_lrs: np.ndarray, same: np.ndarray, scores: np.ndarray, years: np.ndarray
) -> dict[str, Any]:
    """Measures of these LRs (e.g. an external cohort's): overall, and under "bands" per band of
    years between the images (every band, with zero counts where it has no pairs). Pairs with
    unknown years count overall only."""
    log10_lrs = np.asarray(log10_lrs, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    report = _measures(log10_lrs, same, scores)
    report["bands"] = {}
    for low, high in year_bands():
        chosen = in_band(years, low, high)
        report["bands"][band_label(low, high)] = _measures(
            log10_lrs[chosen], same[chosen], scores[chosen]
        )
    return report


def _measures(log10_lrs: np.ndarray, same: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    both_kinds = bool(np.any(same) and not np.all(same))
    misleading = misleading_rates(log10_lrs, same)
    cost, least_cost = cllr(log10_lrs, same), cllr_min(log10_lrs, same)
    return {
        "cllr": _number(cost),
        "cllr_min": _number(least_cost),
        "cllr_cal": _number(cost - least_cost),
        "eer": _number(eer(scores, same)),
        "elub": list(elub(log10_lrs, same)) if both_kinds else None,
        "misleading": {name: _number(share) for name, share in misleading.items()},
        "same_pairs": int(np.count_nonzero(same)),
        "different_pairs": int(np.count_nonzero(~same)),
    }


def _number(value: float) -> float | None:
    """NaN (a measure without the pairs it needs) is not JSON; null is."""
    return None if math.isnan(value) else float(value)
