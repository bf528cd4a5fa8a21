"""The in-memory form of a cohort: one record per radiograph, whatever the source format."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ImageRecord:
    person_id: str
    visit_months: float  # months since this person's first imaging
    path: Path  # absolute path of the image used for training and evaluation
    body_part: str  # "KNEE" or "CHEST"
    side: str | None = None  # "L" or "R" for knees
    dicom_path: Path | None = None  # the DICOM twin, when the cohort has one
    kl_grade: int | None = None  # Kellgren-Lawrence grade, knees only
    age: float | None = None
    sex: str | None = None  # "M" or "F"
    pixel_spacing_mm: float | None = None
    split: str | None = None  # "train" or "test" when the source defines a split
