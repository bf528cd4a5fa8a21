"""A query's facts for the comparison page: side, view, body part and sex from the file's header
only (the search form's filters describe the gallery searched, not the query), and the form's pixel
spacing and date before the file's (as the search used them)."""

from __future__ import annotations

import io
from datetime import date

import numpy as np
from PIL import Image as PILImage

from app.search.query_facts import query_facts
from model.decode import decode_image
from tests.support.images import phantom_dicom

PIXELS = (np.arange(96 * 80, dtype=np.uint16).reshape(96, 80) * 7) % 4096


def test_a_dicom_query_says_its_own_side_view_spacing_and_date():
    decoded = decode_image(phantom_dicom(PIXELS, "facts", side="L", pixel_spacing_mm=0.25))
    parameters = {"filters": {"side": "R", "body_part": "CHEST"}, "pixel_spacing_mm": None}
    facts = query_facts(metadata=decoded.metadata, parameters=parameters)
    assert (facts.side, facts.view, facts.sex) == ("L", "PA", "F")
    assert facts.pixel_spacing_mm == 0.25
    assert facts.study_date == date(2020, 1, 1)
    assert (facts.width, facts.height) == (80, 96)
    assert facts.sources["side"] == "file" and facts.sources["pixel_spacing_mm"] == "file"


def test_a_png_query_takes_only_its_spacing_and_date_from_the_search_form():
    buffer = io.BytesIO()
    PILImage.fromarray((PIXELS // 16).astype(np.uint8)).save(buffer, format="PNG")
    decoded = decode_image(buffer.getvalue())
    parameters = {
        "filters": {"side": "R", "body_part": "KNEE", "sex": None},
        "pixel_spacing_mm": 0.2,
        "query_date": "2024-03-01",
    }
    facts = query_facts(metadata=decoded.metadata, parameters=parameters)
    assert (facts.side, facts.body_part, facts.sex, facts.view) == (None, None, None, None)
    assert facts.pixel_spacing_mm == 0.2 and facts.study_date == date(2024, 3, 1)
    assert facts.sources == {"pixel_spacing_mm": "search form", "study_date": "search form"}
