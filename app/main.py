"""The FastAPI application: routes under /api/v1, probes at the root, JSON errors everywhere."""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import OperationalError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.access.throttle import FailedKeyLimiter
from app.api import (
    admin,
    audit,
    calibrations,
    cases,
    dicom_sources,
    dicomweb,
    dicomweb_servers,
    docs,
    health,
    images,
    inbox,
    keys,
    people,
    searches,
)
from app.api.headers import SecurityHeaders
from app.audit.checkpointing import Checkpointer
from app.core.errors import ClientError, TooLarge
from app.core.metrics import Metrics
from app.dicom import stow
from app.serving.service import Service

log = logging.getLogger("radmatch")

# Multipart framing and form fields on top of the file itself.
MULTIPART_OVERHEAD = 64 * 1024
# Any other request body (JSON, a urlencoded form) is small: the largest holds a few text fields.
OTHER_BODY_LIMIT = 1024 * 1024
# The examiner's page: static files, no build step, nothing fetched from elsewhere (labs are often
# air-gapped), and a policy that lets the page load nothing but its own files and images.
WEB = Path(__file__).parent / "web"
PAGE_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'"
)


class _BodyTooLarge(HTTPException):
    """Raised from the app's next read of a body that went past the limit; the app answers it as
    any HTTPException, and the connection is closed so that the client stops sending."""

    def __init__(self, message: str):
        super().__init__(413, message, headers={"Connection": "close"})


class LimitRequestBody:
    """Refuses a request body over the limit before it is read whole: at once when its declared
    Content-Length is too large, else by counting the body as it streams in, so that a chunked
    upload (no Content-Length) is cut off at the limit too. Uploads (multipart/form-data) may be
    RADMATCH_MAX_UPLOAD_BYTES plus the form around the file, STOW-RS bodies (multipart/related)
    several instances of that size (app.dicom.stow.body_limit); any other body OTHER_BODY_LIMIT."""

    def __init__(self, app: ASGIApp, max_upload_bytes: int):
        self.app = app
        self.max_upload_bytes = max_upload_bytes

    def _limit(self, headers: Headers) -> tuple[int, str]:
        """The body limit for this request, and how a refusal explains it."""
        content_type = headers.get("content-type", "").lower()
        if content_type.startswith("multipart/related"):  # STOW-RS: several DICOM instances
            return stow.body_limit(self.max_upload_bytes), (
                f"a STOW-RS request holds at most {stow.INSTANCES_PER_REQUEST} instances of "
                f"RADMATCH_MAX_UPLOAD_BYTES ({self.max_upload_bytes} bytes) each"
            )
        if content_type.startswith("multipart/form-data"):
            return self.max_upload_bytes + MULTIPART_OVERHEAD, (
                f"uploads are limited to {self.max_upload_bytes} bytes (RADMATCH_MAX_UPLOAD_BYTES)"
            )
        return OTHER_BODY_LIMIT, (
            f"request bodies other than multipart/form-data uploads are limited to "
            f"{OTHER_BODY_LIMIT} bytes"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        limit, rule = self._limit(headers)
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            error = TooLarge(f"the request body is {declared} bytes; {rule}")
            response = JSONResponse(
                {"detail": error.message}, status_code=error.status, headers={"Connection": "close"}
            )
            await response(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge(f"the request body is over {limit} bytes; {rule}")
            return message

        await self.app(scope, counted, send)


class AsciiJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":"), allow_nan=False).encode("ascii")


def create_app(service: Service) -> FastAPI:
    """The app serving an open Service; closing the app closes the service. While it runs, the
    audit chain's head is signed at intervals (app.audit.checkpointing). Raises
    app.audit.signing.SigningKeyError when the configured signing key cannot be read."""
    checkpointer = Checkpointer.open(service.settings, service.records.sessions)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        checkpointer.start()
        yield
        checkpointer.stop()
        service.close()

    app = FastAPI(
        title="radmatch",
        summary="Forensic radiograph matching: rank known people for an unknown person's radiograph",
        version="1",
        lifespan=lifespan,
        # Served by app.api.docs, from the service's own files and behind a key.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.service = service
    app.state.checkpointer = checkpointer
    app.state.key_limiter = FailedKeyLimiter(
        service.settings.key_failures_allowed, service.settings.key_failure_window_seconds
    )
    for router in (
        people.router,
        images.router,
        searches.router,
        cases.router,
        inbox.router,
        keys.router,
        audit.router,
        admin.router,
        calibrations.router,
        dicom_sources.router,
        dicomweb.router,
        dicomweb_servers.router,
        health.probes(service.settings.open_endpoints),
    ):
        app.include_router(router)

    app.mount("/static", StaticFiles(directory=WEB / "static"), name="static")
    docs.serve_docs(app, service.settings.open_endpoints)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(WEB / "index.html", headers={"Content-Security-Policy": PAGE_POLICY})

    # Added before the measuring middleware so that it runs inside it: refusals are counted too.
    app.add_middleware(LimitRequestBody, max_upload_bytes=service.settings.max_upload_bytes)
    _measure_requests(app, service.metrics)
    app.add_middleware(SecurityHeaders)
    for error_type, handler in ERROR_HANDLERS.items():
        app.add_exception_handler(error_type, handler)
    return app


def _measure_requests(app: FastAPI, metrics: Metrics) -> None:
    @app.middleware("http")
    async def measure(request: Request, call_next):
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        template = route.path if route is not None else "unmatched"
        metrics.requests.labels(request.method, template, response.status_code).inc()
        metrics.latency.labels(request.method, template).observe(time.perf_counter() - start)
        return response


async def _invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
    # FastAPI's own answer, but in ASCII: the errors echo the input, which may hold
    # characters that UTF-8 cannot encode (a lone surrogate escape in JSON).
    return AsciiJSONResponse({"detail": _finite(jsonable_encoder(error.errors()))}, status_code=422)


def _finite(value: Any) -> Any:
    """The echoed input with NaN and the infinities as strings: Python's JSON parser accepts them
    in a request, but bare NaN or Infinity in the answer is not JSON, and strict clients fail
    on the whole refusal."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


async def _client_error(_: Request, error: ClientError) -> JSONResponse:
    headers = getattr(error, "headers", None)  # Retry-After of a 429 (errors.Busy)
    return JSONResponse({"detail": error.message}, status_code=error.status, headers=headers)


async def _database_away(_: Request, error: OperationalError) -> JSONResponse:
    log.error("database error: %s", error)
    return JSONResponse(
        {"detail": "the case database is unavailable; try again shortly"}, status_code=503
    )


async def _bug(_: Request, error: Exception) -> JSONResponse:
    reference = uuid.uuid4().hex[:12]
    log.exception("internal error %s", reference, exc_info=error)
    return JSONResponse({"detail": f"internal error (reference {reference})"}, status_code=500)


ERROR_HANDLERS = {
    RequestValidationError: _invalid_request,
    ClientError: _client_error,
    OperationalError: _database_away,
    Exception: _bug,
}
