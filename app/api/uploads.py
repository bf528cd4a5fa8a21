"""Reading an uploaded file within the size limit."""

from __future__ import annotations

from pathlib import PurePosixPath, PureWindowsPath

from fastapi import UploadFile

from app.errors import TooLarge, Unprocessable


def read_upload(file: UploadFile, limit: int) -> bytes:
    data = file.file.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(
            f"the file is larger than the limit of {limit} bytes (RADMATCH_MAX_UPLOAD_BYTES)"
        )
    if not data:
        raise Unprocessable("the uploaded file is empty")
    return data


def display_name(filename: str | None) -> str | None:
    """The uploaded file's own name, for display: no folders, no control characters."""
    if not filename:
        return None
    name = PureWindowsPath(PurePosixPath(filename).name).name
    name = "".join(ch for ch in name if ch.isprintable())[:255]
    return name or None
