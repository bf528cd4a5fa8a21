"""Loading a checkpoint an admin asked to register, with every refusal in words an admin can act
on: what is wrong with the file, named as it was asked for, never a server path beyond the models
directory and never anything read from the file (torch's own refusal quotes its first byte)."""

from __future__ import annotations

import errno
import hashlib
from pathlib import Path

from app.core.errors import Unprocessable
from model.checkpoint import CheckpointError, sha256_path
from model.inference import EmbeddingModel

# Refusals torch and the embedder raise for a file that holds the wrong things: a foreign
# pickle's missing keys, a state dict of another shape.
NOT_A_CHECKPOINT = (CheckpointError, KeyError, TypeError, RuntimeError, ValueError)
_CHUNK = 1 << 20


def load_registrable(checkpoint: Path, named: str) -> EmbeddingModel:
    """The model in `checkpoint` (already checked to be a bounded regular file inside the models
    directory), on the CPU; `named` is what the admin typed."""
    try:
        return EmbeddingModel.load(checkpoint, "cpu")
    except OSError as error:
        raise Unprocessable(unreadable(error, named)) from None
    except NOT_A_CHECKPOINT:
        raise Unprocessable(not_a_checkpoint(checkpoint, named)) from None


def not_a_checkpoint(checkpoint: Path, named: str) -> str:
    if sidecar_disagrees(checkpoint):
        return (
            f"{named!r} does not match the sha256 recorded beside it in "
            f"{sha256_path(checkpoint).name!r}: the file was damaged or replaced after "
            "`radmatch train` wrote it; copy it again with its .sha256 file"
        )
    return (
        f"{named!r} is not a radmatch checkpoint: register a file written by `radmatch train` "
        "(a .pt file with its .sha256 beside it)"
    )


def sidecar_disagrees(checkpoint: Path) -> bool:
    """Whether a .sha256 beside the file records another digest (asked only once loading has
    failed, so a good file is hashed once)."""
    try:
        fields = sha256_path(checkpoint).read_text(errors="replace").split()
        digest = hashlib.sha256()
        with checkpoint.open("rb") as file:
            while chunk := file.read(_CHUNK):
                digest.update(chunk)
    except OSError:
        return False
    return bool(fields) and fields[0] != digest.hexdigest()


def unreadable(error: OSError, named: str) -> str:
    # The error's own text names the server's full path: only the file's name is repeated.
    which = Path(error.filename).name if error.filename else named
    if error.errno == errno.ENOENT:
        return f"{which!r} was removed from the models directory while it was being registered"
    if error.errno in (errno.EACCES, errno.EPERM):
        return (
            f"the server is not allowed to read {which!r} in the models directory: make it "
            "readable by the user the service runs as"
        )
    reason = (error.strerror or "an input/output error").lower()
    return f"the server could not read {which!r} in the models directory ({reason})"
