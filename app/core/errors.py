"""Refusals the client can act on. Each carries its HTTP status and a message that says what was
wrong; the API turns them into JSON bodies. Anything else escaping a request is a bug (a 500)."""

from __future__ import annotations

from model.image import DecodeError, ImageTooLarge, UnsupportedFormat


class ClientError(Exception):
    status = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class Forbidden(ClientError):
    status = 403


class NotFound(ClientError):
    status = 404


class Conflict(ClientError):
    status = 409


class Gone(ClientError):
    status = 410


class TooLarge(ClientError):
    status = 413


class UnsupportedMediaType(ClientError):
    status = 415


class Unprocessable(ClientError):
    status = 422


class Busy(ClientError):
    """The server is busy with others' work of the same kind; the same request can succeed
    after Retry-After seconds."""

    status = 429

    def __init__(self, message: str, retry_after_seconds: int):
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after_seconds)}


class Unavailable(ClientError):
    status = 503


class InsufficientStorage(ClientError):
    """The server cannot store what it was sent (a full or unwritable disk): nothing was saved,
    and the same request can succeed once an administrator has made room."""

    status = 507


def decode_refusal(error: DecodeError) -> ClientError:
    """model/'s decoding refusals as HTTP errors: 415 for a format we do not read, 413 for an image
    too large to decode, 422 for anything else that is not one usable radiograph."""
    if isinstance(error, UnsupportedFormat):
        return UnsupportedMediaType(str(error))
    if isinstance(error, ImageTooLarge):
        return TooLarge(str(error))
    return Unprocessable(str(error))
