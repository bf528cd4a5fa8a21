"""The service opened in-process, for tests that need to act on it below the HTTP API."""

from __future__ import annotations

from app.gallery.images import ImageFields, ingest_image
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
