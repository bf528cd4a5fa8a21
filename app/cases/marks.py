"""What an examiner marks and measures on the two images of a comparison, kept with their
conclusion: numbered marks on corresponding features (each placed on the query and on the
candidate's image), and distances and angles on either image.

Points are in the originals' pixels (origin top left, x to the right, y down, the image
unflipped). Each measurement's value is computed here from its points and the image's pixel
spacing, so that the number in the history and the case report is the one its points give: in
millimetres where the spacing is known, else in pixels."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from app.core.errors import Unprocessable

QUERY = "query"
CANDIDATE = "candidate"


@dataclass(frozen=True)
class ImageFrame:
    """An original's size in pixels and its pixel spacing (None when unknown)."""

    name: str  # how a refusal names it
    width: int
    height: int
    pixel_spacing_mm: float | None

    def check(self, point: dict[str, float], what: str) -> None:
        if not (0 <= point["x"] <= self.width and 0 <= point["y"] <= self.height):
            raise Unprocessable(
                f"{what} is at ({point['x']:g}, {point['y']:g}), outside the {self.name} "
                f"({self.width} x {self.height} pixels)"
            )


@dataclass(frozen=True)
class Findings:
    """Marks and measurements as sent with a conclusion (checked for shape by the API schema)."""

    candidate_image_id: int | None = None
    marks: list[dict[str, Any]] = field(default_factory=list)
    measurements: list[dict[str, Any]] = field(default_factory=list)

    @property
    def on_query(self) -> bool:
        return bool(self.marks) or any(m["image"] == QUERY for m in self.measurements)

    @property
    def on_candidate(self) -> bool:
        return bool(self.marks) or any(m["image"] == CANDIDATE for m in self.measurements)

    def checked(
        self, *, query: ImageFrame | None, candidate: ImageFrame | None
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The marks, and the measurements with their values, once every point is found within
        its image; `query` and `candidate` are needed where a point lies on them."""
        frames = {QUERY: query, CANDIDATE: candidate}
        for mark in self.marks:
            for image in (QUERY, CANDIDATE):
                frames[image].check(mark[image], f"mark {mark['number']} on the {image}")
        measured = []
        for number, measurement in enumerate(self.measurements, start=1):
            frame = frames[measurement["image"]]
            for point in measurement["points"]:
                frame.check(point, f"measurement {number}")
            measured.append(with_value(measurement, frame.pixel_spacing_mm))
        return list(self.marks), measured


def with_value(measurement: dict[str, Any], spacing_mm: float | None) -> dict[str, Any]:
    """The measurement with its value: a distance in mm (px without a spacing), or the angle in
    degrees at the middle of its three points."""
    points = [(p["x"], p["y"]) for p in measurement["points"]]
    if measurement["kind"] == "distance":
        (x0, y0), (x1, y1) = points
        pixels = math.hypot(x1 - x0, y1 - y0)
        value, unit = (pixels * spacing_mm, "mm") if spacing_mm else (pixels, "px")
    else:
        (ax, ay), (vx, vy), (bx, by) = points
        first, second = (ax - vx, ay - vy), (bx - vx, by - vy)
        if math.hypot(*first) == 0 or math.hypot(*second) == 0:
            raise Unprocessable(
                "an angle's arms need a length: its end points differ from its vertex"
            )
        cross = first[0] * second[1] - first[1] * second[0]
        dot = first[0] * second[0] + first[1] * second[1]
        value, unit = math.degrees(abs(math.atan2(cross, dot))), "°"
    return {**measurement, "value": round(value, 3), "unit": unit, "pixel_spacing_mm": spacing_mm}
