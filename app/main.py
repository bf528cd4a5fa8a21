"""The FastAPI application: routes under /api/v1, probes at the root, JSON errors everywhere."""

from __future__ import annotations

import logging
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import OperationalError

from app.api import admin, cases, health, images, keys, people, searches
from app.errors import ClientError, TooLarge
from app.service import Service

log = logging.getLogger("radmatch")

# Multipart framing and form fields on top of the file itself.
MULTIPART_OVERHEAD = 64 * 1024
# The examiner's page: static files, no build step, nothing fetched from elsewhere (labs are often
# air-gapped), and a policy that lets the page load nothing but its own files and images.
WEB = Path(__file__).parent / "web"
PAGE_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'"
)


def create_app(service: Service) -> FastAPI:
    """The app serving an open Service; closing the app closes the service."""

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        service.close()

    app = FastAPI(
        title="radmatch",
        summary="Forensic radiograph matching: rank known people for an unknown person's radiograph",
        version="1",
        lifespan=lifespan,
    )
    app.state.service = service
    for router in (
        people.router,
        images.router,
        searches.router,
        cases.router,
        keys.router,
        admin.router,
        health.router,
    ):
        app.include_router(router)

    app.mount("/static", StaticFiles(directory=WEB / "static"), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(WEB / "index.html", headers={"Content-Security-Policy": PAGE_POLICY})

    @app.middleware("http")
    async def measure_and_limit(request: Request, call_next):
        length = request.headers.get("content-length", "")
        limit = service.settings.max_upload_bytes + MULTIPART_OVERHEAD
        if length.isdigit() and int(length) > limit:
            error = TooLarge(
                f"the request is {length} bytes; uploads are limited to "
                f"{service.settings.max_upload_bytes} bytes (RADMATCH_MAX_UPLOAD_BYTES)"
            )
            return JSONResponse({"detail": error.message}, status_code=error.status)
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        template = route.path if route is not None else "unmatched"
        service.metrics.requests.labels(request.method, template, response.status_code).inc()
        service.metrics.latency.labels(request.method, template).observe(
            time.perf_counter() - start
        )
        return response

    @app.exception_handler(ClientError)
    async def client_error(_: Request, error: ClientError) -> JSONResponse:
        return JSONResponse({"detail": error.message}, status_code=error.status)

    @app.exception_handler(OperationalError)
    async def database_away(_: Request, error: OperationalError) -> JSONResponse:
        log.error("database error: %s", error)
        return JSONResponse(
            {"detail": "the case database is unavailable; try again shortly"}, status_code=503
        )

    @app.exception_handler(Exception)
    async def bug(_: Request, error: Exception) -> JSONResponse:
        reference = uuid.uuid4().hex[:12]
        log.exception("internal error %s", reference, exc_info=error)
        return JSONResponse(
            {"detail": f"internal error (reference {reference})"},
            status_code=500,
        )

    return app
