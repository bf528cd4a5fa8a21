"""The model a process embeds with and the index of that model's embeddings, kept in step with
the database: when a model activation job switches the active model, or a rebuild publishes a new
index build, `refresh` loads it and swaps it in while searches go on with the old one."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from app.core.config import Settings
from app.core.errors import Unavailable
from app.core.metrics import Metrics
from app.serving.batching import EmbeddingBatcher
from app.serving.decode_budget import DecodeBudget
from app.serving.embedding import decode, embed_missing
from app.serving.index import (
    SnapshotError,
    VectorIndex,
    build_from_database,
    catch_up,
    check_consistency,
    snapshot_path,
)
from app.serving.model_versions import (
    activate,
    active_version,
    load_embedding_model,
    load_model,
    register,
)
from app.storage.records import Records
from app.storage.tables import ModelVersion
from model.backends import BackendError
from model.checkpoint import CheckpointError
from model.image import DecodedImage, DecodeLimits
from model.inference import EmbeddingModel

log = logging.getLogger("radmatch")


class StartupError(RuntimeError):
    """The service cannot start: the message says why and what to do."""


@dataclass(frozen=True)
class Serving:
    """The model a server embeds with and the index of its embeddings, replaced as one object so
    that no request mixes two models."""

    model: EmbeddingModel
    version: ModelVersion  # as read when this was loaded: its index_build is the one served
    index: VectorIndex | None


@dataclass
class Matcher:
    settings: Settings
    records: Records
    batcher: EmbeddingBatcher
    metrics: Metrics
    with_index: bool = True
    # Who started this process from the command line: the registration and activation of
    # RADMATCH_CHECKPOINT at start are theirs (app.audit.entries.command_line_actor).
    started_by: dict[str, str] | None = None
    serving: Serving | None = None
    _refresh_lock: threading.Lock = field(default_factory=threading.Lock)
    # Shared by every decode of this process (app/serving/decode_budget.py).
    decode_budget: DecodeBudget = field(init=False)

    def __post_init__(self) -> None:
        self.decode_budget = DecodeBudget(
            self.settings.decode_budget_bytes,
            self.settings.decode_wait_seconds,
            self.metrics.decodes,
        )

    @property
    def decode_limits(self) -> DecodeLimits:
        return DecodeLimits(
            max_pixels=self.settings.max_pixels, max_decode_bytes=self.settings.max_decode_bytes
        )

    def decode(self, data: bytes) -> DecodedImage:
        """Decode within the per-image limits, admitted by the process's decode budget: the
        funnel every decode in the service goes through."""
        return decode(data, self.decode_limits, self.decode_budget.admit)

    def require_serving(self) -> Serving:
        serving = self.serving
        if serving is None:
            raise Unavailable(
                "no model is active: set RADMATCH_CHECKPOINT to a checkpoint from `radmatch train` "
                "and restart, or register and activate one (POST /api/v1/admin/models)"
            )
        return serving

    def require_index(self) -> Serving:
        serving = self.require_serving()
        if serving.index is None:
            raise Unavailable("this process keeps no index")
        return serving

    def embed_missing(self, model: EmbeddingModel, version: ModelVersion, **options) -> int:
        return embed_missing(
            self.records, model=model, version=version, decoder=self.decode, **options
        )

    # --- the model --------------------------------------------------------------------------------

    def start(self) -> None:
        """Serve the active model version, after registering RADMATCH_CHECKPOINT and activating
        it if no model is active yet."""
        version, model = self._bootstrap_model()
        if version is not None:
            self._serve(version, model)

    def _load_checkpoint(self) -> EmbeddingModel | None:
        path = self.settings.checkpoint
        if path is None:
            return None
        try:
            return load_embedding_model(path, self.settings)
        except (CheckpointError, BackendError, OSError) as error:
            raise StartupError(f"cannot load the model checkpoint: {error}") from None

    def _bootstrap_model(self) -> tuple[ModelVersion | None, EmbeddingModel | None]:
        """The active version, with its model when that is the configured checkpoint. Later
        switches are the model activation job's (it re-embeds first)."""
        model = self._load_checkpoint()
        if model is not None:
            with self.records.sessions.begin() as session:
                version = register(session, model, key_id=None, by=self.started_by)
                active = active_version(session)
                if active is None:
                    activate(session, version, key_id=None, by=self.started_by)
                elif active.id != version.id:
                    log.warning(
                        "RADMATCH_CHECKPOINT is model version %d; version %d stays active "
                        "(POST /api/v1/admin/models/%d/activate switches)",
                        version.id,
                        active.id,
                        version.id,
                    )
        with self.records.sessions() as session:
            active = active_version(session)
        if active is None:
            log.warning("no model: set RADMATCH_CHECKPOINT to serve searches and uploads")
            return None, None
        return active, model if model is not None and model.sha256 == active.sha256 else None

    def _serve(self, version: ModelVersion, model: EmbeddingModel | None = None) -> None:
        """Load a version's model (unless given), embed what it lacks, load its index, then
        switch to it."""
        if model is None:
            try:
                model = load_model(version, self.settings)
            except (CheckpointError, BackendError, OSError) as error:
                raise StartupError(f"cannot load model version {version.id}: {error}") from None
        self.embed_missing(model, version)  # images uploaded under another model
        index = self._load_index(version) if self.with_index else None
        self.serving = Serving(model, version, index)
        # Uploads that committed under the previous model while this one was being prepared.
        if self.embed_missing(model, version) and index is not None:
            with self.records.sessions() as session:
                catch_up(index, session)
        log.info("serving model version %d (%s)", version.id, version.sha256[:12])

    # --- the index --------------------------------------------------------------------------------

    def _load_index(self, version: ModelVersion) -> VectorIndex:
        """The version's snapshot caught up with the database or, when it is missing, damaged,
        disagrees or is of a kind the settings no longer choose, an index built from the stored
        embeddings."""
        path = snapshot_path(self.settings.index_dir, version.id)
        options = self.settings.index_options
        with self.records.sessions() as session:
            index, replayed = None, 0
            if path.exists():
                try:
                    index = VectorIndex.load(path, version.id, version.dimension, options)
                    replayed = catch_up(index, session)
                    consistency = check_consistency(index, session)
                    if not consistency.ok:
                        raise SnapshotError(f"it disagrees with the database ({consistency})")
                    if index.kind != options.kind_for(index.size):
                        raise SnapshotError(
                            f"it is {index.kind}; {index.size} images call for "
                            f"{options.kind_for(index.size)}"
                        )
                except SnapshotError as error:
                    log.warning("rebuilding the index from the database: %s", error)
                    index = None
            if index is None:
                index = build_from_database(session, version.id, version.dimension, options)
                replayed = index.size
        log.info(
            "index: %s of %d images at generation %d (%d replayed)",
            index.kind,
            index.size,
            index.generation,
            replayed,
        )
        self.metrics.index_size.set(index.size)
        return index

    def save_index(self) -> None:
        index = self.require_index().index
        index.save(snapshot_path(self.settings.index_dir, index.model_version_id))

    def refresh(self) -> None:
        """Follow the database: switch when another version became active, load a newly
        published index build, or apply what this or another process committed. Serialised, so
        no change is applied twice; searches go on with the current index meanwhile."""
        if not self.with_index:
            return
        with self._refresh_lock:
            with self.records.sessions() as session:
                active = active_version(session)
            serving = self.serving
            if active is None:
                return
            if serving is None or serving.version.id != active.id:
                self._serve(active)
            elif serving.version.index_build != active.index_build:
                index = self._load_index(active)
                self.serving = Serving(serving.model, active, index)
                log.info("loaded index build %d of model version %d", active.index_build, active.id)
            else:
                with self.records.sessions() as session:
                    catch_up(serving.index, session)
            self.metrics.index_size.set(self.serving.index.size)
