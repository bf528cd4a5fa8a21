"""Fixtures shared by the test packages."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.phantom.cohort import CohortSpec, synthesize


@pytest.fixture(scope="session")
def phantom_manifest(tmp_path_factory) -> Path:
    """A small phantom knee cohort (PNG only): 10 people, every visit, both knees."""
    out = tmp_path_factory.mktemp("phantom")
    return synthesize(CohortSpec(out=out, subjects=10, seed=7, dicom=False), workers=1)
