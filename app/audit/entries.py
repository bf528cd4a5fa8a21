"""Writing to the audit log: every action that changes the case database, or that an examiner
must be able to account for (a search, a re-run), adds one entry in the same transaction. The
chain fields (sequence and hashes) are filled in when the session flushes (app/audit/chain.py)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from app.storage.tables import AuditEntry


def record_entry(
    session: Session,
    *,
    action: str,
    target_type: str,
    target_id: int | None,
    details: dict[str, Any],
    key_id: int | None = None,
) -> None:
    """Add an entry to the caller's transaction: `key_id` did `action` to the target."""
    session.add(
        AuditEntry(
            key_id=key_id,
            action=action,
            target_type=target_type,
            target_id=target_id,
            details=details,
        )
    )
