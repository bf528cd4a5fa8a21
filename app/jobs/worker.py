"""`radmatch worker`: claim queued jobs one at a time and run them, heartbeating meanwhile.

Several workers may run against one database; each also re-queues the jobs of workers that stopped
heartbeating. `radmatch serve --worker` runs one in a thread of the server for the embedded
set-up."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from app.jobs.activation import activate_model
from app.jobs.queue import (
    CANCELLED,
    FAILED,
    SUCCEEDED,
    JobCancelled,
    JobLost,
    RunningJob,
    claim,
    has_queued_jobs,
    recover_stale,
)
from app.jobs.rebuild import rebuild_index
from app.serving.service import Service

log = logging.getLogger("radmatch.worker")

Handler = Callable[[Service, RunningJob], dict[str, Any]]


def _train_model(service: Service, job: RunningJob) -> dict[str, Any]:
    from app.jobs.training import train_model  # torch training code loads only when needed

    return train_model(service, job)


def _calibrate_model(service: Service, job: RunningJob) -> dict[str, Any]:
    from app.jobs.calibration import calibrate_model  # as training: torch code loads when needed

    return calibrate_model(service, job)


def _pull_from_server(service: Service, job: RunningJob) -> dict[str, Any]:
    from app.jobs.pull import pull_from_server  # the DICOMweb client loads when a pull runs

    return pull_from_server(service, job)


KINDS: dict[str, Handler] = {
    "index_rebuild": rebuild_index,
    "model_activation": activate_model,
    "training": _train_model,
    "calibration": _calibrate_model,
    "dicomweb_pull": _pull_from_server,
}


class Worker:
    def __init__(self, service: Service, name: str | None = None):
        self.service = service
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"

    def run(self, stop: threading.Event, once: bool = False) -> None:
        """Run jobs until stop is set (or, with once, until the queue is empty)."""
        settings = self.service.settings
        log.info("worker %s waiting for jobs", self.name)
        while not stop.is_set():
            try:
                recovered = recover_stale(
                    self.service.records.sessions, timedelta(seconds=settings.job_stale_seconds)
                )
                if recovered:
                    log.warning("jobs %s had stopped heartbeating", recovered)
                job = claim(self.service.records.sessions, self.name)
            except Exception:  # the database may be away for a while; keep trying
                log.exception("cannot reach the job queue; retrying")
                job = None
            if job is not None:
                self.run_job(RunningJob.of(self.service.records.sessions, job))
            elif once and not has_queued_jobs(self.service.records.sessions):
                return
            else:  # nothing claimable now (other workers may hold the queued rows a moment)
                stop.wait(settings.worker_poll_seconds)

    def run_job(self, job: RunningJob) -> None:
        log.info("job %d (%s) attempt %d started", job.id, job.kind, job.attempt)
        done = threading.Event()
        heartbeat = threading.Thread(
            target=self._heartbeat, args=(job, done), name=f"heartbeat-{job.id}", daemon=True
        )
        heartbeat.start()
        capture = _LogCapture(job, threading.get_ident())
        logging.getLogger("radmatch").addHandler(capture)
        try:
            handler = KINDS.get(job.kind)
            if handler is None:
                raise ValueError(f"unknown job kind {job.kind!r}")
            result = handler(self.service, job)
            job.check()  # a claim lost near the end must not be reported as this worker's success
            job.finish(SUCCEEDED, result=result)
            log.info("job %d succeeded", job.id)
        except JobLost:
            log.warning("job %d was taken over by another worker; stopped", job.id)
        except JobCancelled as reason:
            self._finish(job, CANCELLED, str(reason))
        except Exception as error:
            log.exception("job %d failed", job.id)
            message = getattr(error, "message", None) or str(error) or type(error).__name__
            self._finish(job, FAILED, message)
        finally:
            logging.getLogger("radmatch").removeHandler(capture)
            done.set()
            heartbeat.join()

    def _finish(self, job: RunningJob, status: str, error: str) -> None:
        try:
            job.finish(status, error=error)
            log.info("job %d %s: %s", job.id, status, error)
        except JobLost:
            log.warning("job %d was taken over by another worker", job.id)

    def _heartbeat(self, job: RunningJob, done: threading.Event) -> None:
        while not done.wait(self.service.settings.job_heartbeat_seconds):
            try:
                job.heartbeat()
            except Exception:  # the database may be away; the next beat tries again
                log.exception("heartbeat of job %d failed", job.id)


class _LogCapture(logging.Handler):
    """The job's own log lines (from its thread) go to its log tail."""

    def __init__(self, job: RunningJob, thread_id: int):
        super().__init__(logging.INFO)
        self.job, self.thread_id = job, thread_id
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread_id:
            self.job.log(self.format(record))
