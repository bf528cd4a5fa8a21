"""Headers every answer carries, and answers for content named by its sha256: ETag, HEAD and
If-None-Match."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request, Response
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# An answer that sets no policy of its own (JSON, an image, an error page) may load nothing and
# be framed by no one: should a browser ever render it as a document, it can run nothing.
DEFAULT_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
ALWAYS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
# Originals are personal data: no cache, shared or the browser's, keeps a copy that outlives a
# deletion. Their ETag (the sha256) still lets a client that keeps its own copy skip the download.
ORIGINAL_CACHING = {"Cache-Control": "no-store"}


class SecurityHeaders:
    """Adds ALWAYS to every answer, and DEFAULT_POLICY to those without a Content-Security-Policy
    of their own."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in ALWAYS.items():
                    headers[name] = value
                if "content-security-policy" not in headers:
                    headers["Content-Security-Policy"] = DEFAULT_POLICY
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an If-None-Match header names this ETag (RFC 9110: weak comparison, or *)."""
    if not if_none_match:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in tags or etag in tags


def tagged_content(
    request: Request,
    *,
    tag: str,
    body: Callable[[], bytes],
    media_type: str,
    headers: dict[str, str],
) -> Response:
    """The content named by tag: 304 without reading it when the client has it already, else
    the bytes body() gives (HEAD included, so that Content-Length is the real one)."""
    etag = f'"{tag}"'
    answer_headers = {**headers, "ETag": etag}
    if _matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=answer_headers)
    return Response(body(), media_type=media_type, headers=answer_headers)
