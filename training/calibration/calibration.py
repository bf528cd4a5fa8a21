"""Score-to-LR calibration: a curve per band of years between the two images, and a pooled one.

An LR answers: how much more probable is this similarity if the two radiographs show one person
than if they show two? The same-person scores drop as the years between the images grow (ageing,
new equipment), so the curve is fitted per band of years where there are enough pairs, and the
pooled curve serves a pair whose years are unknown or whose band has too few pairs.

Two methods, both prior-free (the two kinds of pair weigh equally, so the fitted posterior odds
are the LR):
- "logistic": log10 LR linear in the similarity, by unpenalised logistic regression. A fit whose
  slope is not positive means these pairs do not tell the kinds apart (more similar would speak
  for different people); such a curve is flat at LR 1 rather than turned round.
- "kde": the ratio of Gaussian kernel density estimates (Silverman's bandwidth) of the same- and
  different-person scores, tabulated on a fixed grid over [-1, 1] and interpolated, so a saved
  curve gives exactly the LRs of the fitted one. Not forced monotone: where one density runs out
  of data the ratio follows the kernels' tails, which is what the ELUB bounds are there to cap.

Each curve carries ELUB bounds (metrics.elub) from its own LRs on its own pairs; an assessed LR is
held within them, and `bounded` says where that happened.

This module applies a calibration with numpy alone, as the service does for every search;
fit.py fits one (scikit-learn, scipy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

BAND_EDGES_YEARS = (0.0, 2.0, 4.0, 7.0)  # bands [0,2) [2,4) [4,7) [7,inf)
MIN_PAIRS_PER_BAND = 30  # of each kind; fewer -> band not fitted, pooled used
POOLED = "pooled"


def band_label(low: float, high: float | None) -> str:
    return f"{low:g} years and more" if high is None else f"{low:g}-{high:g} years"


def year_bands() -> tuple[tuple[float, float | None], ...]:
    """[low, high) per band, high None for the last, open one."""
    highs: tuple[float | None, ...] = (*BAND_EDGES_YEARS[1:], None)
    return tuple(zip(BAND_EDGES_YEARS, highs, strict=True))


def in_band(years: np.ndarray, low: float, high: float | None) -> np.ndarray:
    """NaN years are in no band (comparisons with NaN are False)."""
    years = np.asarray(years, dtype=np.float64)
    return (years >= low) & (True if high is None else years < high)


@dataclass(frozen=True)
class Curve:
    """One score -> log10 LR map with its ELUB bounds."""

    method: str  # "logistic" or "kde"
    # logistic: {"intercept", "slope"} (log10 LR = intercept + slope * s);
    # kde: {"similarity": [...grid...], "log10_lr": [...]} (np.interp between)
    parameters: dict[str, Any]
    elub: tuple[float, float]  # log10 bounds
    same_pairs: int
    different_pairs: int
    years: tuple[float, float | None] | None  # the band [low, high); None = pooled
    label: str  # "0-2 years", "7 years and more", "pooled"

    def log10_lr(self, similarity: np.ndarray) -> np.ndarray:
        """Unbounded log10 LRs."""
        s = np.asarray(similarity, dtype=np.float64)
        if self.method == "logistic":
            return self.parameters["intercept"] + self.parameters["slope"] * s
        grid = np.asarray(self.parameters["similarity"], dtype=np.float64)
        return np.interp(s, grid, np.asarray(self.parameters["log10_lr"], dtype=np.float64))

    def as_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "parameters": self.parameters,
            "elub": list(self.elub),
            "same_pairs": self.same_pairs,
            "different_pairs": self.different_pairs,
            "years": None if self.years is None else list(self.years),
            "label": self.label,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Curve:
        low, high = d["elub"]
        years = None if d["years"] is None else (d["years"][0], d["years"][1])
        return cls(
            d["method"],
            d["parameters"],
            (low, high),
            d["same_pairs"],
            d["different_pairs"],
            years,
            d["label"],
        )


@dataclass(frozen=True, eq=False)
class Assessment:
    """Arrays, one entry per (similarity, years) asked."""

    log10_lr: np.ndarray  # bounded by the curve's ELUB
    bounded: np.ndarray  # bool: ELUB capped it
    curve: np.ndarray  # int: index into Calibration.bands, -1 = pooled


@dataclass(frozen=True)
class Calibration:
    method: str
    pooled: Curve
    bands: tuple[Curve, ...]

    def curve_of(self, index: int) -> Curve:
        """-1 is the pooled curve."""
        return self.pooled if index == -1 else self.bands[index]

    def assess(self, similarity: np.ndarray, years: np.ndarray) -> Assessment:
        """Years NaN or in a band that was not fitted -> pooled; else that band's curve."""
        similarity, years = np.broadcast_arrays(
            np.asarray(similarity, dtype=np.float64), np.asarray(years, dtype=np.float64)
        )
        curve = np.full(similarity.shape, -1, dtype=np.int64)
        for index, band in enumerate(self.bands):
            curve[in_band(years, *band.years)] = index
        raw = np.empty(similarity.shape, dtype=np.float64)
        low, high = np.empty_like(raw), np.empty_like(raw)
        for index in range(-1, len(self.bands)):
            chosen = curve == index
            fitted = self.curve_of(index)
            raw[chosen] = fitted.log10_lr(similarity[chosen])
            low[chosen], high[chosen] = fitted.elub
        bounded = np.asarray((raw < low) | (raw > high))
        return Assessment(np.asarray(np.clip(raw, low, high)), bounded, curve)

    def as_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "pooled": self.pooled.as_json(),
            "bands": [band.as_json() for band in self.bands],
            # For the record: how the bands were chosen when this was fitted.
            "band_edges_years": list(BAND_EDGES_YEARS),
            "min_pairs_per_band": MIN_PAIRS_PER_BAND,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Calibration:
        bands = tuple(Curve.from_json(band) for band in d["bands"])
        return cls(d["method"], Curve.from_json(d["pooled"]), bands)
