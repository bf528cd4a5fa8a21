"""`radmatch audit verify`'s check of the chain against the signed checkpoints.

Each checkpoint must carry a valid signature under the public key; the entry at its sequence must
still exist and hash (recomputed from its stored fields) to the head hash it signed; and the log
must still reach its sequence. A chain rewritten and rehashed after a checkpoint was signed fails
the second test, a log cut back (entries deleted, the head moved back) the third.

The checkpoint file is read before the database snapshot is taken, so that a checkpoint signed
meanwhile cannot name entries the snapshot does not yet see."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit.chain import GENESIS_HASH, Problem, SnapshotCheck, Verification, entry_hash
from app.audit.checkpoints import Checkpoint, CheckpointFile
from app.audit.signing import fingerprint
from app.storage.tables import AuditEntry

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

_FETCH_CHUNK = 500
Numbered = tuple[int, Checkpoint]  # a checkpoint and its line in the file


def checkpoint_check(file: CheckpointFile, public_key: Ed25519PublicKey | None) -> SnapshotCheck:
    """The check, for app.audit.chain.verify's `also`."""

    def check(session: Session, result: Verification) -> None:
        verify_checkpoints(session, result, file=file, public_key=public_key)

    return check


def verify_checkpoints(
    session: Session,
    result: Verification,
    *,
    file: CheckpointFile,
    public_key: Ed25519PublicKey | None,
) -> None:
    result.checkpoints_file = str(file.path)
    if not file.exists:
        result.notes.append(
            f"no checkpoint file at {file.path}: nothing outside the database vouches for the "
            "chain (`radmatch audit checkpoint` signs one)"
        )
        return
    for number in file.torn:
        result.notes.append(f"checkpoint {number}: a torn line (a write cut short), skipped")
    for number, reason in file.unreadable:
        result.problems.append(
            Problem("unreadable", f"not a checkpoint: {reason}", checkpoint=number)
        )
    if file.checkpoints and public_key is None:
        result.problems.append(
            Problem(
                "no_public_key",
                f"{len(file.checkpoints)} checkpoint(s) but no signing key to check them "
                "against: give the public key with --public-key",
            )
        )
        return
    signed = [item for item in file.checkpoints if _signature_holds(item, public_key, result)]
    result.checkpoints_checked = len(file.checkpoints)
    if signed:
        number, latest = max(signed, key=lambda item: (item[1].signed_at, item[0]))
        result.latest_checkpoint = {"line": number, **latest.as_dict()}
    _compare_with_log(session, result, signed)


def _signature_holds(item: Numbered, public_key: Ed25519PublicKey, result: Verification) -> bool:
    number, checkpoint = item
    expected = fingerprint(public_key)
    if checkpoint.key_fingerprint != expected:
        message = (
            f"signature does not verify: it names key {checkpoint.key_fingerprint}, "
            f"not the public key {expected}"
        )
    elif not checkpoint.verifies(public_key):
        message = f"signature does not verify under the public key {expected}"
    else:
        return True
    result.problems.append(Problem("bad_signature", message, checkpoint=number))
    return False


def _compare_with_log(session: Session, result: Verification, signed: list[Numbered]) -> None:
    """The earliest checkpoint the log no longer matches, and the furthest one it no longer
    reaches; each with how many others say the same."""
    last = session.scalar(select(func.max(AuditEntry.sequence))) or 0
    wanted = {c.sequence for _, c in signed if 0 < c.sequence <= last}
    hashes = _recomputed_hashes(session, sorted(wanted))
    rewritten = [
        (number, c)
        for number, c in signed
        if c.sequence <= last
        and (GENESIS_HASH if c.sequence == 0 else hashes.get(c.sequence)) != c.head_hash
    ]
    truncated = [(number, c) for number, c in signed if c.sequence > last]
    if rewritten:
        number, first = min(rewritten, key=lambda item: (item[1].sequence, item[0]))
        now = hashes.get(first.sequence)
        found = "is gone" if now is None else f"now hashes to {now}"
        message = (
            f"the chain up to sequence {first.sequence} is not the one signed at "
            f"{first.signed_at}: entry {first.sequence} {found}, the checkpoint signed "
            f"{first.head_hash}{_others(len(rewritten) - 1)}"
        )
        result.problems.append(
            Problem("rewritten", message, sequence=first.sequence, checkpoint=number)
        )
    if truncated:
        number, furthest = max(truncated, key=lambda item: (item[1].sequence, item[0]))
        message = (
            f"the log ends at {last}, but a checkpoint signed at {furthest.signed_at} covers "
            f"{furthest.sequence}{_others(len(truncated) - 1)}"
        )
        result.problems.append(Problem("truncated", message, sequence=last + 1, checkpoint=number))


def _recomputed_hashes(session: Session, sequences: Iterable[int]) -> dict[int, str]:
    """Each entry's hash as its stored fields give it now, by sequence."""
    wanted = list(sequences)
    hashes: dict[int, str] = {}
    for start in range(0, len(wanted), _FETCH_CHUNK):
        chunk = wanted[start : start + _FETCH_CHUNK]
        for entry in session.scalars(select(AuditEntry).where(AuditEntry.sequence.in_(chunk))):
            hashes[entry.sequence] = entry_hash(entry)
    return hashes


def _others(count: int) -> str:
    return f" ({count} other checkpoint(s) likewise)" if count else ""
