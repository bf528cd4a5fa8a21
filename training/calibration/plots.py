"""The four figures of a set of likelihood ratios, for the examiner's report and for whoever checks
a calibration:

- tippett.png: the share of same-person and of different-people pairs whose LR is at least x.
- ece.png: empirical cross-entropy against the prior log10 odds (Ramos & Gonzalez-Rodriguez 2013)
  for the LRs, for the neutral LR = 1 and for the PAV-calibrated LRs (the best any monotonic
  transformation of these LRs reaches).
- pav.png: the PAV-calibrated log10 LR against the system's: on the diagonal, well calibrated.
- scores.png: the similarity histograms of same-person and different-people pairs.

Figures are drawn with matplotlib's object-oriented API on the Agg canvas: no pyplot state, no
display, nothing left open after saving.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from training.calibration.metrics import elub, pav_log10_lrs

PRIOR_LOG10_ODDS = np.linspace(-2.5, 2.5, 101)  # the ECE plot's x axis
SAME, DIFFERENT = "tab:green", "tab:red"


def write_plots(
    folder: Path, log10_lrs: np.ndarray, same: np.ndarray, scores: np.ndarray
) -> dict[str, Path]:
    """Write tippett.png, ece.png, pav.png and scores.png into folder; return {name: path}.
    log10_lrs and scores hold one value per pair, same whether the pair is one person's."""
    log10_lrs = np.asarray(log10_lrs, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    calibrated = pav_log10_lrs(log10_lrs, same)  # PAV is monotonic: by LR or by score, the same
    folder.mkdir(parents=True, exist_ok=True)
    drawers = {
        "tippett": lambda axes: _tippett(axes, log10_lrs, same),
        "ece": lambda axes: _ece(axes, log10_lrs, calibrated, same),
        "pav": lambda axes: _pav(axes, log10_lrs, calibrated),
        "scores": lambda axes: _scores(axes, scores, same),
    }
    written = {}
    for name, draw in drawers.items():
        figure = Figure(figsize=(6, 4.5), layout="constrained")
        FigureCanvasAgg(figure)
        axes = figure.subplots()
        draw(axes)
        axes.grid(alpha=0.3)
        written[name] = folder / f"{name}.png"
        figure.savefig(written[name], dpi=100)
    return written


def _tippett(axes: Axes, log10_lrs: np.ndarray, same: np.ndarray) -> None:
    for kind, mask, color in (("same person", same, SAME), ("different people", ~same, DIFFERENT)):
        values = np.sort(log10_lrs[mask])
        at_least = 1.0 - np.arange(len(values)) / max(len(values), 1)  # share with LR >= value
        axes.step(values, at_least, where="pre", color=color, label=f"{kind} ({len(values)})")
    low, high = elub(log10_lrs, same)
    axes.axvspan(low, high, color="grey", alpha=0.08, label=f"ELUB [{low:.2f}, {high:.2f}]")
    axes.axvline(0.0, color="black", linewidth=0.8)
    axes.set(
        xlabel="log10 LR",
        ylabel="share of pairs with log10 LR >= x",
        ylim=(0, 1.02),
        title="Tippett plot",
    )
    axes.legend()


def empirical_cross_entropy(log10_lrs: np.ndarray, same: np.ndarray) -> np.ndarray:
    """ECE in bits at each of PRIOR_LOG10_ODDS: the information an examiner still lacks, on
    average over both kinds of pairs weighted by the prior, after hearing these LRs."""
    ln_posterior_odds = np.log(10.0) * (log10_lrs[None, :] + PRIOR_LOG10_ODDS[:, None])
    prior_same = 1.0 / (1.0 + 10.0**-PRIOR_LOG10_ODDS)
    # log(1 + e^x) with logaddexp: exact for infinite PAV LRs and for very large ones
    same_cost = np.logaddexp(0.0, -ln_posterior_odds[:, same]).mean(axis=1)
    different_cost = np.logaddexp(0.0, ln_posterior_odds[:, ~same]).mean(axis=1)
    return (prior_same * same_cost + (1.0 - prior_same) * different_cost) / np.log(2.0)


def _ece(axes: Axes, log10_lrs: np.ndarray, calibrated: np.ndarray, same: np.ndarray) -> None:
    neutral = np.zeros_like(log10_lrs)
    for label, values, style in (
        ("LRs", log10_lrs, {"color": "tab:blue"}),
        ("PAV-calibrated LRs", calibrated, {"color": "tab:blue", "linestyle": "--"}),
        ("neutral LR = 1", neutral, {"color": "black", "linestyle": ":"}),
    ):
        axes.plot(PRIOR_LOG10_ODDS, empirical_cross_entropy(values, same), label=label, **style)
    axes.set(
        xlabel="prior log10 odds (same person)",
        ylabel="empirical cross-entropy (bits)",
        ylim=(0, None),
        title="Empirical cross-entropy",
    )
    axes.legend()


def _pav(axes: Axes, log10_lrs: np.ndarray, calibrated: np.ndarray) -> None:
    order = np.argsort(log10_lrs, kind="stable")
    low, high = np.min(log10_lrs), np.max(log10_lrs)
    margin = max(1.0, 0.1 * (high - low))
    # PAV gives infinite LRs at the ends (only one kind of pair there): drawn at the frame's edge
    shown = np.clip(calibrated[order], low - margin, high + margin)
    axes.plot([low, high], [low, high], color="black", linewidth=0.8, label="identity")
    axes.step(log10_lrs[order], shown, where="post", color="tab:blue", label="PAV-calibrated")
    axes.set(
        xlabel="log10 LR",
        ylabel="PAV-calibrated log10 LR",
        ylim=(low - margin, high + margin),
        title="Calibration by PAV",
    )
    axes.legend()


def _scores(axes: Axes, scores: np.ndarray, same: np.ndarray) -> None:
    edges = np.linspace(-1.0, 1.0, 81)
    for kind, mask, color in (("same person", same, SAME), ("different people", ~same, DIFFERENT)):
        counts, _ = np.histogram(scores[mask], edges)
        shares = 100.0 * counts / max(counts.sum(), 1)
        axes.stairs(shares, edges, fill=True, alpha=0.35, color=color)
        axes.stairs(shares, edges, color=color, label=f"{kind} ({int(mask.sum())})")
    axes.set(
        xlabel="cosine similarity",
        ylabel="% of pairs per bin",
        xlim=(-1, 1),
        title="Similarity of pairs",
    )
    axes.legend()
