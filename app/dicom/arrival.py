"""How a radiograph came in, for its row and the audit log, and where it goes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.core.errors import Unprocessable


@dataclass(frozen=True)
class Arrival:
    """The way in ("c-store", "stow-rs", "dicomweb-pull", "dicomdir", "dicom-folder") and who sent
    it (a calling AE title, an API key's name, a DICOMweb server, a path), with the API key where
    there is one, or who brought it in from the command line (app.audit.entries.command_line_actor)
    where there is none."""

    via: str
    sender: str
    key_id: int | None = None
    by: dict[str, str] | None = None

    @property
    def audit_details(self) -> dict[str, Any]:
        details: dict[str, Any] = {"via": self.via, "sender": self.sender}
        return details if self.by is None else {**details, "by": self.by}


@dataclass(frozen=True)
class Destination:
    """Where received radiographs go: a case's inbox (the unknown person's images), or the gallery
    (known people's, grouped by PatientID under `issuer` unless an object names its own)."""

    case_id: int | None = None
    issuer: str | None = None

    def __post_init__(self) -> None:
        if (self.case_id is None) == (self.issuer is None):
            raise ValueError("a destination is a case's inbox or the gallery under an issuer")

    def describe(self) -> str:
        if self.case_id is not None:
            return f"the inbox of case {self.case_id}"
        return f"the gallery (PatientIDs issued by {self.issuer})"


ISSUER_MAX = 64


def check_issuer(issuer: str | None) -> str:
    """An issuer of PatientIDs as people's references carry it: 1 to 64 printable characters."""
    if not issuer or len(issuer) > ISSUER_MAX or not issuer.isprintable():
        raise Unprocessable(f"the issuer must be 1 to {ISSUER_MAX} printable characters")
    return issuer
