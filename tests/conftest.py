"""Fixtures shared by the test packages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

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
