"""A multipart/related body (RFC 2046 section 5.1, RFC 2387) split into its parts without holding
it in memory: the body lies in a file as it arrived, one scan finds the boundaries, and each
part's bytes are read from the file only when its turn comes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from app.core.errors import ClientError

CRLF = b"\r\n"
SCAN_BLOCK = 1024 * 1024
# A part's header lines (Content-Type, Content-Location, ...) are short; more than this before
# the blank line means the body is not what it claims to be.
HEADER_LIMIT = 16 * 1024
# After a boundary, transport padding (spaces, tabs) may come before the line ends.
PADDING_LIMIT = 1024


@dataclass(frozen=True)
class Part:
    """One body part: its number (from 1), its declared Content-Type, and where its content lies
    in the file."""

    number: int
    content_type: str | None
    start: int
    size: int

    def read(self, body: BinaryIO) -> bytes:
        body.seek(self.start)
        return body.read(self.size)


def split_parts(body: BinaryIO, boundary: bytes) -> list[Part]:
    """The parts between the first boundary and the closing one; ClientError (400) when the
    body is not a complete multipart body with this boundary."""
    delimiter = CRLF + b"--" + boundary
    # The first boundary may open the body without a line break before it.
    body.seek(0)
    starts_with_boundary = body.read(len(delimiter) - 2) == delimiter[2:]
    found = ([-2] if starts_with_boundary else []) + list(_occurrences(body, delimiter))
    parts: list[Part] = []
    content_start: int | None = None
    for position in found:
        after = position + len(delimiter)
        body.seek(after)
        rest = body.read(PADDING_LIMIT)
        if rest.startswith(b"--"):  # the closing boundary: what follows is the epilogue
            if content_start is not None:
                parts.append(_part(body, len(parts) + 1, content_start, position))
            return parts
        line_end = rest.find(CRLF)
        if line_end < 0 or rest[:line_end].strip(b" \t"):
            continue  # the boundary's text inside a part's content, not a boundary line
        if content_start is not None:
            parts.append(_part(body, len(parts) + 1, content_start, position))
        content_start = after + line_end + len(CRLF)
    if not found:
        raise ClientError("the body holds no part: the boundary of its Content-Type never occurs")
    raise ClientError(
        "the body ends without its closing boundary: it was cut off, or its boundary is not the "
        "one its Content-Type names"
    )


def _part(body: BinaryIO, number: int, start: int, end: int) -> Part:
    """The part from `start` (its header lines) to `end` (the line break before the next
    boundary)."""
    body.seek(start)
    head = body.read(min(HEADER_LIMIT, end - start))
    if head.startswith(CRLF):  # no header lines: the content is text/plain by RFC 2046
        headers_end = len(CRLF)
        header_lines: list[bytes] = []
    else:
        blank = head.find(CRLF + CRLF)
        if blank < 0:
            raise ClientError(
                f"part {number} has no blank line after its headers within {HEADER_LIMIT} bytes"
            )
        headers_end = blank + 2 * len(CRLF)
        header_lines = head[:blank].split(CRLF)
    content_type = None
    for line in header_lines:
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() == b"content-type":
            content_type = value.strip().decode("latin-1")
    return Part(number, content_type, start + headers_end, end - start - headers_end)


def _occurrences(body: BinaryIO, needle: bytes) -> Iterator[int]:
    """Every offset of `needle` in the file, reading it a block at a time."""
    body.seek(0)
    buffer, offset = b"", 0  # offset: where buffer[0] lies in the file
    while block := body.read(SCAN_BLOCK):
        buffer += block
        search_from = 0
        while (found := buffer.find(needle, search_from)) >= 0:
            yield offset + found
            search_from = found + 1
        # Keep the tail a needle may start in, but nothing already searched from.
        keep_from = max(len(buffer) - len(needle) + 1, search_from)
        offset += keep_from
        buffer = buffer[keep_from:]
