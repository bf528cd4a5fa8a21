"""Radiographs shown to a person: an 8-bit preview of any stored original, and the media types
the originals are served with."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image as PILImage

from app.serving.matcher import Matcher

MEDIA_TYPES = {
    "dicom": "application/dicom",
    "png": "image/png",
    "jpeg": "image/jpeg",
    "tiff": "image/tiff",
}
FILE_SUFFIXES = {"dicom": "dcm", "png": "png", "jpeg": "jpg", "tiff": "tif"}
# A preview of stored bytes never changes; an hour in the examiner's own browser only, so that a
# deleted image does not linger.
PREVIEW_CACHING = {"Cache-Control": "private, max-age=3600"}


def preview_png(matcher: Matcher, data: bytes, max_side: int) -> bytes:
    """An 8-bit greyscale PNG of a radiograph, bone bright, at most max_side pixels wide or high."""
    decoded = matcher.decode(data)
    picture = PILImage.fromarray(np.round(decoded.pixels * 255).astype(np.uint8))
    picture.thumbnail((max_side, max_side), PILImage.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()
