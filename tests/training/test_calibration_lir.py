"""The calibration numerics against lir 1.3.1, the Netherlands Forensic Institute's reference
implementation of the same measures, on fixed seeded data.

Measured on these data, the largest absolute differences: logistic log10 LRs 3.6e-15 (the same
scikit-learn fit, its coefficients turned into log10 in another order), Cllr 0, Cllr_min 1.1e-16,
ELUB 6e-16 (lir's bounds carry linspace's ...0000006 tails, ours are rounded to 10 decimals). The
tolerances below leave room only for rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
from lir.algorithms.bayeserror import elub as lir_elub
from lir.algorithms.logistic_regression import LogitCalibrator
from lir.data.models import LLRData
from lir.metrics import cllr as lir_cllr
from lir.metrics import cllr_min as lir_cllr_min

from training.calibration.fit import fit_curve
from training.calibration.metrics import cllr, cllr_min, elub

SAME, DIFFERENT = 400, 1500


def scores(same_mean: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Similarities and same-person flags: same-person scores around `same_mean`, different-person
    scores around 0.3."""
    rng = np.random.default_rng(seed)
    similarity = np.concatenate(
        [rng.normal(same_mean, 0.12, SAME), rng.normal(0.3, 0.15, DIFFERENT)]
    )
    return similarity, np.arange(SAME + DIFFERENT) < SAME


def llr_data(log10_lrs: np.ndarray, same: np.ndarray) -> LLRData:
    return LLRData(features=log10_lrs.copy(), labels=same.astype(int))


# Overlapping, well separated, and indistinguishable same- and different-person scores.
CASES = [(0.65, 1), (0.9, 2), (0.3, 3)]


@pytest.mark.parametrize(("same_mean", "seed"), CASES)
def test_logistic_lrs_match_lirs_logit_calibrator(same_mean, seed):
    similarity, same = scores(same_mean, seed)
    ours = fit_curve(similarity, same, "logistic", None)
    # C=inf is scikit-learn's (>= 1.8) spelling of lir's documented penalty=None.
    theirs = LogitCalibrator(C=np.inf).fit(similarity, same.astype(int))
    if theirs._logit.coef_[0, 0] <= 0:  # ours is flat at LR 1 there by design
        assert ours.parameters == {"intercept": 0.0, "slope": 0.0}
        return
    grid = np.linspace(-1, 1, 201)
    assert np.max(np.abs(ours.log10_lr(grid) - theirs.transform(grid))) < 1e-9


@pytest.mark.parametrize(("same_mean", "seed"), CASES)
def test_cllr_and_cllr_min_match_lir(same_mean, seed):
    similarity, same = scores(same_mean, seed)
    log10_lrs = 6 * (similarity - 0.5)
    assert abs(cllr(log10_lrs, same) - lir_cllr(llr_data(log10_lrs, same))) < 1e-12
    assert abs(cllr_min(log10_lrs, same) - lir_cllr_min(llr_data(log10_lrs, same))) < 1e-12


def test_cllr_min_with_infinite_pav_lrs_matches_lir():
    # The top scores are all same-person and the bottom ones all different: PAV gives them
    # LRs of +-inf, which cost nothing (log2(1 + 1/inf) = 0).
    similarity, same = scores(0.9, 4)
    log10_lrs = np.concatenate([[-np.inf], 6 * (similarity[1:] - 0.5)])
    same[0] = False
    ours, theirs = cllr_min(log10_lrs, same), lir_cllr_min(llr_data(log10_lrs, same))
    assert np.isfinite(ours) and abs(ours - theirs) < 1e-12


@pytest.mark.parametrize(("same_mean", "seed"), [*CASES, (2.0, 5)])
def test_elub_matches_lir(same_mean, seed):
    # Both evaluate the thresholds on the 0.01 grid of the paper's code, so the bounds agree
    # exactly; ours are rounded to 10 decimals (lir's carry linspace's ...0000006 tails).
    # (2.0, 5): no overlap, so the 1500 different-person pairs set the upper bound (log10 1501).
    similarity, same = scores(same_mean, seed)
    log10_lrs = 6 * (similarity - 0.5)
    log10_lrs[:2], log10_lrs[-2:] = np.inf, -np.inf  # counted as 10^+-9 by both
    theirs = lir_elub(log10_lrs.copy(), same.astype(int))  # lir clips its argument in place
    assert np.max(np.abs(np.subtract(elub(log10_lrs, same), theirs))) < 1e-9
