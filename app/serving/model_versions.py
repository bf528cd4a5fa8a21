"""Model versions: a registered checkpoint (by sha256), at most one of them active. Switching the
active version is the model activation job's (app/jobs/activation.py): it re-embeds first."""

from __future__ import annotations

import stat
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.audit.entries import record_entry
from app.core.config import Settings
from app.core.errors import Unprocessable
from app.evidence.calibrations import add_calibration
from app.storage.tables import ModelVersion, utcnow
from model.checkpoint import CheckpointError, sha256_path
from model.inference import EmbeddingModel
from model.threads import apply_threads

# A checkpoint's .sha256 holds one line: the digest, two spaces and the file's name.
SHA256_FILE_BYTES = 4096


def active_version(session: Session) -> ModelVersion | None:
    return session.scalar(select(ModelVersion).where(ModelVersion.active))


def register(
    session: Session,
    model: EmbeddingModel,
    key_id: int | None,
    by: dict[str, str] | None = None,
) -> ModelVersion:
    """The version of this checkpoint, registered now unless it already was (same sha256), with
    the calibration the checkpoint carries, if any. `by`: who, from the command line."""
    version = session.scalar(select(ModelVersion).where(ModelVersion.sha256 == model.sha256))
    if version is not None:
        return version
    # The calibration (with the pairs it was fitted on) is kept in its own table.
    calibration = model.checkpoint.info.get("calibration")
    info = {k: v for k, v in model.checkpoint.info.items() if k != "calibration"}
    version = ModelVersion(
        sha256=model.sha256,
        checkpoint_path=str(Path(model.path).resolve()),
        dimension=model.dimension,
        metrics=info.get("metrics", {}),
        info=info,
        active=False,
    )
    session.add(version)
    session.flush()
    record_entry(
        session,
        key_id=key_id,
        action="model.register",
        target_type="model_version",
        target_id=version.id,
        details={"sha256": model.sha256, "checkpoint": version.checkpoint_path},
        by=by,
    )
    if calibration is not None:
        add_calibration(
            session, model_version_id=version.id, payload=calibration, key_id=key_id, by=by
        )
    return version


def activate(
    session: Session, version: ModelVersion, key_id: int | None, by: dict[str, str] | None = None
) -> None:
    """Make this the one active version, inside the caller's transaction."""
    previous = active_version(session)
    session.execute(update(ModelVersion).values(active=False))
    version.active = True
    version.activated_at = utcnow()
    record_entry(
        session,
        key_id=key_id,
        action="model.activate",
        target_type="model_version",
        target_id=version.id,
        details={
            "sha256": version.sha256,
            "previous_version": previous.id if previous is not None else None,
        },
        by=by,
    )


def registrable_checkpoint(requested: str, *, models_dir: Path, max_bytes: int) -> Path:
    """The file an admin asked to register (a name under the models directory, or a path in
    it), once it is known to be a regular file of at most max_bytes inside that directory, its
    links resolved, as is the .sha256 beside it: nothing else on the server is opened (a FIFO
    would hang the request, a device or a huge file fill its memory). Nothing is read here."""
    root = models_dir.resolve()
    if not root.is_dir():
        raise Unprocessable(
            "the server has no models directory (RADMATCH_MODELS_DIR, by default "
            "<data directory>/models); put checkpoints there to register them"
        )
    checkpoint = _file_inside(root, root / requested, max_bytes, requested)
    beside = sha256_path(checkpoint)
    if beside.is_symlink() or beside.exists():
        _file_inside(root, beside, SHA256_FILE_BYTES, beside.name)
    return checkpoint


def _file_inside(root: Path, path: Path, max_bytes: int, named: str) -> Path:
    # Whether a file outside the directory exists is none of the caller's business: where a
    # path leads is settled before anything there is looked at.
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError, ValueError):  # a name too long, a link loop, a NUL
        raise Unprocessable(f"there is no file named {named!r} in the models directory") from None
    if not resolved.is_relative_to(root):
        raise Unprocessable(
            f"{named!r} is outside the models directory: copy the checkpoint (with its .sha256) "
            f"into that directory (RADMATCH_MODELS_DIR) and register it by its name"
        )
    try:
        status = resolved.stat()
    except OSError:
        raise Unprocessable(f"there is no file named {named!r} in the models directory") from None
    if not stat.S_ISREG(status.st_mode):
        raise Unprocessable(
            f"{named!r} in the models directory is not a regular file (a folder, a pipe or a "
            f"device), so it cannot be a checkpoint"
        )
    if status.st_size > max_bytes:
        raise Unprocessable(
            f"{named!r} is {status.st_size} bytes, over the limit of {max_bytes} bytes for a "
            f"checkpoint: it is not one, or RADMATCH_MAX_CHECKPOINT_BYTES must be raised"
        )
    return resolved


def load_embedding_model(path: Path, settings: Settings) -> EmbeddingModel:
    """A checkpoint on the configured device, precision, backend and threads. Every process
    that embeds for the service loads its model here, and with ONNX Runtime this is where
    the checkpoint's ONNX file is checked, or exported when missing or stale: in the activation
    job (a worker) before a version is served, so the servers that switch to it then find it
    ready, and at a server's start for RADMATCH_CHECKPOINT. Registering does not export: it
    runs in a request, and a version may never be activated."""
    apply_threads(settings.threads)
    return EmbeddingModel.load(
        Path(path),
        settings.device or None,
        settings.precision,
        backend=settings.inference_backend,
        threads=settings.threads,
        onnx_dir=settings.data_dir / "models" / "onnx",
    )


def load_model(version: ModelVersion, settings: Settings) -> EmbeddingModel:
    """The version's checkpoint on the configured device, precision and backend, refused if the
    file changed since it was registered."""
    model = load_embedding_model(Path(version.checkpoint_path), settings)
    if model.sha256 != version.sha256:
        raise CheckpointError(
            f"{version.checkpoint_path} is not the checkpoint registered as model version "
            f"{version.id} (sha256 {model.sha256[:12]}, registered {version.sha256[:12]})"
        )
    return model
