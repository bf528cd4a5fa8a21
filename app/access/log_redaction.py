"""Keeps API keys out of the access log: a client may put its key in the query string (the
service refuses it there, but uvicorn has logged the request line by then), or by mistake in the
path. Query values are masked, parameter names kept; anything shaped like a key is masked."""

from __future__ import annotations

import logging
import re

MASK = "***"
# app.access.keys makes keys as rmk_<12 hex>_<token>; a key cut short or mangled still starts so.
_KEY_SHAPED = re.compile(r"rmk_[A-Za-z0-9_\-%.~]*")
_QUERY_VALUE = re.compile(r"=[^&;]*")


def redacted_target(target: str) -> str:
    """The request target with every query value and anything key-shaped masked."""
    path, separator, query = target.partition("?")
    path = _KEY_SHAPED.sub(MASK, path)
    if not separator:
        return path
    query = _KEY_SHAPED.sub(MASK, _QUERY_VALUE.sub("=" + MASK, query))
    return f"{path}?{query}"


class RedactAccessLog(logging.Filter):
    """For uvicorn.access, whose records carry (client, method, target, http version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        arguments = record.args
        if isinstance(arguments, tuple) and len(arguments) == 5 and isinstance(arguments[2], str):
            record.args = (*arguments[:2], redacted_target(arguments[2]), *arguments[3:])
        return True
