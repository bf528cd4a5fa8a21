"""Checkpoints: the audit chain's head, signed, kept outside the database.

The hash chain (app/audit/chain.py) shows an entry edited or removed behind the service's back,
but not a log rewritten whole: with direct write access one can drop the append-only triggers,
change an entry and recompute every hash after it and the head. A checkpoint anchors the chain
where that cannot reach: a statement `{sequence, head_hash, signed_at, key_fingerprint}` signed
with the service's Ed25519 key (app/audit/signing.py), one JSON line appended to a file
(RADMATCH_AUDIT_CHECKPOINTS, default <data_dir>/audit/checkpoints.jsonl) that an administrator
can put on WORM storage, and printed in every case report. `radmatch audit verify` checks the
chain against each (app/audit/checkpoint_check.py).

Several processes append to the file (the server, a worker, the command line): each checkpoint
is one write of one line to a descriptor opened with O_APPEND, then fsynced. A process killed
mid-write leaves a torn last line; the next append starts on a new line, and verification notes
the torn line without failing.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session, sessionmaker

from app.audit.chain import HEAD_ID, AuditChainError
from app.audit.signing import AuditSigner, signature_valid
from app.core.config import Settings
from app.storage.tables import AuditChainHead

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

DEFAULT_FILE_NAME = "checkpoints.jsonl"
SIGNED_FIELDS = ("sequence", "head_hash", "signed_at", "key_fingerprint")
# How far back from the end of the file a writer looks for the newest checkpoint.
TAIL_BYTES = 64 * 1024


@dataclass(frozen=True)
class Checkpoint:
    sequence: int
    head_hash: str
    signed_at: str  # ISO 8601, UTC, microseconds
    key_fingerprint: str  # sha256 (hex) of the raw public key that signed it
    signature: str  # base64 of the Ed25519 signature over signed_bytes()

    def signed_bytes(self) -> bytes:
        """What the signature covers: the other fields as canonical JSON (sorted keys, no
        spaces, UTF-8)."""
        fields = {name: getattr(self, name) for name in SIGNED_FIELDS}
        return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()

    def verifies(self, public_key: Ed25519PublicKey) -> bool:
        try:
            signature = base64.b64decode(self.signature, validate=True)
        except ValueError:
            return False
        return signature_valid(public_key, signature, self.signed_bytes())

    def line(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode() + b"\n"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, text: str) -> Checkpoint:
        """Raises ValueError for anything that is not a checkpoint line."""
        value = json.loads(text)
        if not isinstance(value, dict) or set(value) != {*SIGNED_FIELDS, "signature"}:
            raise ValueError(f"a checkpoint has the fields {', '.join(SIGNED_FIELDS)}, signature")
        if not isinstance(value["sequence"], int) or isinstance(value["sequence"], bool):
            raise ValueError("its sequence is not a whole number")
        if not all(isinstance(value[name], str) for name in value if name != "sequence"):
            raise ValueError("its hash, time, key and signature are not all text")
        return cls(**value)


def checkpoints_path(settings: Settings) -> Path:
    return settings.audit_checkpoints or settings.data_dir / "audit" / DEFAULT_FILE_NAME


def sign_head(signer: AuditSigner, *, sequence: int, head_hash: str) -> Checkpoint:
    signed_at = datetime.now(UTC).isoformat(timespec="microseconds")
    unsigned = Checkpoint(sequence, head_hash, signed_at, signer.fingerprint, signature="")
    signature = base64.b64encode(signer.sign(unsigned.signed_bytes())).decode("ascii")
    return Checkpoint(sequence, head_hash, signed_at, signer.fingerprint, signature)


def read_head(sessions: sessionmaker[Session]) -> tuple[int, str]:
    """The committed head (sequence, hash), in a transaction of its own: it names an entry whose
    entry_hash it is (the head moves in the same transaction as the entries it covers)."""
    with sessions() as session:
        head = session.get(AuditChainHead, HEAD_ID)
        if head is None:
            raise AuditChainError("the audit chain's head row is missing: nothing to sign")
        return head.sequence, head.head_hash


def append_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """One line, one write, O_APPEND, fsynced. When the file ends in a torn line (a writer
    killed mid-write) the line starts with a newline so that it stands on its own."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(descriptor).st_size
        torn = size > 0 and _byte_at(path, size - 1) != b"\n"
        data = (b"\n" if torn else b"") + checkpoint.line()
        written = os.write(descriptor, data)
        if written != len(data):  # a full disk: the line is torn, the next append mends it
            raise OSError(f"only {written} of {len(data)} bytes of a checkpoint were written")
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _byte_at(path: Path, offset: int) -> bytes:
    with open(path, "rb") as file:
        file.seek(offset)
        return file.read(1)


def latest_in_file(path: Path) -> Checkpoint | None:
    """The last whole checkpoint line near the end of the file (None: none there, or no file)."""
    try:
        with open(path, "rb") as file:
            file.seek(0, os.SEEK_END)
            file.seek(max(0, file.tell() - TAIL_BYTES))
            tail = file.read()
    except FileNotFoundError:
        return None
    for raw in reversed(tail.split(b"\n")):
        try:
            return Checkpoint.from_json(raw.decode())
        except ValueError:  # a torn or partial line (UnicodeDecodeError is a ValueError)
            continue
    return None


@dataclass
class CheckpointFile:
    """A checkpoint file as read: its checkpoints by line number (from 1), its torn lines
    (writes cut short: a note) and lines that are no checkpoint at all (a problem)."""

    path: Path
    exists: bool = True
    checkpoints: list[tuple[int, Checkpoint]] = field(default_factory=list)
    torn: list[int] = field(default_factory=list)
    unreadable: list[tuple[int, str]] = field(default_factory=list)


def read_checkpoint_file(path: Path) -> CheckpointFile:
    """Raises OSError when the file exists but cannot be read."""
    result = CheckpointFile(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        result.exists = False
        return result
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            text = raw.decode()
            result.checkpoints.append((number, Checkpoint.from_json(text)))
        except UnicodeDecodeError as error:
            result.unreadable.append((number, f"not UTF-8: {error}"))
        except json.JSONDecodeError as error:
            if _cut_short(text):
                result.torn.append(number)
            else:
                result.unreadable.append((number, f"not JSON: {error}"))
        except ValueError as error:
            result.unreadable.append((number, str(error)))
    return result


def _cut_short(text: str) -> bool:
    """The start of a checkpoint line whose write was cut off: a checkpoint is a flat JSON
    object, so only a whole line ends in its closing brace."""
    return text.startswith("{") and not text.rstrip().endswith("}")
