"""How good a set of likelihood ratios is, on pairs whose truth is known.

log10 LRs throughout; `same` is True for a same-person pair. Every measure is prior-free: the
same-person and the different-person pairs weigh one half each, however many there are of each.

- Cllr (Brümmer & du Preez 2006): the mean cost in bits; 0 is perfect, 1 is what LR = 1 for every
  pair costs, above 1 is worse than saying nothing.
- Cllr_min: Cllr after the best monotone recalibration (PAV), the discrimination part of the cost;
  Cllr_cal = Cllr - Cllr_min is what the calibration loses.
- ELUB (Vergeer et al. 2016, Science & Justice 56:482): the largest and smallest LRs the data can
  support, beyond which an LR is extrapolation.
- EER on the raw scores, the discrimination alone.
"""

from __future__ import annotations

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import roc_curve

_LN10 = np.log(10.0)
_LN2 = np.log(2.0)
# ELUB is evaluated on thresholds this far apart on the log10 scale, as in the paper's own code,
# and LRs beyond 10^±9 count as 10^±9.
ELUB_STEP = 0.01
_ELUB_EXTREME = 9.0


def _split(log10_lrs: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    values = np.asarray(log10_lrs, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    if values.shape != same.shape or values.ndim != 1:
        raise ValueError("log10_lrs and same must be 1-d arrays of one length")
    return values[same], values[~same]


def cllr(log10_lrs: np.ndarray, same: np.ndarray) -> float:
    """Mean of log2(1 + 1/LR) over same-person pairs and of log2(1 + LR) over different-person
    pairs, averaged. logaddexp keeps it exact for huge or infinite LRs (an infinite LR for a
    same-person pair costs 0, for a different-person pair infinity). NaN if a kind is missing."""
    same_values, different_values = _split(log10_lrs, same)
    if len(same_values) == 0 or len(different_values) == 0:
        return float("nan")
    same_cost = np.mean(np.logaddexp(0.0, -same_values * _LN10)) / _LN2
    different_cost = np.mean(np.logaddexp(0.0, different_values * _LN10)) / _LN2
    return float((same_cost + different_cost) / 2)


def pav_log10_lrs(scores: np.ndarray, same: np.ndarray) -> np.ndarray:
    """The log10 LRs of the best monotone (non-decreasing) map of the scores on these pairs: pool
    adjacent violators on the labels, each kind weighted by the other's share so the posterior odds
    are the LR. Blocks of one kind only give +-inf. Only the scores' order matters, so their ranks
    are fitted, which also admits infinite scores."""
    scores = np.asarray(scores, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    _split(scores, same)
    ranks = np.unique(scores, return_inverse=True)[1].ravel().astype(np.float64)
    share_same = np.mean(same)
    weight = np.where(same, 1.0 - share_same, share_same)
    posterior = IsotonicRegression(out_of_bounds="clip").fit_transform(
        ranks, same.astype(np.float64), sample_weight=weight
    )
    with np.errstate(divide="ignore"):
        return np.log10(posterior) - np.log10(1.0 - posterior)


def cllr_min(log10_lrs: np.ndarray, same: np.ndarray) -> float:
    if not (np.any(same) and not np.all(same)):
        return float("nan")
    return cllr(pav_log10_lrs(log10_lrs, same), same)


def cllr_cal(log10_lrs: np.ndarray, same: np.ndarray) -> float:
    return cllr(log10_lrs, same) - cllr_min(log10_lrs, same)


def elub(log10_lrs: np.ndarray, same: np.ndarray, step: float = ELUB_STEP) -> tuple[float, float]:
    """Empirical lower and upper bounds (log10) on the LRs (Vergeer et al. 2016).

    Deciding "same person" when LR > threshold t has expected cost P(LR <= t | same) +
    t * P(LR > t | different), with one misleading LR of each kind added (LR 0 for a same-person
    pair, infinity for a different-person pair), which keeps a handful of pairs from supporting
    a huge LR. Saying LR = 1 for every pair costs min(t, 1). The bounds are the thresholds closest
    to LR 1, one step inside, where the system costs more than LR = 1; the thresholds run on a grid of
    `step` from the smallest to the largest LR, no further than 1/(same pairs + 1) and
    (different pairs + 1), as in the paper's code. (0, 0) when the LRs never beat LR = 1.
    """
    same_values, different_values = _split(log10_lrs, same)
    if len(same_values) == 0 or len(different_values) == 0:
        return 0.0, 0.0
    same_values = np.clip(same_values, -_ELUB_EXTREME, _ELUB_EXTREME)
    different_values = np.clip(different_values, -_ELUB_EXTREME, _ELUB_EXTREME)
    low = max(min(same_values.min(), different_values.min()), -np.log10(len(same_values) + 1))
    high = min(max(same_values.max(), different_values.max()), np.log10(len(different_values) + 1))
    steps_low, steps_high = min(0, int(low // step)), max(0, int(high // step) + 1)
    threshold = np.linspace(steps_low * step, steps_high * step, steps_high - steps_low + 1)
    threshold_lr = 10.0**threshold
    # Accepted: LR > threshold, compared as LRs as the paper states it.
    same_lrs, different_lrs = np.sort(10.0**same_values), np.sort(10.0**different_values)
    same_accepted = len(same_lrs) - np.searchsorted(same_lrs, threshold_lr, side="right")
    different_accepted = len(different_lrs) - np.searchsorted(different_lrs, threshold_lr, "right")
    system_cost = (
        1.0
        - same_accepted / (len(same_lrs) + 1)
        + threshold_lr * ((different_accepted + 1) / (len(different_lrs) + 1))
    )
    neutral_cost = np.where(threshold < 0, threshold_lr, 1.0)
    worse = neutral_cost < system_cost
    lower = np.max(threshold[worse & (threshold <= 0)] + step, initial=threshold.min())
    upper = np.min(threshold[worse & (threshold >= 0)] - step, initial=threshold.max())
    # Rounded to the grid's decimals: linspace leaves ...0000006 tails in otherwise exact steps.
    return round(float(min(lower, 0.0)), 10), round(float(max(upper, 0.0)), 10)


def eer(scores: np.ndarray, same: np.ndarray) -> float:
    """Equal error rate: where the ROC, its points joined by straight lines, crosses
    false accepts = false rejects. NaN if a kind is missing."""
    same = np.asarray(same, dtype=bool)
    if not (np.any(same) and not np.all(same)):
        return float("nan")
    false_accept, true_accept, _ = roc_curve(same, np.asarray(scores, dtype=np.float64))
    gap = false_accept - (1.0 - true_accept)  # non-decreasing along the curve
    i = int(np.argmax(gap >= 0))  # gap ends at 1 > 0, so a crossing exists; gap[0] = -1
    fraction = -gap[i - 1] / (gap[i] - gap[i - 1])
    return float(false_accept[i - 1] + fraction * (false_accept[i] - false_accept[i - 1]))


def misleading_rates(log10_lrs: np.ndarray, same: np.ndarray) -> dict[str, float]:
    """Shares of pairs whose LR points the wrong way (LR 1 exactly misleads neither way)."""
    same_values, different_values = _split(log10_lrs, same)
    return {
        "same_person_below_1": _share(same_values < 0),
        "different_people_above_1": _share(different_values > 0),
    }


def _share(flags: np.ndarray) -> float:
    return float(np.mean(flags)) if len(flags) else float("nan")
