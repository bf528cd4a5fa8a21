"""Writing to the audit log: every action that changes the case database, or that an examiner
must be able to account for (a search, a re-run), adds one entry in the same transaction. The
chain fields (sequence and hashes) are filled in when the session flushes (app/audit/chain.py).

An entry says who acted by its `key_id`; the command line has no key, so what it does is
attributed to the operating-system user, host and command instead (`command_line_actor`), in the
entry's details under "by"."""

from __future__ import annotations

import getpass
import os
import socket
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
    by: dict[str, str] | None = None,
) -> None:
    """Add an entry to the caller's transaction: `key_id` (or, from the command line, `by`) did
    `action` to the target."""
    session.add(
        AuditEntry(
            key_id=key_id,
            action=action,
            target_type=target_type,
            target_id=target_id,
            details=details if by is None else {**details, "by": by},
        )
    )


def command_line_actor(command: str) -> dict[str, str]:
    """Who runs `command` (e.g. "radmatch keys create") on this machine, for an entry's "by"."""
    return {"os_user": _os_user(), "host": socket.gethostname(), "command": command}


def _os_user() -> str:
    try:
        return getpass.getuser()
    # A container may run as a uid with no name: no login variables and no passwd entry.
    except (KeyError, OSError):
        return f"uid {os.getuid()}"
