"""A checkpoint's calibration: embed images of people the network never trained on, score every
pair of them, fit the similarity -> likelihood ratio map, validate it by people, and store it all
in the checkpoint's info["calibration"] (docs/method.md, "From similarity to likelihood ratio").

The only module of training/calibration that runs the network; the others work on numbers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from model.checkpoint import load_checkpoint, save_checkpoint
from training.calibration.calibration import (
    POOLED,
    Calibration,
    band_label,
    in_band,
    year_bands,
)
from training.calibration.fit import METHODS, fit_calibration
from training.calibration.pairs import Pairs, scored_pairs
from training.calibration.validation import validate
from training.cohorts import read_cohort
from training.embedders import RecordEmbedder, network_embedder
from training.records import ImageRecord

# Cross-validation deals the people into at most this many folds, and into fewer so that every
# fold holds two people or more: a fold of one person would assess no different-people pair.
VALIDATION_FOLDS = 5
MIN_PEOPLE = 4


def image_ids(records: Sequence[ImageRecord]) -> list[str]:
    """The id "person/visit months/side" per image, numbered "#2", "#3"... where a person has several
    images of one visit and side (ChestX-ray14 dates images only to the year)."""
    ids, seen = [], {}
    for record in records:
        base = f"{record.person_id}/{record.visit_months:g}/{record.side or '-'}"
        seen[base] = seen.get(base, 0) + 1
        ids.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
    return ids


def calibration_payload(
    embed: RecordEmbedder,
    records: Sequence[ImageRecord],
    *,
    source: dict[str, Any],
    method: str = "logistic",
) -> dict[str, Any]:
    """What a checkpoint stores as info["calibration"]: the fitted calibration, the pairs it was
    fitted on, its cross-validation by people, and where the images came from."""
    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}; choose one of {METHODS}")
    people = [r.person_id for r in records]
    if len(set(people)) < MIN_PEOPLE:
        raise ValueError(
            f"{len(set(people))} people are too few to calibrate on and validate by people "
            f"(at least {MIN_PEOPLE})"
        )
    embeddings = embed(records).float().cpu().numpy()
    months = np.array([r.visit_months for r in records], dtype=np.float64)
    pairs = scored_pairs(image_ids(records), people, months, embeddings)
    payload = {
        "calibration": fit_calibration(pairs, method).as_json(),
        "pairs": pairs.as_json(),
        "validation": validate(pairs, method, folds=min(VALIDATION_FOLDS, len(set(people)) // 2)),
        "source": {
            "kind": "validation people",
            "manifest": None,
            "manifest_sha256": None,
            **source,
            "images": len(records),
            "people": len(set(people)),
        },
    }
    # The checkpoint loads with torch's weights_only unpickler and the service stores this as JSON:
    # plain values only (a numpy scalar would fail the one and the other)
    return json.loads(json.dumps(payload))


def calibrate_checkpoint(
    path: Path,
    records: Sequence[ImageRecord],
    *,
    source: dict[str, Any],
    method: str = "logistic",
    device: str = "cpu",
) -> str:
    """Calibrate the checkpoint at path on these records with its own network and preprocessing,
    and rewrite it (and its .sha256) with info["calibration"], every other key kept; return its
    new sha256."""
    checkpoint = load_checkpoint(path, device)
    embed = network_embedder(checkpoint.embedder, checkpoint.preprocessing)
    payload = calibration_payload(embed, records, source=source, method=method)
    info = {**checkpoint.info, "calibration": payload}
    return save_checkpoint(path, checkpoint.embedder, checkpoint.preprocessing, **info)


def manifest_calibration_records(
    cohort: Path,
    *,
    trained_on_sha256: str | None = None,
    trained_people: frozenset[str] = frozenset(),
) -> tuple[list[ImageRecord], dict[str, Any]]:
    """The images of a calibration cohort (knee manifest or ChestX-ray14 release) of people the
    network never trained on, and the calibration's source. Of a ChestX-ray14 release, or of the
    very cohort the network trained on, only the test split counts: training used the rest."""
    records, sha256 = read_cohort(cohort)
    if cohort.is_dir() or sha256 == trained_on_sha256:
        records = [r for r in records if r.split == "test"]
    records = [r for r in records if r.person_id not in trained_people]
    if not records:
        raise ValueError(f"{cohort} has no images of people the network never trained on")
    return records, {"kind": "manifest", "manifest": str(cohort), "manifest_sha256": sha256}


def people_to_calibrate_on(
    manifest: Path | None,
    validation: Sequence[ImageRecord],
    *,
    trained_on_sha256: str,
    trained_people: frozenset[str],
) -> tuple[list[ImageRecord], dict[str, Any]] | None:
    """The images a training run's checkpoint is calibrated on, and their source: the calibration
    manifest's people never trained on, or else the held-out validation people; None without
    either. Read before training starts, so that a manifest that cannot serve is refused then
    rather than after the last epoch."""
    if manifest is not None:
        records, source = manifest_calibration_records(
            manifest, trained_on_sha256=trained_on_sha256, trained_people=trained_people
        )
        if len({r.person_id for r in records}) < MIN_PEOPLE:
            raise ValueError(f"{manifest}: fewer than {MIN_PEOPLE} people to calibrate on")
        return records, source
    if validation:
        return list(validation), {"kind": "validation people"}
    return None


def calibrate_run(
    checkpoint: Path,
    people: tuple[list[ImageRecord], dict[str, Any]] | None,
    device: str = "cpu",
) -> str:
    """Calibrate a finished training run's best checkpoint on people_to_calibrate_on's images;
    return what was done, to print. A calibration that cannot be fitted leaves the checkpoint as
    it is: training itself succeeded."""
    if people is None:
        return "no calibration: no validation people were held out and no manifest was given"
    records, source = people
    try:
        calibrate_checkpoint(checkpoint, records, source=source, device=device)
    except ValueError as error:
        return f"no calibration: {error}"
    return calibration_summary(load_checkpoint(checkpoint).info["calibration"])


def calibration_summary(payload: dict[str, Any]) -> str:
    """Markdown: the method and source, then per curve (pooled, each band of years) the pairs it
    was fitted on, its ELUB, and the cross-validated Cllr."""
    source, validation = payload["source"], payload["validation"]
    calibration = Calibration.from_json(payload["calibration"])
    fitted = {curve.label: curve for curve in (calibration.pooled, *calibration.bands)}
    pairs = Pairs.from_json(payload["pairs"])
    same = pairs.same
    rows = [(POOLED, np.ones(len(same), dtype=bool), validation)] + [
        (band_label(*band), in_band(pairs.years, *band), validation["bands"][band_label(*band)])
        for band in year_bands()
    ]
    where = source["manifest"] or "the held-out validation people"
    lines = [
        f"calibration: {calibration.method} on {source['images']} images of {source['people']} "
        f"people ({where}); Cllr cross-validated over {validation['folds']} folds of people",
        "",
        "| curve | same pairs | different pairs | ELUB (log10) | Cllr | Cllr min |",
        "|---|---|---|---|---|---|",
    ]
    for label, chosen, measured in rows:
        curve = fitted.get(label)
        elub = "pooled used" if curve is None else _interval(curve.elub)
        lines.append(
            f"| {label} | {np.count_nonzero(same & chosen)} | {np.count_nonzero(~same & chosen)} "
            f"| {elub} | {_number(measured['cllr'])} | {_number(measured['cllr_min'])} |"
        )
    return "\n".join(lines)


def _interval(bounds: Sequence[float] | None) -> str:
    return "n/a" if bounds is None else f"[{bounds[0]:.2f}, {bounds[1]:.2f}]"


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
