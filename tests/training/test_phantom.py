"""The phantom cohort: deterministic, faithful DICOM twins, and a plausible longitudinal story."""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import JPEG2000

from cli import main
from model.decode import decode_image
from training.cohorts import read_knee_manifest
from training.phantom.anatomy import VISIT_MONTHS, knee_at_visit, sample_person
from training.phantom.cohort import CohortSpec, person_id, synthesize
from training.phantom.dicom import (
    SIGNED_SYNTAXES,
    TRANSFER_SYNTAXES,
    Encoding,
    Study,
    write_dicom,
)

SUBJECTS = 2


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("phantom")
    assert main(["synth", "--out", str(out), "--subjects", str(SUBJECTS), "--seed", "7"]) == 0
    return out


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_gives_byte_identical_files_whatever_the_workers(cohort, tmp_path):
    synthesize(CohortSpec(out=tmp_path, subjects=SUBJECTS, seed=7), workers=1, progress=False)
    again = _digests(tmp_path)
    assert again == _digests(cohort)
    assert len(again) > 4 * SUBJECTS  # manifest, and PNG plus DICOM per visit


def test_another_seed_gives_other_people_and_other_pixels(cohort, tmp_path):
    manifest = synthesize(CohortSpec(out=tmp_path, subjects=1, seed=8), progress=False)
    theirs = {r.person_id for r in read_knee_manifest(manifest)}
    ours = {r.person_id for r in read_knee_manifest(cohort / "manifest.csv")}
    assert not theirs & ours
    assert person_id(7, 0) in ours


def test_manifest_describes_every_image(cohort):
    header = (cohort / "manifest.csv").read_text().splitlines()[0].split(",")
    required = ["person_id", "side", "visit_months", "path", "dicom_path", "kl_grade", "age", "sex"]
    assert header[: len(required)] == required
    records = read_knee_manifest(cohort / "manifest.csv")
    assert {r.person_id for r in records} == {person_id(7, i) for i in range(SUBJECTS)}
    for person in {r.person_id for r in records}:
        mine = [r for r in records if r.person_id == person]
        assert {r.side for r in mine} == {"L", "R"}
        assert all(r.visit_months in VISIT_MONTHS for r in mine)
        assert any(r.visit_months == 0 for r in mine), "every person has a baseline visit"
    assert all(r.path.is_file() and r.dicom_path.is_file() for r in records)


def test_dicom_twin_decodes_to_the_png_pixels(cohort):
    for record in read_knee_manifest(cohort / "manifest.csv"):
        png = decode_image(record.path.read_bytes())
        dicom = decode_image(record.dicom_path.read_bytes())
        difference = np.abs(png.pixels - dicom.pixels)
        if dicom.metadata.transfer_syntax_uid == JPEG2000:  # lossy, at 62 dB PSNR
            assert difference.max() < 0.02 and difference.mean() < 1e-3
        else:
            assert difference.max() < 1e-4, record.dicom_path
        meta = dicom.metadata
        assert meta.modality in {"CR", "DX"}
        assert meta.body_part == "KNEE"
        assert meta.laterality == record.side
        assert meta.patient_id == record.person_id
        assert meta.pixel_spacing_mm == (record.pixel_spacing_mm, record.pixel_spacing_mm)


def test_bone_is_brighter_than_soft_tissue_and_air(cohort):
    record = read_knee_manifest(cohort / "manifest.csv")[0]
    pixels = decode_image(record.path.read_bytes()).pixels
    n = pixels.shape[0]
    centre = pixels[n // 2 - n // 10 : n // 2 + n // 10, n // 2 - n // 10 : n // 2 + n // 10]
    edge_rows = pixels[n // 3 : 2 * n // 3]
    # The joint is bone; the left and right image edges (inside the collimation) are soft tissue/air.
    assert np.median(centre) > np.median(
        np.concatenate([edge_rows[:, 20:50], edge_rows[:, -50:-20]])
    )


def test_knees_change_the_way_real_knees_do():
    people = [sample_person(f"T{i}", np.random.default_rng(i)) for i in range(300)]
    replaced = [p for p in people if p.replacement is not None]
    assert 5 <= len(replaced) <= 45
    assert sum(bool(p.missed_visits) for p in people) > 100
    grades_at_end = []
    for person in people:
        for side in ("L", "R"):
            states = [knee_at_visit(person, side, m) for m in VISIT_MONTHS]
            grades = [s.kl_grade for s in states if not s.implant]
            assert grades == sorted(grades), "osteoarthritis does not heal"
            assert all(s.kl_grade is None for s in states if s.implant)
            spaces = [s.shape.joint_space_medial for s in states]
            assert spaces == sorted(spaces, reverse=True), "the joint space only narrows"
            drift = [s.texture_drift for s in states]
            assert drift[0] == 0 and drift == sorted(drift)
            grades_at_end.append(grades[-1])  # the last grade before any replacement
    counts = np.bincount(grades_at_end, minlength=5)
    assert counts[0] > 0 and counts[4] > 0 and counts[2:4].sum() > 0


@pytest.mark.parametrize(
    "encoding",
    [
        Encoding(syntax, photometric, signed)
        for syntax, _ in TRANSFER_SYNTAXES
        for photometric in ("MONOCHROME1", "MONOCHROME2")
        for signed in (False, True)
        if not (signed and (photometric == "MONOCHROME1" or syntax not in SIGNED_SYNTAXES))
    ],
    ids=str,
)
def test_every_dicom_variant_decodes_to_its_png_twin(tmp_path, encoding):
    rng = np.random.default_rng(0)
    display = rng.integers(0, 65536, size=(96, 80)).astype(np.uint16)
    display[:, :10] = 0
    display[:, -10:] = 65535  # the ends of the range survive the round trip too
    study = Study(
        person_id="PH0-00000",
        sex="F",
        age_years=61.5,
        side="L",
        acquired=date(2006, 3, 1),
        modality="DX",
        view="PA",
        site="Phantom Site A",
        pixel_spacing_mm=0.3,
        uid_key="variant",
    )
    write_dicom(tmp_path / "twin.dcm", display, study, encoding)
    decoded = decode_image((tmp_path / "twin.dcm").read_bytes())
    expected = display / 65535.0
    difference = np.abs(decoded.pixels - expected)
    if encoding.transfer_syntax == JPEG2000:
        assert difference.mean() < 2e-3  # lossy; this noise image is its worst case
    else:
        assert difference.max() < 1e-4
    assert decoded.metadata.transfer_syntax_uid == encoding.transfer_syntax
    assert decoded.metadata.photometric_interpretation == encoding.photometric
    assert decoded.metadata.acquisition_date == date(2006, 3, 1)
    assert decoded.metadata.patient_age_years == 61
