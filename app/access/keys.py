"""API keys: shown once when created, stored only as a sha256, looked up by their public prefix and
compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit.entries import record_entry
from app.storage.tables import ApiKey, utcnow

ROLES = ("examiner", "admin")
_SCHEME = "rmk"


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(
    session: Session, name: str, role: str, *, by: dict[str, str] | None = None
) -> tuple[ApiKey, str]:
    """A new key row and the key itself, which is not stored anywhere; `by` is who created it
    from the command line (app.audit.entries.command_line_actor)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; choose {' or '.join(ROLES)}")
    if not name.strip():
        raise ValueError("a key needs a name saying whose it is")
    prefix = secrets.token_hex(6)
    key = f"{_SCHEME}_{prefix}_{secrets.token_urlsafe(32)}"
    row = ApiKey(name=name.strip(), role=role, prefix=prefix, key_hash=_hash(key))
    session.add(row)
    session.flush()
    record_entry(
        session,
        action="key.create",
        target_type="api_key",
        target_id=row.id,
        details={"name": row.name, "role": role},
        by=by,
    )
    return row, key


def authenticate(session: Session, key: str) -> ApiKey | None:
    """The live key row this key belongs to, or None."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != _SCHEME:
        return None
    row = session.scalar(select(ApiKey).where(ApiKey.prefix == parts[1]))
    if row is None or row.revoked_at is not None:
        return None
    return row if hmac.compare_digest(row.key_hash, _hash(key)) else None


def key_names(session: Session) -> dict[int, str]:
    """Every key's owner by key id, for naming who did what."""
    return dict(session.execute(select(ApiKey.id, ApiKey.name)).all())


def revoke_key(session: Session, key_id: int, *, by: dict[str, str] | None = None) -> ApiKey:
    row = session.get(ApiKey, key_id)
    if row is None:
        raise LookupError(f"no key with id {key_id}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        record_entry(
            session,
            action="key.revoke",
            target_type="api_key",
            target_id=row.id,
            details={},
            by=by,
        )
    return row
