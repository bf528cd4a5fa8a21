"""Probes for orchestrators and Prometheus: /healthz open to anyone; /readyz and /metrics need a
key unless RADMATCH_OPEN_ENDPOINTS names them. Nothing private shown."""

from __future__ import annotations

from collections.abc import Collection

from fastapi import APIRouter, Depends, Response
from fastapi.params import Depends as Dependency
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.api.deps import ServiceDep, current_key
from app.api.schemas.common import refusals
from app.serving.index import check_consistency


def key_unless_open(endpoint: str, open_endpoints: Collection[str]) -> list[Dependency]:
    """The dependencies of an endpoint that needs a valid key unless the settings open it."""
    return [] if endpoint in open_endpoints else [Depends(current_key)]


def key_refusals(endpoint: str, open_endpoints: Collection[str]) -> dict:
    """The answers an endpoint behind a key documents besides its own."""
    return {} if endpoint in open_endpoints else refusals(401)


def healthz() -> dict:
    return {"status": "alive"}


def readyz(service: ServiceDep) -> JSONResponse:
    checks: dict[str, object] = {}
    try:
        with service.records.sessions() as session:
            session.execute(text("SELECT 1"))
            checks["database"] = "ok"
            serving = service.matcher.serving
            checks["model"] = "ok" if serving is not None else "no model loaded"
            if serving is None or serving.index is None:
                checks["index"] = "no index"
            else:
                checks["model_version"] = serving.version.id
                consistency = check_consistency(serving.index, session)
                checks["index"] = "ok" if consistency.ok else "disagrees with the database"
                checks["index_size"] = consistency.index_size
                checks["index_generation"] = consistency.generation
                checks["index_kind"] = serving.index.kind
    except Exception:  # the database is away: not ready, and say so
        checks["database"] = "unreachable"
    ready = all(checks.get(name) == "ok" for name in ("database", "model", "index"))
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


def metrics(service: ServiceDep) -> Response:
    return Response(service.metrics.exposition(), media_type="text/plain; version=0.0.4")


def probes(open_endpoints: Collection[str]) -> APIRouter:
    """The probes' routes, each behind a key unless open_endpoints names it."""
    router = APIRouter(tags=["health"])
    router.add_api_route("/healthz", healthz, methods=["GET"])
    router.add_api_route(
        "/readyz",
        readyz,
        methods=["GET"],
        responses={
            503: {"description": "Not ready: `checks` says what is missing"},
            **key_refusals("readyz", open_endpoints),
        },
        dependencies=key_unless_open("readyz", open_endpoints),
    )
    router.add_api_route(
        "/metrics",
        metrics,
        methods=["GET"],
        response_class=Response,
        responses=key_refusals("metrics", open_endpoints),
        dependencies=key_unless_open("metrics", open_endpoints),
    )
    return router
