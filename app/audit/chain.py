"""The audit log as a hash chain, and `radmatch audit verify`.

Every audit entry gets a position (`sequence`: 1, 2, 3, ... without gaps), the previous entry's
hash and its own: the sha256 of a canonical JSON of its fields and the previous hash. One place
fills these in, a `before_flush` listener on every session (registered where the session
factory is made, app/storage/database.py), so no call site can forget. It takes the chain head
with an UPDATE ... RETURNING on the one-row `audit_chain` table: the row lock (PostgreSQL) or write lock
(SQLite) orders concurrent writers until they commit, and a rolled-back transaction takes its
positions back with it, so committed positions never have gaps.

The database refuses UPDATE and DELETE on `audit_log` (triggers, migration 0004). Verification
recomputes every hash in sequence order, compares the last one with the head, then checks that
every stored original (of an image not purged, and of every search's query) is in the store and
still hashes to its name. Whoever can drop the triggers can also recompute the chain, so
`radmatch audit verify` adds a check against the signed checkpoints kept outside the database
(app/audit/checkpoints.py, app/audit/checkpoint_check.py).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import inspect, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.storage.tables import AuditChainHead, AuditEntry, Image, Search, utcnow

if TYPE_CHECKING:
    from app.storage.originals import OriginalStore

GENESIS_HASH = "0" * 64
HEAD_ID = 1
_READ_CHUNK = 1 << 20


class AuditChainError(RuntimeError):
    """The chain's head row is missing: the database was not migrated, or it was tampered with."""


def stored_instant(value: datetime) -> datetime:
    """The timestamp as both databases store and return it: UTC, microseconds. (SQLite keeps the
    wall-clock digits and drops the zone, so the value written must already be in UTC.)"""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _plain_json(value: Any) -> Any:
    """What the JSON column gives back for this value (tuples become lists, keys strings)."""
    return json.loads(json.dumps(value))


def canonical_entry(
    *,
    sequence: int,
    previous_hash: str,
    at: datetime,
    key_id: int | None,
    action: str,
    target_type: str,
    target_id: int | None,
    details: Any,
) -> bytes:
    """The bytes an entry's hash covers: sorted keys, no spaces, UTF-8."""
    fields = {
        "sequence": sequence,
        "previous_hash": previous_hash,
        "at": stored_instant(at).isoformat(timespec="microseconds"),
        "key_id": key_id,
        "action": action,
        "target_type": target_type,
        "target_id": target_id,
        "details": _plain_json(details),
    }
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(entry: AuditEntry, sequence: int | None = None, previous: str | None = None) -> str:
    """The sha256 (hex) of the entry's canonical form, at this position (default: its own)."""
    return hashlib.sha256(
        canonical_entry(
            sequence=entry.sequence if sequence is None else sequence,
            previous_hash=entry.previous_hash if previous is None else previous,
            at=entry.at,
            key_id=entry.key_id,
            action=entry.action,
            target_type=entry.target_type,
            target_id=entry.target_id,
            details=entry.details,
        )
    ).hexdigest()


# --- writing: one listener chains every new entry -------------------------------------------


def chain_new_entries(session: Session, _flush_context, _instances) -> None:
    """Give the flush's new audit entries the next positions and their hashes, in the order they
    were added. Runs inside the flush's transaction, so the head moves only if it commits."""
    new = [obj for obj in session.new if isinstance(obj, AuditEntry)]
    if not new:
        return
    new.sort(key=lambda obj: inspect(obj).insert_order)
    head = AuditChainHead.__table__
    connection = session.connection()
    taken = connection.execute(
        update(head)
        .where(head.c.id == HEAD_ID)
        .values(sequence=head.c.sequence + len(new))
        .returning(head.c.sequence, head.c.head_hash)
    ).one_or_none()
    if taken is None:
        raise AuditChainError(
            "the audit chain's head row is missing: run `radmatch db upgrade`, then "
            "`radmatch audit verify`"
        )
    last, previous = taken
    for position, entry in enumerate(new, start=last - len(new) + 1):
        entry.at = stored_instant(entry.at or utcnow())
        entry.sequence = position
        entry.previous_hash = previous
        entry.entry_hash = previous = entry_hash(entry)
    connection.execute(update(head).where(head.c.id == HEAD_ID).values(head_hash=previous))


# --- verifying --------------------------------------------------------------------------------


@dataclass
class Problem:
    """One thing wrong. kind: edited, missing, reordered, head (the audit chain);
    original_missing, original_changed, original_unreadable (the store); or bad_signature,
    rewritten, truncated, unreadable, no_public_key (the checkpoints)."""

    kind: str
    message: str
    sequence: int | None = None  # the audit entry's position
    entry_id: int | None = None
    sha256: str | None = None  # the original's name
    referenced_by: list[str] = field(default_factory=list)  # "image 3", "search 7"
    checkpoint: int | None = None  # the checkpoint's line in the checkpoint file

    def line(self) -> str:
        if self.checkpoint is not None:
            where = f"checkpoint {self.checkpoint}"
        elif self.sha256 is not None:
            where = f"original {self.sha256} ({', '.join(self.referenced_by)})"
        else:
            where = "audit chain" if self.sequence is None else f"audit entry {self.sequence}"
            if self.entry_id is not None:
                where += f" (id {self.entry_id})"
        return f"{where}: {self.kind}: {self.message}"


@dataclass
class Verification:
    entries_checked: int = 0
    originals_checked: int = 0
    head_sequence: int | None = None
    head_hash: str | None = None
    problems: list[Problem] = field(default_factory=list)
    # Checked against the signed checkpoints: which file, how many, the newest (its fields).
    checkpoints_file: str | None = None
    checkpoints_checked: int = 0
    latest_checkpoint: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)  # worth knowing, not a failure

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_break(self) -> Problem | None:
        """The first problem of the audit chain, in sequence order."""
        chain_kinds = ("edited", "missing", "reordered", "head")
        return next((p for p in self.problems if p.kind in chain_kinds), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries_checked": self.entries_checked,
            "originals_checked": self.originals_checked,
            "head": {"sequence": self.head_sequence, "hash": self.head_hash},
            "checkpoints": {
                "file": self.checkpoints_file,
                "checked": self.checkpoints_checked,
                "latest": self.latest_checkpoint,
            },
            "notes": self.notes,
            "problems": [asdict(p) for p in self.problems],
        }

    def summary(self) -> str:
        lines = [
            f"audit log: {self.entries_checked} entries checked; head at sequence "
            f"{self.head_sequence}, hash {self.head_hash}",
            f"originals: {self.originals_checked} checked",
        ]
        if self.checkpoints_file is not None:
            lines.append(self._checkpoints_line())
        lines += [f"note: {note}" for note in self.notes]
        lines += [f"problem: {p.line()}" for p in self.problems]
        lines.append(
            "verified: no problems" if self.ok else f"FAILED: {len(self.problems)} problem(s)"
        )
        return "\n".join(lines)

    def _checkpoints_line(self) -> str:
        line = f"checkpoints: {self.checkpoints_checked} checked in {self.checkpoints_file}"
        latest = self.latest_checkpoint
        if latest is not None:
            line += (
                f"; latest: sequence {latest['sequence']}, hash {latest['head_hash']}, signed at "
                f"{latest['signed_at']} by key {latest['key_fingerprint']}"
            )
        return line


def verify_chain(session: Session, result: Verification, batch: int = 1000) -> None:
    """Walk the entries in sequence order, recomputing each hash; after a break, carry on from
    the stored values so that each break is reported once."""
    head = session.get(AuditChainHead, HEAD_ID)
    expected_sequence, expected_previous = 1, GENESIS_HASH
    entries = session.scalars(
        select(AuditEntry).order_by(AuditEntry.sequence).execution_options(yield_per=batch)
    )
    for entry in entries:
        result.entries_checked += 1
        issue = _check_entry(entry, expected_sequence, expected_previous)
        if issue is not None:
            kind, message = issue
            result.problems.append(Problem(kind, message, entry.sequence, entry.id))
        expected_sequence, expected_previous = entry.sequence + 1, entry.entry_hash
    last_sequence = expected_sequence - 1
    if head is None:
        result.problems.append(Problem("head", "the audit chain's head row is missing"))
        return
    result.head_sequence, result.head_hash = head.sequence, head.head_hash
    if head.sequence > last_sequence:
        missing = _positions(last_sequence + 1, head.sequence)
        result.problems.append(
            Problem(
                "missing",
                f"the head is at sequence {head.sequence} but the log ends at {last_sequence}: "
                f"{missing} removed",
                sequence=last_sequence + 1,
            )
        )
    elif head.sequence < last_sequence:
        result.problems.append(
            Problem(
                "head",
                f"the log goes on to sequence {last_sequence} past the head at {head.sequence}: "
                "entries were appended outside the service",
                sequence=head.sequence + 1,
            )
        )
    elif head.head_hash != expected_previous:
        result.problems.append(
            Problem(
                "head",
                f"head hash mismatch: the head records {head.head_hash}, the last entry's hash "
                f"is {expected_previous}",
                sequence=last_sequence or None,
            )
        )


def _check_entry(entry: AuditEntry, sequence: int, previous: str) -> tuple[str, str] | None:
    recomputed = entry_hash(entry)
    edited = recomputed != entry.entry_hash
    edit_note = (
        f"its contents hash to {recomputed}, not the stored {entry.entry_hash}" if edited else ""
    )
    if entry.sequence > sequence:
        message = f"{_positions(sequence, entry.sequence - 1)} removed before this entry"
        return "missing", message + (f"; also edited: {edit_note}" if edited else "")
    if entry.sequence < sequence or entry.previous_hash != previous:
        message = (
            f"its previous_hash {entry.previous_hash} is not the hash {previous} of the entry "
            "before it: an entry was inserted here or entries were reordered"
        )
        return "reordered", message + (f"; also edited: {edit_note}" if edited else "")
    if edited:
        return "edited", f"the entry was changed after it was written: {edit_note}"
    return None


def _positions(first: int, last: int) -> str:
    return f"entry {first}" if first == last else f"entries {first} to {last}"


def verify_originals(session: Session, store: OriginalStore, result: Verification) -> None:
    """Every original the database still relies on is in the store, with the bytes it names."""
    wanted: dict[str, list[str]] = {}
    images = select(Image.id, Image.sha256).where(Image.original_purged_at.is_(None))
    for image_id, sha256 in session.execute(images.order_by(Image.id)):
        wanted.setdefault(sha256, []).append(f"image {image_id}")
    searches = select(Search.id, Search.query_sha256).order_by(Search.id)
    for search_id, sha256 in session.execute(searches):
        wanted.setdefault(sha256, []).append(f"search {search_id}")
    for sha256, users in sorted(wanted.items()):
        result.originals_checked += 1
        issue = _check_original(store, sha256)
        if issue is not None:
            kind, message = issue
            result.problems.append(Problem(kind, message, sha256=sha256, referenced_by=users))


def _check_original(store: OriginalStore, sha256: str) -> tuple[str, str] | None:
    try:
        path = store.path(sha256)
    except ValueError as error:
        return "original_unreadable", str(error)
    if not path.is_file():
        return "original_missing", f"not in the store at {path}"
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as file:
            while chunk := file.read(_READ_CHUNK):
                digest.update(chunk)
    except OSError as error:
        return "original_unreadable", f"{path}: {error}"
    if digest.hexdigest() != sha256:
        return "original_changed", f"{path} now hashes to {digest.hexdigest()}"
    return None


# A further check of the same snapshot, e.g. against the signed checkpoints.
SnapshotCheck = Callable[[Session, Verification], None]


def verify(
    sessions: sessionmaker[Session], store: OriginalStore, also: Sequence[SnapshotCheck] = ()
) -> Verification:
    """Check the whole audit chain, then the stored originals, then `also`. Read-only, and all
    of it in one snapshot, so that entries committed meanwhile cannot look like a broken head."""
    result = Verification()
    with sessions() as session:
        _read_one_snapshot(session)
        verify_chain(session, result)
        verify_originals(session, store, result)
        for check in also:
            check(session, result)
    return result


def _read_one_snapshot(session: Session) -> None:
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
    elif connection.dialect.name == "sqlite":
        # pysqlite begins transactions only for writes; without one each SELECT sees its own.
        connection.exec_driver_sql("BEGIN")
