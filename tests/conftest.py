"""Fixtures shared by the test packages: phantom and ChestX-ray14 cohorts, a model checkpoint, a
database on SQLite or PostgreSQL, a real `radmatch serve` process on a free port (one per
test, or one that a module's tests share), and a real Orthanc PACS for a module's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.support.databases import new_postgres_database
from tests.support.dicom_peers import Orthanc
from tests.support.servers import Server, calibrated, new_server, seeded_checkpoint
from training.phantom.cohort import CohortSpec, synthesize


@pytest.fixture(scope="session")
def phantom_manifest(tmp_path_factory) -> Path:
    """A small phantom knee cohort (PNG only): 10 people, every visit, both knees."""
    out = tmp_path_factory.mktemp("phantom")
    return synthesize(CohortSpec(out=out, subjects=10, seed=7, dicom=False), workers=1)


CXR_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],"
)


@pytest.fixture
def chestxray14_release():
    """Writes a small release: chestxray14_release(root, patients, test_patients, visits=2)."""
    return write_chestxray14


def write_chestxray14(root: Path, patients: int, test_patients: set[int], visits: int = 2) -> Path:
    """A small release in NIH ChestX-ray14's layout: random 128 px images, one visit a year."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows, split = [], {"test": [], "train": []}
    for patient in range(1, patients + 1):
        for follow_up in range(visits):
            name = f"{patient:08d}_{follow_up:03d}.png"
            pixels = rng.integers(0, 256, size=(128, 128), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "images" / name)
            age = 40 + patient + follow_up
            rows.append(
                f"{name},No Finding,{follow_up},{patient},{age},F,PA,1024,1024,0.143,0.143,"
            )
            split["test" if patient in test_patients else "train"].append(name)
    (root / "Data_Entry_2017.csv").write_text("\n".join([CXR_HEADER, *rows]) + "\n")
    (root / "test_list.txt").write_text("\n".join(split["test"]) + "\n")
    (root / "train_val_list.txt").write_text("\n".join(split["train"]) + "\n")
    return root


@pytest.fixture(scope="session")
def calibration_manifest(tmp_path_factory) -> Path:
    """Other phantom people (PNG only), for calibrations: 6 people, every visit, both knees."""
    out = tmp_path_factory.mktemp("phantom-calibration")
    return synthesize(CohortSpec(out=out, subjects=6, seed=11, dicom=False), workers=1)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory, calibration_manifest) -> Path:
    """A seeded ResNet-18 embedder at 64 px: untrained, but a fixed, real model, calibrated on
    phantom people other than those the tests search."""
    path = seeded_checkpoint(tmp_path_factory.mktemp("model") / "checkpoint.pt")
    return calibrated(path, calibration_manifest)


@pytest.fixture
def postgres_url():
    """A new, empty PostgreSQL database for one test."""
    with new_postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'radmatch.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def server(tmp_path, database_url, checkpoint) -> Iterator[Server]:
    """A running server on a migrated database, stopped after the test."""
    running = new_server(tmp_path, database_url, checkpoint)
    yield running
    running.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def module_database_url(request, tmp_path_factory) -> Iterator[str]:
    """A new database for a module's shared server: a SQLite file, or a PostgreSQL database
    dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('shared-db') / 'radmatch.db'}"
        return
    with new_postgres_database() as url:
        yield url


@pytest.fixture(scope="module")
def shared_server(module_database_url, tmp_path_factory, checkpoint) -> Iterator[Server]:
    """One running server on each database, shared by a module's tests: starting a server takes
    seconds, most tests a fraction of one. For tests that make their own people and cases and
    never count what the others made."""
    running = new_server(tmp_path_factory.mktemp("shared"), module_database_url, checkpoint)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory) -> Iterator[Orthanc]:
    """A running Orthanc with DICOMweb, shared by a module's tests (it starts in a fraction of
    a second, but what they store accumulates), stopped afterwards."""
    with Orthanc(tmp_path_factory.mktemp("orthanc")) as running:
        yield running
