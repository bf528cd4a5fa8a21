"""Reading an uploaded file within the size limit."""

from __future__ import annotations

from pathlib import PurePosixPath, PureWindowsPath

from fastapi import UploadFile

from app.core.errors import TooLarge, Unprocessable

# The width of the images.body_part column.
BODY_PART_MAX = 32


def read_upload(file: UploadFile, limit: int) -> bytes:
    data = file.file.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(
            f"the file is larger than the limit of {limit} bytes (RADMATCH_MAX_UPLOAD_BYTES)"
        )
    if not data:
        raise Unprocessable("the uploaded file is empty")
    return data


def body_part(text: str | None) -> str | None:
    """A body part as it is stored and filtered on: stripped and upper-cased. Upper-casing can
    lengthen text ("ß" becomes "SS"), so the length is checked after it."""
    if not text:
        return None
    part = text.strip().upper()
    if len(part) > BODY_PART_MAX:
        raise Unprocessable(
            f"body_part is {len(part)} characters once upper-cased; at most {BODY_PART_MAX}"
        )
    return part


def display_name(filename: str | None) -> str | None:
    """The uploaded file's own name, for display: no folders, no control characters."""
    if not filename:
        return None
    name = PureWindowsPath(PurePosixPath(filename).name).name
    name = "".join(ch for ch in name if ch.isprintable())[:255]
    return name or None
