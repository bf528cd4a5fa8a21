"""How a re-run's explanations name moments, people, indexes and models."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.rerun.causes import Difference
from app.search.answer import Candidate
from app.storage.tables import ModelVersion


def when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment is not None else "an unknown date"


def named(difference: Difference) -> str:
    return f"{difference.external_ref} (person {difference.person_id}, {difference.cause})"


def approximate(index: dict[str, Any], c: Candidate) -> str:
    """Why an exact scan finds what the stored search's approximate index did not."""
    settings = ", ".join(f"{k}={v}" for k, v in sorted((index.get("parameters") or {}).items()))
    return (
        f"the stored answer came from an approximate {index.get('kind')} index"
        f"{f' ({settings})' if settings else ''}, which did not return image {c.best_image_id} "
        f"(similarity {c.similarity:.6f}); the exact scan does"
    )


def model_change(then: ModelVersion, now: ModelVersion) -> str | None:
    if then.id == now.id:
        return None
    since = f", active since {when(now.activated_at)}" if now.activated_at else ""
    return (
        f"the search used model version {then.id} (sha256 {then.sha256[:12]}); this server now "
        f"serves model version {now.id} (sha256 {now.sha256[:12]}{since}). Similarities from two "
        "models are on different scales, so candidates may move for that reason alone"
    )


def on(inference: dict[str, str]) -> str:
    """Where, at what precision and by which backend; a search stored before the backend was
    recorded ran PyTorch, the only one there was."""
    return f"{inference['device']} in {inference['precision']} by {backend(inference)}"


def backend(inference: dict[str, str]) -> str:
    return inference.get("backend", "torch")
