"""The phantom cohort on disk: every person's knees at every visit they attended, as 16-bit PNG and
DICOM twins, plus DIR/manifest.csv in the knee cohort's format.

Deterministic: one seed gives byte-identical files whatever the number of worker processes, because
every random draw comes from a generator keyed by (seed, person, side, visit, purpose). Person ids carry
the seed, so cohorts made with different seeds are disjoint sets of people: the natural train/test split.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from training.cohorts import write_knee_manifest
from training.phantom.anatomy import VISIT_MONTHS, knee_at_visit, sample_person
from training.phantom.dicom import Study, sample_encoding, write_dicom
from training.phantom.render import (
    render,
    sample_acquisition,
    sample_equipment,
    trabecular_texture,
)
from training.records import ImageRecord

SIDES = ("R", "L")
SITES = ("Phantom Site A", "Phantom Site B", "Phantom Site C", "Phantom Site D")


@dataclass(frozen=True)
class CohortSpec:
    out: Path
    subjects: int
    seed: int
    dicom: bool = True


def person_id(seed: int, index: int) -> str:
    return f"PH{seed}-{index:05d}"


def synthesize(spec: CohortSpec, workers: int | None = None, progress: bool = True) -> Path:
    """Generate the cohort and return the path of its manifest."""
    if spec.subjects < 1:
        raise ValueError("a cohort needs at least one subject")
    if spec.seed < 0:
        raise ValueError("the seed must be zero or positive")
    spec.out.mkdir(parents=True, exist_ok=True)
    workers = workers or min(os.cpu_count() or 1, spec.subjects)
    make = partial(_make_person, spec)
    indices = range(spec.subjects)
    bar = partial(tqdm, total=spec.subjects, unit="person", desc="synth", disable=not progress)
    if workers == 1:
        people = [make(i) for i in bar(indices)]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            people = list(bar(pool.map(make, indices)))
    records = [record for person in people for record in person]
    manifest = spec.out / "manifest.csv"
    write_knee_manifest(records, manifest)
    return manifest


def _make_person(spec: CohortSpec, index: int) -> list[ImageRecord]:
    pid = person_id(spec.seed, index)
    person = sample_person(pid, np.random.default_rng([spec.seed, index, 0]))
    meta_rng = np.random.default_rng([spec.seed, index, 1])
    baseline = date(2004, 2, 1) + timedelta(days=int(meta_rng.integers(0, 700)))
    site = SITES[int(meta_rng.integers(len(SITES)))]
    # The site's X-ray system before and after it is replaced (at person.equipment_change_years).
    equipment = [
        sample_equipment(np.random.default_rng([spec.seed, index, 3, era])) for era in (0, 1)
    ]
    records = []
    for side_code, side in enumerate(SIDES):
        seed = person.texture_seeds[side]
        texture = np.stack([trabecular_texture(seed), trabecular_texture(seed + 1)])
        for months in VISIT_MONTHS:
            if months in person.missed_visits:
                continue
            rng = np.random.default_rng([spec.seed, index, 2, side_code, months])
            era = int(months / 12.0 >= person.equipment_change_years)
            records.append(
                _make_image(
                    spec, person, side, months, texture, baseline, site, equipment[era], rng
                )
            )
    return records


def _make_image(spec, person, side, months, texture, baseline, site, equipment, rng) -> ImageRecord:
    state = knee_at_visit(person, side, months)
    acquisition = sample_acquisition(rng, equipment)
    acquired = baseline + timedelta(days=round(months * 30.4375))
    pixels = render(
        state,
        mirrored=side == "L",
        texture=texture,
        acquisition=acquisition,
        marker=side,
        caption=f"{site.upper()}  {acquired.isoformat()}",
        rng=rng,
    )
    display = np.round(pixels * 65535.0).astype(np.uint16)
    stem = f"{person.person_id}/{side}_{months:03d}m"
    png_path = spec.out / "png" / f"{stem}.png"
    png_path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(display).save(png_path, optimize=False)

    age = person.baseline_age + months / 12.0
    dicom_path = None
    if spec.dicom:
        dicom_path = spec.out / "dicom" / f"{stem}.dcm"
        study = Study(
            person_id=person.person_id,
            sex=person.sex,
            age_years=age,
            side=side,
            acquired=acquired,
            modality=equipment.detector.name[:2],
            view="PA" if equipment.label.startswith("PA") else "AP",
            site=site,
            pixel_spacing_mm=acquisition.detector.pixel_spacing_mm,
            uid_key=stem,
        )
        write_dicom(dicom_path, display, study, sample_encoding(rng))
    return ImageRecord(
        person_id=person.person_id,
        visit_months=float(months),
        path=png_path,
        body_part="KNEE",
        side=side,
        dicom_path=dicom_path,
        kl_grade=state.kl_grade,
        age=round(age, 1),
        sex=person.sex,
        pixel_spacing_mm=acquisition.detector.pixel_spacing_mm,
    )
