"""What a stored search's query radiograph says about itself, for the examiner who compares it:
side, view, body part, sex, pixel spacing and date, each from the file's header or, where the
file is silent, from the search form it was sent with."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from model.image import ImageMetadata

FILE = "file"
FORM = "search form"


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
    form's pixel spacing and date win, as they did when the search ran; the side, body part and
    sex the search was narrowed to stand in only where the file does not say."""
    filters = parameters.get("filters") or {}
    stated_spacing = parameters.get("pixel_spacing_mm")
    stated_date = parameters.get("query_date")
    sources: dict[str, str] = {}

    def pick(name: str, from_file: object, from_form: object, form_first: bool = False) -> object:
        order = (
            [(from_form, FORM), (from_file, FILE)]
            if form_first
            else [
                (from_file, FILE),
                (from_form, FORM),
            ]
        )
        for value, source in order:
            if value is not None:
                sources[name] = source
                return value
        return None

    # The column spacing, as the search's physical crop uses it.
    file_spacing = metadata.pixel_spacing_mm[1] if metadata.pixel_spacing_mm else None
    return QueryFacts(
        format=metadata.format,
        width=metadata.width,
        height=metadata.height,
        side=pick("side", metadata.laterality, filters.get("side")),
        view=pick("view", metadata.view_position, None),
        body_part=pick("body_part", metadata.body_part, filters.get("body_part")),
        sex=pick("sex", metadata.patient_sex, filters.get("sex")),
        pixel_spacing_mm=pick("pixel_spacing_mm", file_spacing, stated_spacing, form_first=True),
        study_date=pick(
            "study_date",
            metadata.acquisition_date,
            date.fromisoformat(stated_date) if stated_date else None,
            form_first=True,
        ),
        sources=sources,
    )
