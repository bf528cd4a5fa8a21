"""One page of a listing: `limit` and `offset` query parameters, and the page with its total."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=10**9)]


def page(session: Session, query: Select, order_by, limit: int, offset: int) -> dict[str, Any]:
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    items = session.scalars(query.order_by(order_by).limit(limit).offset(offset)).all()
    return {"items": items, "total": total, "limit": limit, "offset": offset}
