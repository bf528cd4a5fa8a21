"""The originals, exactly as uploaded, in a content-addressed file store: a file's name is the
sha256 of its bytes, so it is never modified and any copy can be checked against its name.

An original is written before the database row that needs it, so that no committed row points at
nothing; a process that dies between the two leaves a file that no row needs. Every writer
therefore holds a marker for the digest, `.pending/<sha256>`, with a shared lock (flock) from
before it writes until its transaction has committed or rolled back. The kernel drops the lock
when the process dies; the marker stays. Whoever then holds the marker exclusively (the last
writer on its way out, or `settle_abandoned` later, for markers of dead writers) knows that no
writer of those bytes is in flight, and removes the original unless a committed row needs it,
with any temporary file a killed write left. The locks need a local filesystem or one with
working flock (NFSv4 has it)."""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from app.core.errors import InsufficientStorage
from model.files import write_atomically

log = logging.getLogger("radmatch")

_SHA256 = re.compile(r"[0-9a-f]{64}")
PENDING = ".pending"
NOT_STORED = (
    "the original could not be stored: the server's file store is full or not writable; "
    "nothing was saved, try again once an administrator has freed space"
)


# Writes whose fsyncs overlap the caller's own work (`OriginalStore.storing`); shared by every store
# of the process, its threads mostly waiting on the disk.
_WRITERS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="originals")


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Writing:
    """One writer's hold on a digest. Set `needed` once a committed row refers to the original."""

    needed: bool = False
    _stored: Future[bool] | None = None

    def stored(self) -> bool:
        """Under `storing`: wait for the write it began; put's answer, or what put raised."""
        if self._stored is None:
            raise RuntimeError("nothing is being stored under this hold: use storing()")
        return self._stored.result()


class OriginalStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, sha256: str) -> Path:
        # Names come only from hex digests, so no request can reach outside the store.
        if not _SHA256.fullmatch(sha256):
            raise ValueError(f"not a sha256 digest: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, sha256: str, data: bytes) -> bool:
        """Store the bytes under their digest; False when they were already there. Call it inside
        `writing(sha256, ...)`. A store that cannot take them raises InsufficientStorage."""
        path = self.path(sha256)
        if path.exists():
            return False
        try:
            write_atomically(path, data)
        except OSError as error:
            log.error("cannot store original %s: %s", sha256, error)
            raise InsufficientStorage(NOT_STORED) from None
        return True

    @contextmanager
    def storing(self, sha256: str, data: bytes, needed: Callable[[str], bool]) -> Iterator[Writing]:
        """`writing`, with the bytes put on a writer thread meanwhile, so that their fsyncs cost no
        time beside the caller's own work (a forward pass). Call `stored()` on what this yields
        before committing a row that needs the original; leaving waits for the write in any case,
        so that the hold's end sees it."""
        with self.writing(sha256, needed) as writing:
            writing._stored = _WRITERS.submit(self.put, sha256, data)
            try:
                yield writing
            finally:
                wait([writing._stored])

    def read(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).exists()

    def remove(self, sha256: str) -> None:
        path = self.path(sha256)
        if path.exists():
            os.unlink(path)

    # --- writers in flight --------------------------------------------------------------------

    @contextmanager
    def writing(self, sha256: str, needed: Callable[[str], bool]) -> Iterator[Writing]:
        """Hold while storing the original and committing the row that needs it. On the way out,
        the last writer of these bytes removes the original unless it was marked needed or
        `needed(sha256)` says that a committed row refers to it."""
        marker = self._marker(sha256)
        try:
            descriptor = _lock_marker(marker, fcntl.LOCK_SH)
        except OSError as error:
            log.error("cannot mark original %s as in flight: %s", sha256, error)
            raise InsufficientStorage(NOT_STORED) from None
        writing = Writing()
        try:
            yield writing
        finally:
            try:
                # Non-blocking, and atomic on one file: fails while another writer holds it.
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pass  # another writer of these bytes is in flight: the last one settles
            else:
                self._settle(marker, descriptor, lambda sha: writing.needed or needed(sha))
            finally:
                os.close(descriptor)

    def settle_abandoned(self, needed: Callable[[str], bool]) -> int:
        """Resolve the markers that writers which died left behind: remove each original no
        committed row needs (and half-written temporary files). Safe while other processes
        write. Returns how many originals it removed."""
        folder = self.root / PENDING
        if not folder.is_dir():
            return 0
        removed = 0
        for marker in sorted(folder.iterdir()):
            if not _SHA256.fullmatch(marker.name):
                continue
            try:
                descriptor = os.open(marker, os.O_RDWR)
            except FileNotFoundError:  # settled meanwhile
                continue
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(descriptor)  # a live writer holds it
                continue
            try:
                removed += self._settle(marker, descriptor, needed)
            finally:
                os.close(descriptor)
        if removed:
            log.warning("removed %d originals that interrupted writes left behind", removed)
        return removed

    def _marker(self, sha256: str) -> Path:
        self.path(sha256)  # checks the digest
        return self.root / PENDING / sha256

    def _settle(self, marker: Path, descriptor: int, needed: Callable[[str], bool]) -> bool:
        """With the marker held exclusively: no writer of these bytes is in flight. Remove the
        original unless it is needed, then the marker; True when the original was removed. When
        the database cannot say, keep both: an extra file is harmless, a lost original is not,
        and the marker lets `settle_abandoned` decide later."""
        if not _same_file(descriptor, marker):
            return False  # settled and replaced by a new writer's marker meanwhile
        sha256 = marker.name
        try:
            keep = needed(sha256)
        except Exception as error:
            log.warning("kept original %s: cannot tell whether a row needs it (%s)", sha256, error)
            return False
        try:
            removed = not keep and self.exists(sha256)
            if removed:
                self.remove(sha256)
            folder = self.path(sha256).parent
            if folder.is_dir():
                for temporary in folder.glob(f".{sha256}.*.tmp"):  # write_atomically's
                    temporary.unlink(missing_ok=True)
            marker.unlink(missing_ok=True)
        except OSError as error:  # the store itself is failing: the marker stays for later
            log.warning("cannot settle original %s: %s", sha256, error)
            return False
        return removed


def _lock_marker(marker: Path, mode: int) -> int:
    """An open descriptor of the marker, locked in `mode`. A marker can be settled and unlinked
    between open and lock: then lock the new one."""
    marker.parent.mkdir(parents=True, exist_ok=True)
    while True:
        descriptor = os.open(marker, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, mode)
            if _same_file(descriptor, marker):
                return descriptor
        except BaseException:
            os.close(descriptor)
            raise
        os.close(descriptor)


def _same_file(descriptor: int, path: Path) -> bool:
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(descriptor)
    return (held.st_dev, held.st_ino) == (on_disk.st_dev, on_disk.st_ino)
