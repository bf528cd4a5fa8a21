"""What a re-run's explanations need to know about the people in either answer: their images,
when each came into the index, what was deleted or edited since the search, and why."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from app.rerun.words import when
from app.search.answer import Candidate
from app.storage.tables import AuditEntry, Embedding, Image, Person, Search


@dataclass
class Gallery:
    """What explanations need about the people in either answer and their images."""

    searched_at: datetime
    generation: int  # the stored search's index generation
    people: dict[int, Person]
    images: dict[int, Image]
    images_of: dict[int, list[Image]]
    added_generation: dict[int, int]  # image id -> when the search's model's embedding came in
    reasons: dict[tuple[str, int], str]  # ("image" | "person", id) -> why it was deleted
    edited: dict[tuple[str, int], datetime]  # targets changed by an *.update entry since

    def deleted_since(self, image_id: int) -> bool:
        deleted = self.images[image_id].deleted_at
        return deleted is not None and deleted > self.searched_at

    def deleted_before(self, image_id: int) -> bool:
        deleted = self.images[image_id].deleted_at
        return deleted is not None and deleted <= self.searched_at

    def added_since(self, image_id: int) -> str | None:
        """How the image came in after the search, or None."""
        image = self.images[image_id]
        if image.uploaded_at > self.searched_at:
            return f"image {image_id} was uploaded on {when(image.uploaded_at)}, after the search"
        generation = self.added_generation.get(image_id)
        if generation is not None and generation > self.generation:
            return (
                f"image {image_id} entered the index at generation {generation}, after the "
                f"search's generation {self.generation}"
            )
        return None

    def deletion(self, image_id: int) -> str:
        image = self.images[image_id]
        reason = self.reasons.get(("image", image_id))
        said = f" (reason: {reason})" if reason else ""
        return f"image {image_id} was deleted on {when(image.deleted_at)}{said}"

    def edit(self, person_id: int, image_ids: list[int]) -> str | None:
        targets = [("person", person_id)] + [("image", i) for i in image_ids]
        times = [self.edited[t] for t in targets if t in self.edited]
        if not times:
            return None
        return f"its record was edited on {when(max(times))}, after the search"

    def deleted_during(self, image_ids: list[int]) -> str:
        """Why images the stored answer showed are not in the re-run at the original state."""
        deleted = "; ".join(self.deletion(i) for i in image_ids)
        return (
            f"{deleted}, while the search was being answered (it was recorded on "
            f"{when(self.searched_at)}): the search had already ranked it; the re-run, at the "
            "gallery as it was when the search was recorded, leaves it out"
        )


def load_gallery(session: Session, record: Search, candidates: Iterable[Candidate]) -> Gallery:
    person_ids = sorted({c.person_id for c in candidates})
    people = {
        p.id: p for p in session.scalars(select(Person).where(Person.id.in_(person_ids))).all()
    }
    rows = session.scalars(
        select(Image).where(Image.person_id.in_(person_ids)).order_by(Image.id)
    ).all()
    images = {image.id: image for image in rows}
    images_of: dict[int, list[Image]] = {p: [] for p in person_ids}
    for image in rows:
        images_of[image.person_id].append(image)
    added = dict(
        session.execute(
            select(Embedding.image_id, Embedding.added_generation).where(
                Embedding.model_version_id == record.model_version_id,
                Embedding.image_id.in_(list(images)),
            )
        ).all()
    )
    entries = session.execute(
        select(AuditEntry.action, AuditEntry.target_type, AuditEntry.target_id, AuditEntry.at)
        .add_columns(AuditEntry.details)
        .where(
            or_(
                and_(AuditEntry.target_type == "image", AuditEntry.target_id.in_(list(images))),
                and_(AuditEntry.target_type == "person", AuditEntry.target_id.in_(person_ids)),
            )
        )
        .order_by(AuditEntry.id)
    ).all()
    reasons, edited = {}, {}
    for action, target_type, target_id, at, details in entries:
        if action.endswith(".delete") and isinstance(details, dict) and details.get("reason"):
            reasons[(target_type, target_id)] = str(details["reason"])
        elif action.endswith(".update") and at > record.created_at:
            edited[(target_type, target_id)] = at
    return Gallery(
        searched_at=record.created_at,
        generation=record.index_generation,
        people=people,
        images=images,
        images_of=images_of,
        added_generation=added,
        reasons=reasons,
        edited=edited,
    )
