"""What decoding produces, and the ways it can refuse an input."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import numpy as np


class DecodeError(ValueError):
    """An input that cannot become a radiograph. The message says what was wrong, for the uploader."""


class UnsupportedFormat(DecodeError):
    """The bytes are not a format we read (or a DICOM transfer syntax we cannot decode)."""


class NotAnImage(DecodeError):
    """A valid DICOM object that carries no image: a structured report, RT plan, waveform, ..."""


class MultiFrameImage(DecodeError):
    """More than one frame (a cine loop, tomosynthesis stack); we match single radiographs."""


class CorruptImage(DecodeError):
    """Truncated or internally inconsistent data."""


class ImageTooSmall(DecodeError):
    """Too few pixels to hold the anatomy we match on."""


class ImageTooLarge(DecodeError):
    """Would need more memory than allowed; refused before the pixels are allocated."""


@dataclass(frozen=True)
class DecodeLimits:
    """What one decode may take.

    max_decode_bytes bounds the memory a decode holds at once (model.memory estimates it from the
    header). The default, 512 MB, lets through every radiograph a detector produces: the largest
    flat panels are about 4300x4300 16-bit grey, which needs about 400 MB as native DICOM, 370 MB
    as a 16-bit PNG and under 500 MB even as deflated DICOM, while it refuses what only a
    crafted or mistaken file asks for (a 7740x7740 RGB PNG needs about 1.9 GB).
    """

    min_side: int = 64
    max_pixels: int = 60_000_000
    max_decode_bytes: int = 512 * 1024 * 1024


@dataclass(frozen=True)
class ImageMetadata:
    format: str  # "dicom", "png", "jpeg" or "tiff"
    width: int
    height: int
    bits_stored: int
    pixel_spacing_mm: tuple[float, float] | None = None  # (row spacing, column spacing)
    sop_instance_uid: str | None = None
    modality: str | None = None
    body_part: str | None = None
    laterality: str | None = None  # "L" or "R"
    view_position: str | None = None
    acquisition_date: date | None = None
    patient_id: str | None = None
    patient_sex: str | None = None
    patient_age_years: float | None = None
    photometric_interpretation: str | None = None
    transfer_syntax_uid: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DecodedImage:
    pixels: np.ndarray  # float32, shape (height, width), values in [0, 1], bone bright
    metadata: ImageMetadata
