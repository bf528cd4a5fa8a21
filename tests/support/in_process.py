"""The service opened in-process, for tests that need to act on it below the HTTP API: the same
domain functions the routes call, with no API key."""

from __future__ import annotations

from app.gallery.deletion import delete_image
from app.gallery.images import ImageFields, ingest_image
from app.gallery.people import add_person
from app.serving.service import Service
from app.storage.tables import Image


def ingest(service: Service, person_id: int, data: bytes) -> Image:
    """An image uploaded to an open service in-process, as the API would (no key)."""
    image, _ = ingest_image(
        records=service.records,
        matcher=service.matcher,
        metrics=service.metrics,
        person_id=person_id,
        data=data,
        fields=ImageFields(),
        key_id=None,
    )
    return image


def new_person(service: Service, external_ref: str) -> int:
    with service.records.sessions.begin() as session:
        return add_person(session, external_ref=external_ref, key_id=None).id


def delete(service: Service, image: Image) -> None:
    delete_image(
        service.records,
        service.matcher,
        image_id=image.id,
        reason="a test deletion",
        purge=False,
        key_id=None,
    )
