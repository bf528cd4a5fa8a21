"""What `radmatch evaluate` measures of a calibrated checkpoint: the likelihood ratios its
calibration gives the protocol's pairs (every follow-up image against every baseline image,
training/protocol.py), measured as the calibration's own validation measures them
(training/calibration/validation.py, report_on), per interval since baseline and for all
follow-ups together.

The pairs come from one (follow-ups x baselines) similarity matrix. Every same-person pair is kept;
of the different-people pairs, whose number grows with the square of the cohort, a seeded uniform
sample of at most MAX_DIFFERENT_PAIRS, as when a calibration is fitted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from training.calibration.calibration import Calibration
from training.calibration.plots import write_plots
from training.calibration.validation import report_on
from training.protocol import interval_label, split_gallery_queries
from training.records import ImageRecord

MAX_DIFFERENT_PAIRS = 1_000_000


@dataclass(frozen=True)
class ProtocolPairs:
    similarity: np.ndarray  # float64 cosine similarity per pair
    same: np.ndarray  # bool: the follow-up and the baseline image are of one person
    years: np.ndarray  # float64 years between the two images' visits
    interval: np.ndarray  # int64 months since baseline of the pair's follow-up (its interval)
    different_in_protocol: int  # different-people pairs before sampling


def protocol_pairs(
    records: Sequence[ImageRecord],
    embeddings: torch.Tensor,
    max_different: int = MAX_DIFFERENT_PAIRS,
    seed: int = 0,
) -> ProtocolPairs:
    """Every (follow-up, baseline image) pair of the protocol, different-people pairs sampled."""
    gallery_list, queries = split_gallery_queries(records)
    if not queries:
        raise ValueError("the cohort has no follow-up images: nothing to match against baselines")
    gallery = np.asarray(gallery_list, dtype=np.int64)
    follow_ups = np.concatenate([np.asarray(indices) for indices in queries.values()])
    interval = np.repeat(
        np.array(list(queries), dtype=np.int64), [len(i) for i in queries.values()]
    )
    unit = F.normalize(embeddings.detach().float().cpu(), dim=1)
    similarity = (unit[follow_ups] @ unit[gallery].T).numpy()
    person = np.unique([r.person_id for r in records], return_inverse=True)[1].ravel()
    same = person[follow_ups][:, None] == person[gallery][None, :]
    chosen = _chosen_pairs(same.ravel(), max_different, seed)
    row, column = np.divmod(chosen, len(gallery))
    months = np.array([r.visit_months for r in records], dtype=np.float64)
    return ProtocolPairs(
        similarity=similarity.ravel()[chosen].astype(np.float64),
        same=same.ravel()[chosen],
        years=np.abs(months[follow_ups[row]] - months[gallery[column]]) / 12.0,
        interval=interval[row],
        different_in_protocol=int(same.size - same.sum()),
    )


def _chosen_pairs(same: np.ndarray, max_different: int, seed: int) -> np.ndarray:
    """Flat indices of every same-person pair and of the different-people pairs or, when there are
    more than max_different of those, of a seeded uniform sample of them; in matrix order."""
    different = np.flatnonzero(~same)
    if len(different) > max_different:
        different = np.random.default_rng(seed).choice(different, max_different, replace=False)
    return np.sort(np.concatenate([np.flatnonzero(same), different]))


def evaluate_calibration(
    records: Sequence[ImageRecord],
    embeddings: torch.Tensor,
    payload: dict[str, Any],
    figures: Path | None = None,
) -> dict[str, Any]:
    """metrics.json's "calibration": the LRs of the protocol's pairs by a checkpoint's
    info["calibration"] (payload), measured per interval ("12", ..., "all"); with a figures
    folder, also the Tippett, ECE, PAV and score plots of all follow-ups there."""
    pairs = protocol_pairs(records, embeddings)
    calibration = Calibration.from_json(payload["calibration"])
    assessment = calibration.assess(pairs.similarity, pairs.years)
    log10_lrs = assessment.log10_lr
    masks = {str(months): pairs.interval == months for months in np.unique(pairs.interval)}
    masks["all"] = np.ones(len(log10_lrs), dtype=bool)
    intervals = {
        name: report_on(log10_lrs[m], pairs.same[m], pairs.similarity[m], pairs.years[m])
        for name, m in masks.items()
    }
    written = (
        {} if figures is None else write_plots(figures, log10_lrs, pairs.same, pairs.similarity)
    )
    return {
        "method": calibration.method,
        "source": payload["source"],
        "different_pairs_in_protocol": pairs.different_in_protocol,
        "bounded_by_elub": float(np.mean(assessment.bounded)) if len(log10_lrs) else 0.0,
        "figures": sorted(path.name for path in written.values()),
        "intervals": intervals,
    }


def _decimal(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def _bounds(bounds: list[float] | None) -> str:
    return "n/a" if bounds is None else f"[{bounds[0]:.2f}, {bounds[1]:.2f}]"


# The rows of the printed table: how each is read from an interval's report_on entry (measures
# that need both kinds of pair are None without them).
_ROWS = {
    "Cllr": lambda m: _decimal(m["cllr"]),
    "Cllr min": lambda m: _decimal(m["cllr_min"]),
    "Cllr cal": lambda m: _decimal(m["cllr_cal"]),
    "EER": lambda m: _percent(m["eer"]),
    "same person, LR < 1": lambda m: _percent(m["misleading"]["same_person_below_1"]),
    "different people, LR > 1": lambda m: _percent(m["misleading"]["different_people_above_1"]),
    "ELUB (log10)": lambda m: _bounds(m["elub"]),
    "same pairs": lambda m: str(m["same_pairs"]),
    "different pairs": lambda m: str(m["different_pairs"]),
}


def calibration_table(report: dict[str, Any]) -> str:
    """Markdown: one row per measure, one column per interval, like the retrieval table."""
    intervals = report["intervals"]
    header = [f"calibrated LRs ({report['method']})"] + [interval_label(n) for n in intervals]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, cell in _ROWS.items():
        lines.append(f"| {label} | " + " | ".join(cell(m) for m in intervals.values()) + " |")
    return "\n".join(lines)
