"""The running service's state: database sessions, the original store, the model it embeds with,
and the index of that model's embeddings, kept in step with the database by a background thread.

`radmatch serve` opens one with an index; `radmatch ingest` opens one without (the servers pick up
what it commits).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass, field

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.database import check_schema, make_engine, session_factory
from app.errors import Unavailable
from app.index import (
    SnapshotError,
    VectorIndex,
    catch_up,
    check_consistency,
    snapshot_path,
)
from app.metrics import Metrics
from app.store import OriginalStore
from app.tables import AuditEntry, ModelVersion
from model.checkpoint import CheckpointError
from model.image import DecodeLimits
from model.inference import EmbeddingModel

log = logging.getLogger("radmatch")


class StartupError(RuntimeError):
    """The service cannot start: the message says why and what to do."""


@dataclass
class Service:
    settings: Settings
    sessions: sessionmaker[Session]
    store: OriginalStore
    metrics: Metrics
    model: EmbeddingModel | None = None
    model_version: ModelVersion | None = None
    index: VectorIndex | None = None
    _sync_lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _sync_thread: threading.Thread | None = None

    @classmethod
    def open(cls, settings: Settings, with_index: bool = True) -> Service:
        engine = make_engine(settings.sqlalchemy_url)
        try:
            check_schema(engine)
        except Exception:
            engine.dispose()
            raise
        service = cls(
            settings=settings,
            sessions=session_factory(engine),
            store=OriginalStore(settings.originals_dir),
            metrics=Metrics(),
        )
        service._load_model()
        if service.model is not None:
            from app.images import embed_missing  # images uploaded before this model was active

            embed_missing(service)
            if with_index:
                service._load_index()
                service._sync_thread = threading.Thread(
                    target=service._sync_forever, name="index-sync", daemon=True
                )
                service._sync_thread.start()
        return service

    def close(self) -> None:
        self._stop.set()
        if self._sync_thread is not None:
            self._sync_thread.join()
        if self.index is not None:
            self.save_index()
        self.sessions.kw["bind"].dispose()

    @property
    def decode_limits(self) -> DecodeLimits:
        return DecodeLimits(max_pixels=self.settings.max_pixels)

    def require_model(self) -> tuple[EmbeddingModel, ModelVersion]:
        if self.model is None or self.model_version is None:
            raise Unavailable(
                "no model is loaded: set RADMATCH_CHECKPOINT to a checkpoint from `radmatch train` "
                "and restart the service"
            )
        return self.model, self.model_version

    def require_index(self) -> VectorIndex:
        self.require_model()
        if self.index is None:
            raise Unavailable("this process keeps no index")
        return self.index

    # --- the model --------------------------------------------------------------------------------

    def _load_model(self) -> None:
        """Serve RADMATCH_CHECKPOINT (registered and made active), else the active model version."""
        path = self.settings.checkpoint
        with self.sessions.begin() as session:
            active = session.scalar(select(ModelVersion).where(ModelVersion.active))
            if path is None and active is None:
                log.warning("no model: set RADMATCH_CHECKPOINT to serve searches and uploads")
                return
            if path is None:
                path = active.checkpoint_path
            try:
                model = EmbeddingModel.load(path, self.settings.device or None)
            except (CheckpointError, OSError) as error:
                raise StartupError(f"cannot load the model checkpoint: {error}") from None
            version = session.scalar(
                select(ModelVersion).where(ModelVersion.sha256 == model.sha256)
            )
            if version is None:
                version = _register(session, model)
            if not version.active:
                session.execute(update(ModelVersion).values(active=False))
                version.active = True
                session.add(
                    AuditEntry(
                        action="model.activate",
                        target_type="model_version",
                        target_id=version.id,
                        details={"sha256": version.sha256, "checkpoint": str(path)},
                    )
                )
        self.model, self.model_version = model, version
        log.info("serving model version %d (%s)", version.id, version.sha256[:12])

    # --- the index --------------------------------------------------------------------------------

    def _load_index(self) -> None:
        version = self.model_version
        path = snapshot_path(self.settings.index_dir, version.id)
        index = VectorIndex(version.id, version.dimension)
        if path.exists():
            try:
                index = VectorIndex.load(path, version.id, version.dimension)
            except SnapshotError as error:
                log.warning("rebuilding the index from the database: %s", error)
        self.index = index
        with self.sessions() as session:
            try:
                replayed = catch_up(index, session)
                consistency = check_consistency(index, session)
            except SnapshotError as error:
                log.warning("rebuilding the index from the database: %s", error)
                consistency = None
            if consistency is None or not consistency.ok:
                if consistency is not None:
                    log.warning("index disagrees with the database (%s): rebuilding", consistency)
                self.index = index = VectorIndex(version.id, version.dimension)
                replayed = catch_up(index, session)
        log.info(
            "index: %d images at generation %d (%d replayed)",
            index.size,
            index.generation,
            replayed,
        )
        self.metrics.index_size.set(index.size)

    def save_index(self) -> None:
        self.index.save(snapshot_path(self.settings.index_dir, self.index.model_version_id))

    def refresh_index(self) -> None:
        """Apply what this or another process committed. Serialised, so no change is applied twice."""
        if self.index is None:
            return
        with self._sync_lock, self.sessions() as session:
            catch_up(self.index, session)
        self.metrics.index_size.set(self.index.size)

    def _sync_forever(self) -> None:
        while not self._stop.wait(self.settings.index_sync_seconds):
            try:
                self.refresh_index()
            except Exception:  # the database may be away for a while; keep trying
                log.exception("index sync failed; retrying")


def _register(session: Session, model: EmbeddingModel) -> ModelVersion:
    info = model.checkpoint.info
    version = ModelVersion(
        sha256=model.sha256,
        checkpoint_path=str(model.path.resolve()),
        dimension=model.dimension,
        metrics=info.get("metrics", {}),
        info=info,
        active=False,
    )
    session.add(version)
    session.flush()
    session.add(
        AuditEntry(
            action="model.register",
            target_type="model_version",
            target_id=version.id,
            details={"sha256": model.sha256, "checkpoint": version.checkpoint_path},
        )
    )
    return version


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
