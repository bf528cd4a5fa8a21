"""What a stored search's query radiograph says about itself, for the examiner who compares it:
side, view, body part and sex from the file's header; pixel spacing and date from the search form
it was sent with, else from the header."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import TypeVar

from model.image import ImageMetadata

FILE = "file"
FORM = "search form"
T = TypeVar("T")


@dataclass(frozen=True)
class QueryFacts:
    format: str
    width: int
    height: int
    side: str | None = None
    view: str | None = None
    body_part: str | None = None
    sex: str | None = None
    pixel_spacing_mm: float | None = None
    study_date: date | None = None
    sources: dict[str, str] = field(default_factory=dict)


def query_facts(*, metadata: ImageMetadata, parameters: dict) -> QueryFacts:
    """The facts of a query from its decoded header and the parameters its search recorded. The
    form's pixel spacing and date win, as they did when the search ran. Side, view, body part and
    sex come from the file alone: the search form's filters say which gallery images were
    searched, not what the query shows."""
    stated_spacing = parameters.get("pixel_spacing_mm")
    stated_date = parameters.get("query_date")
    # The column spacing, as the search's physical crop uses it.
    file_spacing = metadata.pixel_spacing_mm[1] if metadata.pixel_spacing_mm else None
    from_file = {
        "side": metadata.laterality,
        "view": metadata.view_position,
        "body_part": metadata.body_part,
        "sex": metadata.patient_sex,
    }
    sources = {name: FILE for name, value in from_file.items() if value is not None}
    spacing, sources["pixel_spacing_mm"] = _form_first(stated_spacing, file_spacing)
    stated = date.fromisoformat(stated_date) if stated_date else None
    study_date, sources["study_date"] = _form_first(stated, metadata.acquisition_date)
    return QueryFacts(
        format=metadata.format,
        width=metadata.width,
        height=metadata.height,
        **from_file,
        pixel_spacing_mm=spacing,
        study_date=study_date,
        sources={name: source for name, source in sources.items() if source},
    )


def _form_first(from_form: T | None, from_file: T | None) -> tuple[T | None, str]:
    if from_form is not None:
        return from_form, FORM
    return from_file, FILE if from_file is not None else ""
