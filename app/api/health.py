"""Probes for orchestrators and Prometheus; no key needed, nothing private shown."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.api.deps import ServiceDep
from app.serving.index import check_consistency

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict:
    return {"status": "alive"}


@router.get(
    "/readyz",
    responses={503: {"description": "Not ready: `checks` says what is missing"}},
)
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


@router.get("/metrics", response_class=Response)
def metrics(service: ServiceDep) -> Response:
    return Response(service.metrics.exposition(), media_type="text/plain; version=0.0.4")
