"""The case records: the database (the truth) and the originals its rows refer to. Domain
functions that read or write evidence take this, and nothing more of the running service."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import exists, select
from sqlalchemy.orm import Session, sessionmaker

from app.storage.originals import OriginalStore
from app.storage.tables import Image, InboxItem, Search


@dataclass(frozen=True)
class Records:
    sessions: sessionmaker[Session]
    originals: OriginalStore

    def original_needed(self, sha256: str) -> bool:
        """Whether a committed row needs this stored original: an image's (unless purged), a
        stored search's query, or a radiograph waiting in a case's inbox."""
        with self.sessions() as session:
            image = select(Image.id).where(
                Image.sha256 == sha256, Image.original_purged_at.is_(None)
            )
            query = select(Search.id).where(Search.query_sha256 == sha256)
            received = select(InboxItem.id).where(InboxItem.sha256 == sha256)
            return session.scalar(select(exists(image) | exists(query) | exists(received)))

    def settle_abandoned(self) -> None:
        """Remove originals that writers killed between storing them and committing left."""
        self.originals.settle_abandoned(self.original_needed)
