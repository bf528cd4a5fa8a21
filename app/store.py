"""The originals, exactly as uploaded, in a content-addressed file store: a file's name is the
sha256 of its bytes, so it is never modified and any copy can be checked against its name."""

from __future__ import annotations

import os
import re
from pathlib import Path

from model.checkpoint import write_atomically

_SHA256 = re.compile(r"[0-9a-f]{64}")


class OriginalStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, sha256: str) -> Path:
        # Names come only from hex digests, so no request can reach outside the store.
        if not _SHA256.fullmatch(sha256):
            raise ValueError(f"not a sha256 digest: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, sha256: str, data: bytes) -> bool:
        """Store the bytes under their digest; False when they were already there."""
        path = self.path(sha256)
        if path.exists():
            return False
        write_atomically(path, data)
        return True

    def read(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).exists()

    def remove(self, sha256: str) -> None:
        path = self.path(sha256)
        if path.exists():
            os.unlink(path)
