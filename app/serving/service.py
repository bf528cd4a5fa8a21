"""The running service, assembled: settings, the case records, the matcher (model and index)
and metrics. Routes, jobs and commands start from it and hand each domain function the parts it
uses.

`radmatch serve` opens one with an index; `radmatch ingest` opens one without (the servers pick up
what it commits); `radmatch worker` opens one with neither. A server's sync thread follows the
database: it applies what other processes committed and switches models and index builds.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from app.core.config import Settings
from app.core.metrics import Metrics
from app.serving.batching import EmbeddingBatcher
from app.serving.matcher import Matcher
from app.storage.database import check_schema, make_engine, session_factory
from app.storage.originals import OriginalStore
from app.storage.records import Records

log = logging.getLogger("radmatch")


@dataclass
class Service:
    settings: Settings
    records: Records
    matcher: Matcher
    metrics: Metrics
    _stop: threading.Event = field(default_factory=threading.Event)
    _sync_thread: threading.Thread | None = None

    @classmethod
    def open(
        cls,
        settings: Settings,
        with_index: bool = True,
        with_model: bool = True,
        started_by: dict[str, str] | None = None,
    ) -> Service:
        """A server (with an index, following the active model), a bulk loader (model, no index)
        or a worker (neither: each job loads what it needs). `started_by`: who, from the command
        line (app.audit.entries.command_line_actor), registers the configured checkpoint."""
        engine = make_engine(settings.sqlalchemy_url)
        try:
            check_schema(engine)
        except Exception:
            engine.dispose()
            raise
        metrics = Metrics()
        records = Records(session_factory(engine), OriginalStore(settings.originals_dir))
        batcher = EmbeddingBatcher(settings.embed_batch_max, settings.embed_wait_ms / 1000, metrics)
        matcher = Matcher(
            settings, records, batcher, metrics, with_index=with_index, started_by=started_by
        )
        service = cls(settings, records, matcher, metrics)
        records.settle_abandoned()
        if with_model:
            matcher.start()
        if with_index:
            service._sync_thread = threading.Thread(
                target=service._sync_forever, name="index-sync", daemon=True
            )
            service._sync_thread.start()
        return service

    def close(self) -> None:
        self._stop.set()
        if self._sync_thread is not None:
            self._sync_thread.join()
        self.matcher.batcher.close()
        serving = self.matcher.serving
        if serving is not None and serving.index is not None:
            self.matcher.save_index()
        self.records.sessions.kw["bind"].dispose()

    def _sync_forever(self) -> None:
        while not self._stop.wait(self.settings.index_sync_seconds):
            try:
                self.matcher.refresh()
                # Originals of writes that failed while the database could not say.
                self.records.settle_abandoned()
            except Exception:  # the database may be away for a while; keep trying
                log.exception("index sync failed; retrying")
