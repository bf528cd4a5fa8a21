"""Fitting a calibration (calibration.py says what the curves are): the pooled curve and a curve
per band of years, each with the ELUB bounds of its own LRs on its own pairs."""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.stats import gaussian_kde
from sklearn.linear_model import LogisticRegression

from training.calibration.calibration import (
    MIN_PAIRS_PER_BAND,
    POOLED,
    Calibration,
    Curve,
    band_label,
    in_band,
    year_bands,
)
from training.calibration.metrics import elub
from training.calibration.pairs import Pairs

METHODS = ("logistic", "kde")
KDE_GRID = np.linspace(-1.0, 1.0, 401)
_LN10 = float(np.log(10.0))


def fit_calibration(pairs: Pairs, method: str = "logistic") -> Calibration:
    """The pooled curve on every pair, and a curve per band of years with at least
    MIN_PAIRS_PER_BAND pairs of each kind."""
    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}; one of {', '.join(METHODS)}")
    same = pairs.same
    if not np.any(same) or np.all(same):
        raise ValueError("a calibration needs same-person and different-person pairs")
    pooled = fit_curve(pairs.similarity, same, method, None)
    bands = []
    for low, high in year_bands():
        chosen = in_band(pairs.years, low, high)
        kinds = np.count_nonzero(same[chosen]), np.count_nonzero(~same[chosen])
        if min(kinds) >= MIN_PAIRS_PER_BAND:
            bands.append(fit_curve(pairs.similarity[chosen], same[chosen], method, (low, high)))
    return Calibration(method, pooled, tuple(bands))


def fit_curve(
    similarity: np.ndarray,
    same: np.ndarray,
    method: str,
    years: tuple[float, float | None] | None,
) -> Curve:
    """One curve on these pairs, with the ELUB bounds of its own LRs on them."""
    fit = _logistic_parameters if method == "logistic" else _kde_parameters
    label = POOLED if years is None else band_label(*years)
    counts = int(np.count_nonzero(same)), int(np.count_nonzero(~same))
    curve = Curve(method, fit(similarity, same), (0.0, 0.0), *counts, years, label)
    return dataclasses.replace(curve, elub=elub(curve.log10_lr(similarity), same))


def _logistic_parameters(similarity: np.ndarray, same: np.ndarray) -> dict[str, float]:
    # C=inf is scikit-learn's spelling (since 1.8) of penalty=None: no shrinkage of the slope.
    model = LogisticRegression(C=np.inf, class_weight="balanced", max_iter=1000)
    model.fit(np.asarray(similarity, dtype=np.float64).reshape(-1, 1), same)
    slope = float(model.coef_[0, 0]) / _LN10
    if not slope > 0:  # also NaN: uninformative pairs -> LR 1 everywhere
        return {"intercept": 0.0, "slope": 0.0}
    return {"intercept": float(model.intercept_[0]) / _LN10, "slope": slope}


def _kde_parameters(similarity: np.ndarray, same: np.ndarray) -> dict[str, list[float]]:
    for kind in (similarity[same], similarity[~same]):
        if len(np.unique(kind)) < 2:
            raise ValueError("a kde calibration needs two different scores of each kind of pair")
    # logpdf works in logs (logsumexp), so far tails give finite, huge log ratios, not inf - inf.
    same_density = gaussian_kde(similarity[same], bw_method="silverman")
    different_density = gaussian_kde(similarity[~same], bw_method="silverman")
    log10_lr = (same_density.logpdf(KDE_GRID) - different_density.logpdf(KDE_GRID)) / _LN10
    return {"similarity": KDE_GRID.tolist(), "log10_lr": log10_lr.tolist()}
