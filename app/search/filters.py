"""What a search may be narrowed to: the person's sex and birth year, the image's body part and
side. One definition serves the SQL that a search runs, the people listing, and a re-run's check
of whether a person still matches."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from sqlalchemy import ColumnElement

from app.storage.tables import Image, Person


@dataclass(frozen=True)
class SearchFilters:
    sex: str | None = None
    birth_year_min: int | None = None
    birth_year_max: int | None = None
    body_part: str | None = None
    side: str | None = None

    @classmethod
    def from_stored(cls, stored: dict[str, Any]) -> SearchFilters:
        """The filters a stored search recorded (names this version does not know are left out)."""
        known = {f.name for f in fields(cls)}
        return cls(**{name: value for name, value in stored.items() if name in known})

    def any(self) -> bool:
        return any(v is not None for v in asdict(self).values())

    def person_conditions(self) -> list[ColumnElement[bool]]:
        conditions = []
        if self.sex is not None:
            conditions.append(Person.sex == self.sex)
        if self.birth_year_min is not None:
            conditions.append(Person.birth_year >= self.birth_year_min)
        if self.birth_year_max is not None:
            conditions.append(Person.birth_year <= self.birth_year_max)
        return conditions

    def image_conditions(self) -> list[ColumnElement[bool]]:
        conditions = []
        if self.body_part is not None:
            conditions.append(Image.body_part == self.body_part)
        if self.side is not None:
            conditions.append(Image.side == self.side)
        return conditions

    def matches(self, person: Person, image: Image) -> bool:
        """The conditions above, on loaded rows (SQL's NULL never satisfies a comparison)."""
        birth_year = person.birth_year
        return (
            (self.sex is None or person.sex == self.sex)
            and (
                self.birth_year_min is None
                or (birth_year is not None and birth_year >= self.birth_year_min)
            )
            and (
                self.birth_year_max is None
                or (birth_year is not None and birth_year <= self.birth_year_max)
            )
            and (self.body_part is None or image.body_part == self.body_part)
            and (self.side is None or image.side == self.side)
        )

    def words(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in asdict(self).items() if v is not None)
