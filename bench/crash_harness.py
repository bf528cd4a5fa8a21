"""Crash safety of the service: a real `radmatch serve` (SQLite or PostgreSQL, the seeded 64 px
model the tests use) is killed with SIGKILL while client threads upload small radiographs (PNG and
DICOM) and search, at a random moment (seeded) up to 1.5 s after the cycle's first answer, then
started again and checked, cycle after cycle.

What must hold after every restart:

- every upload that got a 2xx is there: GET /images/{id} answers it, its original in the store
  has exactly the bytes sent (sha256), it has one live embedding of the active model and its
  upload audit entry, and a search with its own bytes ranks its person first (an untrained but
  fixed model maps identical bytes to identical vectors);
- every search that got a 200 is stored, with its query original;
- an upload or search that got no answer (killed in flight) either left nothing or, when the kill
  came after its commit but before its response, left a complete record as above; an answer of
  500 or more from a live server is counted as a server error;
- no orphan files: every file in the originals store is the original of an image row (not purged)
  or a search's query; no temporary file of a killed write, no marker of one left (the server
  settles those when it starts);
- no orphan rows: no image row (not purged) without its original, no live image without a live
  embedding of the active model or without its audit entry, no search without its query original
  or audit entry;
- the index agrees with the database: /readyz says the index is ok and its size is the number of
  embeddings live at its generation; at the end the server is stopped gracefully and the snapshot
  it saves is compared with the database by app.index.check_consistency (then, unless
  final_restart is off, the server starts from that snapshot and is checked once more);
- the audit chain verifies, against the checkpoints the server signs every second
  (RADMATCH_AUDIT_CHECKPOINT_INTERVAL_S=1) and at every start, as `radmatch audit verify` checks
  it: every checkpoint's signature holds, the log still holds each signed head and reaches it; a
  torn last line (a checkpoint write cut off by the kill) is allowed and counted.

Prints one JSON summary. The server's start-up dominates a cycle's time; the summary measures it.

    .venv/bin/python -m bench.crash_harness --database sqlite --cycles 50 --json /tmp/crash.json
    .venv/bin/python -m bench.crash_harness --database postgresql --cycles 50
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import sqlalchemy as sa
from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from app.audit.chain import verify
from app.audit.checkpoint_check import checkpoint_check
from app.audit.checkpoints import read_checkpoint_file
from app.audit.signing import existing_public_key
from app.core.config import Settings
from app.serving.index import VectorIndex, check_consistency, snapshot_path
from app.storage.database import make_engine, session_factory
from app.storage.originals import OriginalStore
from app.storage.tables import AuditEntry, Embedding, Image, InboxItem, ModelVersion, Search
from tests.support.images import phantom_dicom, png_bytes
from tests.support.servers import Server, prepare_database, seeded_checkpoint, service_env

API = "/api/v1"
SIDE = 96  # pixels: small files, above the decoder's 64 px minimum
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_LISTED_PROBLEMS = 50
FIRST_ANSWER_WAIT_S = 120.0
CHECKPOINT_INTERVAL_S = "1"


def radiograph(number: int, seed: int, dicom: bool) -> bytes:
    """A small picture, different for every number: PNG, or DICOM with a pixel spacing."""
    rng = np.random.default_rng([seed, number])
    y, x = np.mgrid[0:SIDE, 0:SIDE] / SIDE
    waves = np.cos(rng.uniform(2, 12) * x + rng.uniform(0, 6)) * np.cos(rng.uniform(2, 12) * y)
    pixels = np.clip(0.5 + 0.3 * waves + rng.normal(0, 0.15, (SIDE, SIDE)), 0, 1)
    if not dicom:
        return png_bytes((pixels * 255).astype(np.uint8))
    return phantom_dicom(
        (pixels * 65535).astype(np.uint16),
        f"crash-{seed}-{number}",
        person_id=f"crash-{number}",
        age_years=50,
        side="L",
        site="crash",
        pixel_spacing_mm=0.2,
    )


@dataclass
class Call:
    """One upload or search as the client saw it."""

    kind: str  # "upload" or "search"
    cycle: int
    data: bytes
    person_id: int | None = None  # uploads
    status: int | None = None  # None: no answer (the connection broke)
    body: dict[str, Any] | None = None
    error: str = ""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def acknowledged(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass
class Tally:
    problems: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, counter: str, message: str) -> None:
        self.counts[counter] = self.counts.get(counter, 0) + 1
        self.problems.append(message)


class Harness:
    def __init__(
        self,
        database_url: str,
        workdir: Path,
        seed: int = 0,
        clients: int = 4,
        people: int = 3,
        dicom_share: float = 0.25,
        search_share: float = 0.3,
        kill_after_s: tuple[float, float] = (0.0, 1.5),
        final_restart: bool = True,
        checkpoint: Path | None = None,
        say: Callable[[str], None] = lambda _: None,
    ):
        self.database_url = database_url
        self.workdir = Path(workdir)
        self.seed = seed
        self.clients = clients
        self.people_count = people
        self.dicom_share = dicom_share
        self.search_share = search_share
        self.kill_after_s = kill_after_s
        self.final_restart = final_restart
        self.say = say
        self.rng = random.Random(seed)
        self.checkpoint = checkpoint or seeded_checkpoint(self.workdir / "checkpoint.pt")
        self.data_dir = self.workdir / "data"
        self.originals = self.data_dir / "originals"
        admin, examiner = prepare_database(database_url)
        env = service_env(self.data_dir, database_url, self.checkpoint)
        env["RADMATCH_AUDIT_CHECKPOINT_INTERVAL_S"] = CHECKPOINT_INTERVAL_S
        self.server = Server(
            env=env,
            log=self.workdir / "server.log",
            admin_key=admin,
            examiner_key=examiner,
        )
        self.engine = make_engine(database_url)
        self.sessions = session_factory(self.engine)
        self.calls: list[Call] = []
        self.tally = Tally()
        self.people: list[int] = []
        self.start_seconds: list[float] = []
        self.start_cpu_seconds: list[float] = []
        self.interrupted_cycles = 0
        self.numbers = iter(range(10**9))
        self.numbers_lock = threading.Lock()
        self.checkpoints_checked = 0
        self.torn_checkpoint_lines = 0

    # --- the server ---------------------------------------------------------------------------

    def start(self) -> None:
        started = time.monotonic()
        self.server.start()
        self.start_seconds.append(time.monotonic() - started)
        self.start_cpu_seconds.append(process_cpu_seconds(self.server.process.pid))

    def kill(self) -> None:
        self.server.process.kill()
        self.server.process.wait()

    # --- the clients --------------------------------------------------------------------------

    def next_image(self, rng: random.Random) -> bytes:
        with self.numbers_lock:
            number = next(self.numbers)
        return radiograph(number, self.seed, rng.random() < self.dicom_share)

    def client(
        self,
        cycle: int,
        number: int,
        stop: threading.Event,
        answered: threading.Event,
        out: list[Call],
    ) -> None:
        rng = random.Random(f"{self.seed}-{cycle}-{number}")
        with self.server.examiner() as client:
            while not stop.is_set():
                if rng.random() < self.search_share:
                    earlier = [c for c in self.calls if c.kind == "upload" and c.acknowledged]
                    if earlier and rng.random() < 0.3:  # the same bytes as a gallery image
                        data = rng.choice(earlier).data
                    else:
                        data = self.next_image(rng)
                    call = Call("search", cycle, data)
                    request = ("POST", f"{API}/search", {"k": "3"})
                else:
                    call = Call("upload", cycle, self.next_image(rng), rng.choice(self.people))
                    request = ("POST", f"{API}/people/{call.person_id}/images", {})
                out.append(call)
                method, path, form = request
                try:
                    response = client.request(
                        method, path, files={"file": ("image", call.data)}, data=form
                    )
                except httpx.TransportError as error:
                    call.error = f"{type(error).__name__}: {error}"
                    return  # the server is gone
                call.status = response.status_code
                answered.set()
                try:
                    call.body = response.json()
                except ValueError:
                    call.error = response.text[:200]

    def cycle(self, number: int) -> None:
        stop, answered = threading.Event(), threading.Event()
        calls: list[Call] = []
        threads = [
            threading.Thread(
                target=self.client, args=(number, i, stop, answered, calls), daemon=True
            )
            for i in range(self.clients)
        ]
        delay = self.rng.uniform(*self.kill_after_s)
        for thread in threads:
            thread.start()
        # The first request after a start is slow (the model warms up): kill only once requests
        # flow, at a random moment after the first answer.
        answered.wait(timeout=FIRST_ANSWER_WAIT_S)
        time.sleep(delay)
        self.kill()
        stop.set()
        for thread in threads:
            thread.join()
        self.calls.extend(calls)
        if any(c.status is None for c in calls):
            self.interrupted_cycles += 1
        self.start()
        self.check_cycle(number, calls)

    # --- the checks ---------------------------------------------------------------------------

    def check_cycle(self, number: int, calls: list[Call]) -> None:
        self.check_ready(f"cycle {number}")
        with self.server.examiner() as client:
            for call in calls:
                if call.status is not None and call.status >= 500:
                    self.tally.add(
                        "server_errors",
                        f"cycle {number}: {call.kind} answered {call.status}: {call.body}",
                    )
                elif call.status is not None and not call.acknowledged:
                    self.tally.add(
                        "refusals",
                        f"cycle {number}: {call.kind} refused: {call.status} {call.body}",
                    )
                if call.kind == "upload":
                    self.check_upload(client, call)
                else:
                    self.check_search(client, call)
        self.check_store_and_rows(f"cycle {number}")
        self.check_audit(f"cycle {number}")

    def check_ready(self, when: str) -> None:
        response = httpx.get(f"{self.server.url}/readyz", timeout=60)
        checks = response.json().get("checks", {})
        if response.status_code != 200 or checks.get("index") != "ok":
            self.tally.add("inconsistencies", f"{when}: not ready: {response.text}")
            return
        with self.sessions() as session:
            live = session.scalar(
                select(func.count())
                .select_from(Embedding)
                .where(
                    Embedding.model_version_id == checks["model_version"],
                    Embedding.added_generation <= checks["index_generation"],
                    or_(
                        Embedding.removed_generation.is_(None),
                        Embedding.removed_generation > checks["index_generation"],
                    ),
                )
            )
        if live != checks["index_size"]:
            self.tally.add(
                "inconsistencies",
                f"{when}: the index holds {checks['index_size']} images, the database {live}",
            )

    def check_upload(self, client: httpx.Client, call: Call) -> None:
        with self.sessions() as session:
            image_id = session.scalar(
                select(Image.id).where(
                    Image.person_id == call.person_id,
                    Image.sha256 == call.sha256,
                    Image.deleted_at.is_(None),
                )
            )
        if call.acknowledged:
            acknowledged_id = (call.body or {}).get("id")
            if image_id is None or image_id != acknowledged_id:
                self.tally.add(
                    "uploads_lost",
                    f"cycle {call.cycle}: acknowledged image {acknowledged_id} "
                    f"(sha256 {call.sha256[:12]}) has no row (found {image_id})",
                )
                return
            problems = self.incomplete(client, call, image_id)
            for problem in problems:
                self.tally.add("uploads_lost", f"cycle {call.cycle}: image {image_id}: {problem}")
        elif image_id is not None:  # committed, then killed before the answer: allowed, complete
            self.tally.counts["unacknowledged_committed"] = (
                self.tally.counts.get("unacknowledged_committed", 0) + 1
            )
            for problem in self.incomplete(client, call, image_id):
                self.tally.add(
                    "orphan_rows",
                    f"cycle {call.cycle}: unacknowledged image {image_id} incomplete: {problem}",
                )

    def incomplete(self, client: httpx.Client, call: Call, image_id: int) -> list[str]:
        """What an image record lacks: its row over the API, its original, its embedding, its
        audit entry, and being found first by its own bytes."""
        problems = []
        response = client.get(f"{API}/images/{image_id}")
        if response.status_code != 200 or response.json().get("sha256") != call.sha256:
            problems.append(f"GET /images/{image_id} answered {response.status_code}")
        path = self.originals / call.sha256[:2] / call.sha256[2:4] / call.sha256
        if not path.is_file():
            problems.append("its original is not in the store")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != call.sha256:
            problems.append("its stored original differs from the bytes sent")
        with self.sessions() as session:
            active = session.scalar(select(ModelVersion.id).where(ModelVersion.active))
            embeddings = session.scalar(
                select(func.count())
                .select_from(Embedding)
                .where(
                    Embedding.image_id == image_id,
                    Embedding.model_version_id == active,
                    Embedding.removed_generation.is_(None),
                )
            )
            audited = session.scalar(
                select(
                    exists().where(
                        AuditEntry.action == "image.upload", AuditEntry.target_id == image_id
                    )
                )
            )
        if embeddings != 1:
            problems.append(f"{embeddings} live embeddings of the active model")
        if not audited:
            problems.append("no upload audit entry")
        found = client.post(f"{API}/search", files={"file": ("query", call.data)}, data={"k": "3"})
        if found.status_code != 200:
            problems.append(f"a search with its bytes answered {found.status_code}")
        else:
            candidates = found.json()["candidates"]
            first = candidates[0] if candidates else {}
            best = [m["image_id"] for m in first.get("images", [])[:1]]
            if first.get("person_id") != call.person_id or best != [image_id]:
                problems.append(
                    f"a search with its bytes ranks person {first.get('person_id')} "
                    f"(image {best}) first, not person {call.person_id}"
                )
            self.check_search_index(found.json())
        return problems

    def check_search_index(self, answer: dict[str, Any]) -> None:
        """The index that answered held exactly the embeddings live at its generation."""
        generation = answer["index_generation"]
        with self.sessions() as session:
            live = session.scalar(
                select(func.count())
                .select_from(Embedding)
                .where(
                    Embedding.model_version_id == answer["model_version"]["id"],
                    Embedding.added_generation <= generation,
                    or_(
                        Embedding.removed_generation.is_(None),
                        Embedding.removed_generation > generation,
                    ),
                )
            )
        if live != answer["index_size"]:
            self.tally.add(
                "inconsistencies",
                f"search {answer['search_id']}: index size {answer['index_size']} at generation "
                f"{generation}, the database has {live}",
            )

    def check_search(self, client: httpx.Client, call: Call) -> None:
        if not call.acknowledged:
            return  # a search killed in flight may or may not be stored; the row checks cover it
        search_id = call.body["search_id"]
        response = client.get(f"{API}/searches/{search_id}")
        query = client.get(f"{API}/searches/{search_id}/query")
        if response.status_code != 200 or response.json().get("query_sha256") != call.sha256:
            self.tally.add(
                "searches_lost", f"cycle {call.cycle}: search {search_id}: {response.status_code}"
            )
        elif query.status_code != 200 or hashlib.sha256(query.content).hexdigest() != call.sha256:
            self.tally.add(
                "searches_lost",
                f"cycle {call.cycle}: search {search_id}: its query answered {query.status_code}",
            )

    def check_store_and_rows(self, when: str) -> None:
        for counter, message in store_and_row_problems(self.sessions, self.originals):
            self.tally.add(counter, f"{when}: {message}")

    def check_audit(self, when: str) -> None:
        """`radmatch audit verify` as a library: the chain, the originals and the checkpoints
        (the file read first, as the command does)."""
        settings = Settings(data_dir=self.data_dir, database_url=self.database_url)
        checkpoints = read_checkpoint_file(self.data_dir / "audit" / "checkpoints.jsonl")
        check = checkpoint_check(checkpoints, existing_public_key(settings))
        result = verify(self.sessions, OriginalStore(self.originals), also=[check])
        for problem in result.problems:
            self.tally.add("audit_problems", f"{when}: audit verify: {problem.line()}")
        self.checkpoints_checked = result.checkpoints_checked
        self.torn_checkpoint_lines = len(checkpoints.torn)

    def check_snapshot(self) -> None:
        """After a graceful stop: the snapshot the server saved agrees with the database."""
        with self.sessions() as session:
            version = session.scalar(select(ModelVersion).where(ModelVersion.active))
            path = snapshot_path(self.data_dir / "index", version.id)
            index = VectorIndex.load(path, version.id, version.dimension)
            consistency = check_consistency(index, session)
        if not consistency.ok:
            self.tally.add("inconsistencies", f"the saved index disagrees: {consistency}")

    # --- the run ------------------------------------------------------------------------------

    def run(self, cycles: int) -> dict[str, Any]:
        began = time.monotonic()
        failure = ""
        try:
            self.start()
            with self.server.examiner() as client:
                for number in range(self.people_count):
                    response = client.post(
                        f"{API}/people", json={"external_ref": f"crash-{self.seed}-{number}"}
                    )
                    response.raise_for_status()
                    self.people.append(response.json()["id"])
            for number in range(1, cycles + 1):
                self.cycle(number)
                self.say(
                    f"cycle {number}/{cycles}: start {self.start_seconds[-1]:.1f} s, "
                    f"{sum(c.acknowledged for c in self.calls)} requests acknowledged, "
                    f"{len(self.tally.problems)} problems"
                )
            self.server.stop()  # graceful: the server saves its index snapshot
            self.check_snapshot()
            if self.final_restart:
                self.start()  # and starts from that snapshot
                self.check_ready("after a graceful restart")
            self.check_store_and_rows("at the end")
            self.check_audit("at the end")
            if not self.checkpoints_checked:
                self.tally.add("audit_problems", "the server signed no audit checkpoint")
        except AssertionError as error:  # Server.start: the server did not come back
            failure = str(error)[-2000:]
            self.tally.add("server_not_starting", f"the server did not start: {failure[-300:]}")
        finally:
            if self.server.process is not None and self.server.process.poll() is None:
                self.kill()
            self.engine.dispose()
        return self.summary(cycles, time.monotonic() - began)

    def summary(self, cycles: int, elapsed: float) -> dict[str, Any]:
        uploads = [c for c in self.calls if c.kind == "upload"]
        searches = [c for c in self.calls if c.kind == "search"]
        counts = self.tally.counts
        result = {
            "database": sa.make_url(self.database_url).get_backend_name(),
            "cycles": cycles,
            "seed": self.seed,
            "clients": self.clients,
            "kill_after_seconds": list(self.kill_after_s),
            "cycles_killed_with_requests_in_flight": self.interrupted_cycles,
            "uploads_attempted": len(uploads),
            "uploads_acknowledged": sum(c.acknowledged for c in uploads),
            "uploads_acknowledged_dicom": sum(
                c.acknowledged and (c.body or {}).get("format") == "dicom" for c in uploads
            ),
            # no answer: cut off in flight, or sent just after the kill
            "uploads_unanswered": sum(c.status is None for c in uploads),
            "uploads_unanswered_but_committed": counts.get("unacknowledged_committed", 0),
            "uploads_lost": counts.get("uploads_lost", 0),
            "searches_attempted": len(searches),
            "searches_acknowledged": sum(c.acknowledged for c in searches),
            "searches_lost": counts.get("searches_lost", 0),
            "orphan_files": counts.get("orphan_files", 0),
            "orphan_rows": counts.get("orphan_rows", 0),
            "inconsistencies": counts.get("inconsistencies", 0),
            "server_errors": counts.get("server_errors", 0),
            "refusals": counts.get("refusals", 0),
            "server_not_starting": counts.get("server_not_starting", 0),
            "audit_problems": counts.get("audit_problems", 0),
            "audit_checkpoints_checked": self.checkpoints_checked,
            "audit_checkpoint_torn_lines": self.torn_checkpoint_lines,
            "originals_settled_at_start": settled_at_start(self.server.log),
            "server_start_seconds": spread(self.start_seconds),
            "server_start_cpu_seconds": spread(self.start_cpu_seconds),
            "load_average": os.getloadavg()[0],
            "elapsed_seconds": round(elapsed, 1),
            "problems": self.tally.problems[:MAX_LISTED_PROBLEMS],
        }
        bad = (
            "uploads_lost",
            "searches_lost",
            "orphan_files",
            "orphan_rows",
            "inconsistencies",
            "server_errors",
            "refusals",
            "server_not_starting",
            "audit_problems",
        )
        result["ok"] = not any(result[name] for name in bad)
        return result


def store_and_row_problems(
    sessions: sessionmaker[Session], originals: Path
) -> list[tuple[str, str]]:
    """("orphan_files" or "orphan_rows", what) for every file in the originals store that no row
    needs (and every temporary file or unsettled marker), and every row that lacks what it needs:
    an image (not purged) its original, a live image a live embedding of the active model or its
    upload audit entry, a search its query original or its audit entry, an inbox item its original."""
    files: set[str] = set()
    strays: list[str] = []
    if originals.is_dir():
        for path in originals.rglob("*"):
            if not path.is_file():
                continue
            relative = path.relative_to(originals)
            name = path.name
            if SHA256.fullmatch(name) and relative == Path(name[:2], name[2:4], name):
                files.add(name)
            elif relative.parts[0] == ".pending":
                strays.append(f"unsettled marker {relative}")
            else:
                strays.append(f"stray file {relative}")  # a killed write's temporary, say
    with sessions() as session:
        active = session.scalar(select(ModelVersion.id).where(ModelVersion.active))
        kept = set(session.scalars(select(Image.sha256).where(Image.original_purged_at.is_(None))))
        queries = set(session.scalars(select(Search.query_sha256)))
        received = set(session.scalars(select(InboxItem.sha256)))
        embedded = select(Embedding.image_id).where(
            Embedding.model_version_id == active, Embedding.removed_generation.is_(None)
        )
        unembedded = session.scalars(
            select(Image.id).where(Image.deleted_at.is_(None), Image.id.not_in(embedded))
        ).all()
        unaudited_images = session.scalars(
            select(Image.id).where(
                ~exists().where(
                    and_(AuditEntry.action == "image.upload", AuditEntry.target_id == Image.id)
                )
            )
        ).all()
        unaudited_searches = session.scalars(
            select(Search.id).where(
                ~exists().where(
                    and_(AuditEntry.action == "search", AuditEntry.target_id == Search.id)
                )
            )
        ).all()
    problems = [
        ("orphan_files", f"original {name[:12]} is needed by no row")
        for name in sorted(files - kept - queries - received)
    ]
    problems += [("orphan_files", stray) for stray in strays]
    problems += [
        ("orphan_rows", f"an image's original {sha[:12]} is missing")
        for sha in sorted(kept - files)
    ]
    problems += [
        ("orphan_rows", f"an inbox item's original {sha[:12]} is missing")
        for sha in sorted(received - files)
    ]
    problems += [
        ("orphan_rows", f"a search's query {sha[:12]} is missing")
        for sha in sorted(queries - files)
    ]
    problems += [("orphan_rows", f"image {i} has no live embedding") for i in unembedded]
    problems += [("orphan_rows", f"image {i} has no upload audit entry") for i in unaudited_images]
    problems += [("orphan_rows", f"search {i} has no audit entry") for i in unaudited_searches]
    return problems


def run(
    database_url: str, workdir: Path, cycles: int, seed: int = 0, **options: Any
) -> dict[str, Any]:
    """Run the harness on a database at `database_url` (migrated here) with its files in
    `workdir`; the summary."""
    return Harness(database_url, workdir, seed=seed, **options).run(cycles)


def process_cpu_seconds(pid: int) -> float:
    """User and system CPU seconds the process has used so far (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def spread(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "min": round(min(values), 2),
        "median": round(statistics.median(values), 2),
        "max": round(max(values), 2),
    }


def settled_at_start(log: Path) -> int:
    """How many originals of interrupted writes the servers removed (from their log)."""
    if not log.exists():
        return 0
    pattern = re.compile(r"removed (\d+) originals that interrupted writes left behind")
    return sum(int(m.group(1)) for m in pattern.finditer(log.read_text(errors="replace")))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("RADMATCH_TEST_POSTGRES_URL", DEFAULT_POSTGRES),
        help="a PostgreSQL server to create a scratch database on (dropped afterwards)",
    )
    parser.add_argument("--cycles", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workdir", type=Path, help="kept; default: a temporary folder")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="radmatch-crash-"))
    admin_engine = database = None
    if args.database == "sqlite":
        database_url = f"sqlite:///{workdir / 'radmatch.db'}"
    else:
        admin = sa.make_url(args.postgres_url)
        database = f"radmatch_crash_{uuid.uuid4().hex[:12]}"
        admin_engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
        with admin_engine.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{database}"'))
        database_url = admin.set(database=database).render_as_string(hide_password=False)
    try:
        result = run(
            database_url,
            workdir,
            args.cycles,
            seed=args.seed,
            clients=args.clients,
            say=lambda line: print(line, file=sys.stderr, flush=True),
        )
    finally:
        if admin_engine is not None:
            with admin_engine.connect() as connection:
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            admin_engine.dispose()
    result["workdir"] = str(workdir)
    if args.workdir is None and result["ok"]:
        shutil.rmtree(workdir, ignore_errors=True)
        result["workdir"] = None
    text = json.dumps(result, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
