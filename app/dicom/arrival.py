"""How a radiograph came in, for its row and the audit log."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Arrival:
    """The way in ("c-store", "stow-rs", "dicomweb-pull", "dicomdir", "dicom-folder") and who sent
    it (a calling AE title, an API key's name, a DICOMweb server, a path), with the API key where
    there is one."""

    via: str
    sender: str
    key_id: int | None = None

    @property
    def audit_details(self) -> dict[str, Any]:
        return {"via": self.via, "sender": self.sender}
