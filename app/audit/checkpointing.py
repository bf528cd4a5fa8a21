"""When checkpoints are signed: a running server signs the chain's head at start, every
RADMATCH_AUDIT_CHECKPOINT_INTERVAL_S while it runs and at a graceful shutdown, each time only if
the head moved since the newest checkpoint in the file (so several processes sharing the file
rarely sign the same head twice, and a duplicate is harmless); a case report and `radmatch audit
checkpoint` sign on demand."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from app.audit.checkpoints import (
    Checkpoint,
    append_checkpoint,
    checkpoints_path,
    latest_in_file,
    read_head,
    sign_head,
)
from app.audit.signing import AuditSigner, load_signer
from app.core.config import Settings

log = logging.getLogger("radmatch")


@dataclass
class Checkpointer:
    sessions: sessionmaker[Session]
    signer: AuditSigner
    path: Path
    interval_s: float
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @classmethod
    def open(cls, settings: Settings, sessions: sessionmaker[Session]) -> Checkpointer:
        """Raises app.audit.signing.SigningKeyError when the configured key cannot be read."""
        return cls(
            sessions=sessions,
            signer=load_signer(settings),
            path=checkpoints_path(settings),
            interval_s=settings.audit_checkpoint_interval_s,
        )

    def sign(self, *, sequence: int, head_hash: str) -> Checkpoint:
        """Sign this head (read from a committed head row) and append it to the file."""
        checkpoint = sign_head(self.signer, sequence=sequence, head_hash=head_hash)
        append_checkpoint(self.path, checkpoint)
        return checkpoint

    def sign_current(self) -> Checkpoint:
        sequence, head_hash = read_head(self.sessions)
        return self.sign(sequence=sequence, head_hash=head_hash)

    def sign_if_moved(self) -> Checkpoint | None:
        """A checkpoint of the head, unless the file's newest one (by this key) already has it
        or the chain is still empty."""
        sequence, head_hash = read_head(self.sessions)
        latest = latest_in_file(self.path)
        if sequence == 0 or (
            latest is not None
            and (latest.sequence, latest.head_hash, latest.key_fingerprint)
            == (sequence, head_hash, self.signer.fingerprint)
        ):
            return None
        return self.sign(sequence=sequence, head_hash=head_hash)

    def start(self) -> None:
        """Sign once now, then every interval on a thread of its own."""
        self._sign_logged("at start")
        self._thread = threading.Thread(
            target=self._sign_forever, name="audit-checkpoints", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread, then sign once more if the head moved."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._sign_logged("at shutdown")

    def _sign_forever(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sign_logged("")

    def _sign_logged(self, when: str) -> None:
        # The database or the checkpoint file's disk may be away for a while: say so, go on.
        try:
            checkpoint = self.sign_if_moved()
        except Exception:
            log.exception(
                "signing an audit checkpoint %sfailed; trying again later", when and when + " "
            )
            return
        if checkpoint is not None:
            log.info(
                "audit checkpoint signed%s: sequence %d, head %s",
                f" {when}" if when else "",
                checkpoint.sequence,
                checkpoint.head_hash,
            )
