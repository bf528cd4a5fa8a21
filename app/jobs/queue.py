"""The job queue, in the `jobs` table of the case database.

A worker claims the oldest queued job in one statement (PostgreSQL skips rows another worker has
locked; SQLite's write lock serialises the statement), then heartbeats while it runs. A job whose
heartbeat stops (its worker was killed, or its host died) is re-queued by any other worker, or
failed once it has used its attempts. Every write a worker makes to a job is fenced by (id,
worker, attempt), so a worker presumed dead that comes back cannot touch the next attempt.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, select, update
from sqlalchemy.orm import Session, aliased, sessionmaker

from app.audit.chain import HEAD_ID
from app.audit.entries import record_entry
from app.core.errors import Conflict
from app.storage.tables import AuditChainHead, Job, utcnow

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = (
    "queued",
    "running",
    "succeeded",
    "failed",
    "cancelled",
)
FINISHED = (SUCCEEDED, FAILED, CANCELLED)
LOG_LINES = 200  # the log tail kept on the job


class JobCancelled(Exception):
    """An admin asked for the job to stop."""


class JobLost(Exception):
    """This worker's claim was taken away (it was presumed dead): stop without writing."""


def enqueue(
    session: Session, kind: str, parameters: dict[str, Any], key_id: int | None, max_attempts=3
) -> Job:
    job = Job(
        kind=kind,
        status=QUEUED,
        parameters=parameters,
        max_attempts=max_attempts,
        created_by_key_id=key_id,
    )
    session.add(job)
    session.flush()
    record_entry(
        session,
        key_id=key_id,
        action="job.create",
        target_type="job",
        target_id=job.id,
        details={"kind": kind, "parameters": parameters},
    )
    return job


def enqueue_unless_unfinished(
    session: Session, *, kind: str, parameters: dict[str, Any], key_id: int | None
) -> Job:
    """Queue a job of this kind unless one is already queued or running: then refuse, naming it
    (a second rebuild queued behind the first would only rebuild the same index again).

    The check and the insert are one transaction that first takes the audit chain's head row,
    which every job's creation updates anyway: PostgreSQL's row lock, or SQLite's write lock,
    makes a concurrent caller wait here until this one commits, so it then sees this job. The
    lock must be the transaction's first statement (on SQLite a transaction that read first
    cannot take the write lock once another writer has committed)."""
    session.execute(
        update(AuditChainHead)
        .where(AuditChainHead.id == HEAD_ID)
        .values(sequence=AuditChainHead.sequence)
    )
    unfinished = session.scalar(
        select(Job)
        .where(Job.kind == kind, Job.status.in_((QUEUED, RUNNING)))
        .order_by(Job.id)
        .limit(1)
    )
    if unfinished is not None:
        what = kind.replace("_", " ")
        raise Conflict(
            f"{what} job #{unfinished.id} is already {unfinished.status}; another would do the "
            f"same work, so none was queued"
        )
    return enqueue(session, kind, parameters, key_id)


def request_cancel(session: Session, job: Job, key_id: int | None) -> Job:
    """Cancel a queued job now; ask a running one to stop at its next progress report."""
    if job.status in FINISHED:
        raise Conflict(f"job {job.id} already {job.status}")
    if job.status == QUEUED:
        job.status, job.finished_at = CANCELLED, utcnow()
        job.error = "cancelled before it started"
    job.cancel_requested = True
    record_entry(
        session,
        key_id=key_id,
        action="job.cancel",
        target_type="job",
        target_id=job.id,
        details={"status": job.status},
    )
    return job


def claim(sessions: sessionmaker[Session], worker: str) -> Job | None:
    """Claim the oldest queued job for this worker, or None when there is none."""
    queued = aliased(Job)
    oldest = (
        select(queued.id)
        .where(queued.status == QUEUED)
        .order_by(queued.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    now = utcnow()
    with sessions.begin() as session:
        job_id = session.execute(
            update(Job)
            .where(Job.id == oldest, Job.status == QUEUED)
            .values(
                status=RUNNING,
                worker=worker,
                attempt=Job.attempt + 1,
                started_at=now,
                heartbeat_at=now,
                progress_done=0,
                progress_total=None,
                progress_message="started",
            )
            .returning(Job.id)
        ).scalar_one_or_none()
        if job_id is None:
            return None
        return session.get(Job, job_id)


def has_queued_jobs(sessions: sessionmaker[Session]) -> bool:
    with sessions() as session:
        return session.scalar(select(Job.id).where(Job.status == QUEUED).limit(1)) is not None


def recover_stale(sessions: sessionmaker[Session], stale_after: timedelta) -> list[int]:
    """Re-queue (or fail, when out of attempts) running jobs whose heartbeat stopped; returns
    their ids."""
    cutoff = utcnow() - stale_after
    with sessions.begin() as session:
        stale = session.scalars(
            select(Job)
            .where(Job.status == RUNNING, Job.heartbeat_at < cutoff)
            .with_for_update(skip_locked=True)
        ).all()
        for job in stale:
            reason = (
                f"attempt {job.attempt}: worker {job.worker} stopped heartbeating "
                f"(last at {job.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC)"
            )
            if job.cancel_requested:
                job.status, job.error = CANCELLED, reason + "; it had been asked to cancel"
            elif job.attempt < job.max_attempts:
                job.status, job.error = QUEUED, reason + "; re-queued"
            else:
                job.status, job.error = FAILED, reason + f"; failed after {job.attempt} attempts"
            if job.status != QUEUED:
                job.finished_at = utcnow()
                job.progress_message = job.error
            job.log_tail = f"{job.log_tail}\n{job.error}".strip()
            job.worker = None
        return [job.id for job in stale]


@dataclass
class RunningJob:
    """A claimed job as its worker sees it: progress, log lines and the result, each written with
    the claim's fence. The worker's heartbeat thread calls heartbeat(); the job calls progress()
    and log(), which raise JobCancelled or JobLost when it should stop."""

    sessions: sessionmaker[Session]
    id: int
    kind: str
    parameters: dict[str, Any]
    worker: str
    attempt: int
    key_id: int | None  # who asked for the job, for the audit entries it writes
    _log: collections.deque[str] = field(
        default_factory=lambda: collections.deque(maxlen=LOG_LINES)
    )
    _cancel: threading.Event = field(default_factory=threading.Event)
    _lost: threading.Event = field(default_factory=threading.Event)
    _outcome: str | None = None  # what a success did, in a sentence; see conclude()

    @classmethod
    def of(cls, sessions: sessionmaker[Session], job: Job) -> RunningJob:
        running = cls(
            sessions,
            job.id,
            job.kind,
            dict(job.parameters),
            job.worker,
            job.attempt,
            job.created_by_key_id,
        )
        running._log.extend(line for line in job.log_tail.splitlines() if line)
        return running

    def _mine(self):
        return and_(
            Job.id == self.id,
            Job.worker == self.worker,
            Job.attempt == self.attempt,
            Job.status == RUNNING,
        )

    def _write(self, **values) -> None:
        """Update the job if it is still this claim's; learn whether an admin asked to cancel."""
        with self.sessions.begin() as session:
            cancel = session.execute(
                update(Job).where(self._mine()).values(**values).returning(Job.cancel_requested)
            ).scalar_one_or_none()
        if cancel is None:
            self._lost.set()
            raise JobLost(f"job {self.id} is no longer this worker's (attempt {self.attempt})")
        if cancel:
            self._cancel.set()

    def heartbeat(self) -> None:
        try:
            self._write(heartbeat_at=utcnow())
        except JobLost:
            return

    def check(self) -> None:
        if self._lost.is_set():
            raise JobLost(f"job {self.id} is no longer this worker's")
        if self._cancel.is_set():
            raise JobCancelled("cancelled by an admin")

    def log(self, line: str) -> None:
        self._log.append(line)

    def progress(self, done: int, total: int | None, message: str) -> None:
        self.check()
        self._write(
            progress_done=done,
            progress_total=total,
            progress_message=message,
            log_tail="\n".join(self._log),
            heartbeat_at=utcnow(),
        )

    def conclude(self, message: str) -> None:
        """What the job did, in a sentence: its message once it succeeds (until then its
        progress messages say what it is doing)."""
        self._outcome = message

    def finish(self, status: str, result: dict[str, Any] | None = None, error: str | None = None):
        """Its final state; the message becomes what it did, or why it stopped, never the last
        step it reported."""
        message = (self._outcome or "finished") if status == SUCCEEDED else (error or status)
        self._write(
            status=status,
            result=result,
            error=error,
            finished_at=utcnow(),
            progress_message=message,
            log_tail="\n".join(self._log),
        )
