"""Faults a real server meets, and what it must do about them:

- the case database going away mid-request (a TCP proxy between the server and PostgreSQL drops
  every connection and refuses new ones, then comes back): 503 with a clear message while it is
  away, /readyz not ready, and by itself, without a restart, working again when it returns, with
  the index caught up and nothing half-written;
- an originals store that cannot write (its directory is a regular file; a full disk, on a small
  tmpfs where mounting one is allowed): 507 saying the original could not be stored, and no
  partial state: no image row, no embedding, no file, no temporary file;
- a SQLite database whose disk fills up (a small tmpfs too): writes answer 503, reads go on, and
  it recovers when space is freed;
- a damaged or missing index snapshot, through a real `radmatch serve` start: rebuilt from the
  database. (tests/app/test_index.py covers damaged snapshots with the service opened in-process.)

Why not SQLite's directory vanishing: the server holds the database file open, so when its
directory is renamed or lazily unmounted, the open connections carry on with the old file while
new ones fail to open it; that is a split, not an outage, and no server could answer it well. What
really happens to a SQLite database's volume is that it fills up or fails, which the server meets
as the same OperationalError as a lost PostgreSQL connection: the full-disk test covers it.

Running as root, chmod does not stop writes, so "not writable" is a regular file in the way."""

from __future__ import annotations

import contextlib
import hashlib
import io
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image as PILImage
from sqlalchemy import func, select

from app.core.config import Settings
from app.serving.index import VectorIndex, snapshot_path
from app.serving.service import Service
from app.storage.database import make_engine, session_factory
from app.storage.tables import Embedding, Image
from tests.support import in_process
from tests.support.in_process import ingest
from tests.support.servers import Server, free_port, load_bench, prepare_database, service_env

API = "/api/v1"
UNAVAILABLE = "the case database is unavailable"
NOT_STORED = "the original could not be stored"
RECOVERY_DEADLINE_S = 60.0  # how long to wait for the server to notice a recovery


harness = load_bench("crash_harness")


def png(seed: int, side: int = 128) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(side, side), dtype=np.uint8)
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def upload(client: httpx.Client, person_id: int, data: bytes) -> httpx.Response:
    return client.post(f"{API}/people/{person_id}/images", files={"file": ("x.png", data)})


def search(client: httpx.Client, data: bytes) -> httpx.Response:
    return client.post(f"{API}/search", files={"file": ("q.png", data)}, data={"k": "3"})


def new_person(client: httpx.Client, ref: str) -> int:
    response = client.post(f"{API}/people", json={"external_ref": ref})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def first_match(response: httpx.Response) -> tuple[int, int]:
    """The first candidate's person and best image."""
    assert response.status_code == 200, response.text
    first = response.json()["candidates"][0]
    return first["person_id"], first["images"][0]["image_id"]


def wait_for(what: str, check: Callable[[], Any]) -> Any:
    """Poll until check() returns something truthy: recovery is asynchronous. Fails with the last
    answer after RECOVERY_DEADLINE_S (a bound on waiting, not a timing requirement)."""
    deadline = time.monotonic() + RECOVERY_DEADLINE_S
    while True:
        answer = check()
        if answer:
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still not so after {RECOVERY_DEADLINE_S} s: {answer!r}")
        time.sleep(0.2)


def make_server(
    tmp_path: Path,
    database_url: str,
    checkpoint: Path,
    served_url: str | None = None,
    data_dir: Path | None = None,
) -> Server:
    """A server (not started) on a migrated database; `served_url` is what the server itself is
    given (a proxy in front of the database, say), `data_dir` where its files go."""
    admin, examiner = prepare_database(database_url)
    return Server(
        env=service_env(data_dir or tmp_path / "data", served_url or database_url, checkpoint),
        log=tmp_path / "server.log",
        admin_key=admin,
        examiner_key=examiner,
    )


def leftovers(database_url: str, originals: Path) -> list[tuple[str, str]]:
    engine = make_engine(database_url)
    try:
        return harness.store_and_row_problems(session_factory(engine), originals)
    finally:
        engine.dispose()


# --- the database going away ----------------------------------------------------------------------


class DatabaseProxy:
    """A TCP proxy in front of the database. cut() drops every connection and stops listening, so
    new connections are refused, as when the database host goes away; restore() listens again on
    the same port."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.port = free_port()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        with self._lock:
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            connections, self._connections = self._connections, set()
        for sock in [listener, *connections]:
            _close(sock)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # cut
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                _close(client)
                continue
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    _close(client)
                    _close(upstream)
                    continue
                self._connections.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            _close(source)
            _close(sink)
            with self._lock:
                self._connections.discard(source)
                self._connections.discard(sink)


def _close(sock: socket.socket | None) -> None:
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in accept() or recv()
    sock.close()


class Uploader(threading.Thread):
    """Uploads new images one after another until stopped; records each answer."""

    def __init__(self, server: Server, person_id: int, first_seed: int):
        super().__init__(daemon=True)
        self.server, self.person_id, self.seed = server, person_id, first_seed
        self.answers: list[tuple[bytes, int, dict]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with self.server.examiner() as client:
            while not self.stop.is_set():
                data = png(self.seed)
                self.seed += 1
                response = upload(client, self.person_id, data)
                self.answers.append((data, response.status_code, response.json()))

    def statuses(self) -> set[int]:
        return {status for _, status, _ in self.answers}


def test_database_going_away_is_a_503_and_the_service_recovers_by_itself(
    postgres_url: str, checkpoint: Path, tmp_path: Path
) -> None:
    url = sa.make_url(postgres_url)
    proxy = DatabaseProxy(url.host or "127.0.0.1", url.port or 5432)
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    server = make_server(tmp_path, postgres_url, checkpoint, served_url=proxied).start()
    originals = tmp_path / "data" / "originals"
    try:
        with server.examiner() as client:
            person = new_person(client, "database-away")
            before = png(1)
            assert upload(client, person, before).status_code == 201

            # Uploads in flight when the database goes: each gets its image or a 503.
            uploaders = [Uploader(server, person, 1000 * (i + 1)) for i in range(3)]
            for uploader in uploaders:
                uploader.start()
            wait_for("uploads under way", lambda: all(u.answers for u in uploaders))
            proxy.cut()
            wait_for("every uploader refused", lambda: all(503 in u.statuses() for u in uploaders))
            for uploader in uploaders:
                uploader.stop.set()
            for uploader in uploaders:
                uploader.join()
            answers = [answer for uploader in uploaders for answer in uploader.answers]
            assert {status for _, status, _ in answers} <= {201, 503}, answers
            for _, status, body in answers:
                if status == 503:
                    assert UNAVAILABLE in body["detail"], body

            # While it is away: every request that needs it is a clear 503, readiness says so.
            away = png(2)
            for response in (
                upload(client, person, away),
                search(client, before),
                client.get(f"{API}/people"),
                client.get(f"{API}/people/{person}"),
            ):
                assert response.status_code == 503, response.text
                assert UNAVAILABLE in response.json()["detail"]
            ready = client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["ready"] is False, ready.text
            assert ready.json()["checks"]["database"] != "ok"
            assert client.get("/healthz").status_code == 200  # alive: no reason to restart it

            # Meanwhile another process, still connected, commits an image.
            elsewhere = png(3)
            settings = Settings(
                data_dir=tmp_path / "data", database_url=postgres_url, checkpoint=checkpoint
            )
            loader = Service.open(settings, with_index=False)
            try:
                committed_elsewhere = ingest(loader, person, elsewhere)
            finally:
                loader.close()

            proxy.restore()
            wait_for("ready again", lambda: client.get("/readyz").status_code == 200)
            # The index catches up with what was committed while the server could not see it.
            wait_for(
                "the image committed elsewhere is found",
                lambda: first_match(search(client, elsewhere)) == (person, committed_elsewhere.id),
            )
            after = upload(client, person, away)
            assert after.status_code == 201, after.text
            assert first_match(search(client, away)) == (person, after.json()["id"])
            for data, status, body in answers:
                if status == 201:
                    assert first_match(search(client, data)) == (person, body["id"])
            ready = client.get("/readyz").json()
            assert ready["checks"]["index"] == "ok", ready

        # Nothing half-written: uploads cut off left no file, no row without its parts (the
        # originals of requests that failed while the database could not say are settled now).
        assert settled(postgres_url, originals) == []
        engine = make_engine(postgres_url)
        with session_factory(engine)() as session:
            stored = set(session.scalars(select(Image.sha256)))
        engine.dispose()
        for data, status, _ in answers:
            if status == 201:
                assert sha256(data) in stored
    finally:
        server.stop()
        proxy.cut()


# --- full or unwritable disks ---------------------------------------------------------------------


@contextmanager
def small_tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A size-limited tmpfs mounted at `where`, or a skip saying why there cannot be one."""
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(
            "a full disk needs a small tmpfs, and this environment may not mount one "
            f"(mount: {mounted.stderr.strip() or mounted.returncode})"
        )
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)


def fill(folder: Path, leave: int = 0) -> Path:
    """Fill the filesystem of `folder` with one file, leaving about `leave` bytes free."""
    filler = folder / "filler"
    # Unbuffered: a buffered file would keep the chunk that did not fit, and fail again on close.
    with open(filler, "wb", buffering=0) as file:
        chunk = b"\0" * 65536
        try:
            while True:
                file.write(chunk)
        except OSError:
            pass
    size = filler.stat().st_size
    with open(filler, "r+b") as file:
        file.truncate(max(0, size - leave))
    return filler


def image_rows(database_url: str) -> tuple[int, int]:
    engine = make_engine(database_url)
    with session_factory(engine)() as session:
        counts = (
            session.scalar(select(func.count()).select_from(Image)),
            session.scalar(select(func.count()).select_from(Embedding)),
        )
    engine.dispose()
    return counts


def listing(folder: Path) -> list[Path]:
    """The files under the folder (an empty shard directory is no trace)."""
    if not folder.is_dir():
        return []
    return sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())


def assert_refused_without_a_trace(
    client: httpx.Client, person: int, data: bytes, database_url: str, originals: Path
) -> None:
    """The upload, and a search with the same bytes, are refused with 507 and leave no row, no
    embedding and no file (no original, no temporary file, no marker)."""
    rows, files = image_rows(database_url), listing(originals)
    for response in (upload(client, person, data), search(client, data)):
        assert response.status_code == 507, response.text
        detail = response.json()["detail"]
        assert NOT_STORED in detail, detail
        assert str(originals.parent) not in detail, detail  # no server paths
    assert image_rows(database_url) == rows
    assert listing(originals) == files


def settled(database_url: str, originals: Path) -> list[tuple[str, str]]:
    """The leftovers once the server has settled what failed requests left (asynchronous when
    the database could not say at the time); [] when there are none."""
    deadline = time.monotonic() + RECOVERY_DEADLINE_S
    while (found := leftovers(database_url, originals)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return found


def test_an_originals_store_that_cannot_write_is_a_507_and_leaves_nothing(
    checkpoint: Path, tmp_path: Path
) -> None:
    """The originals directory is a regular file: no original can be written under it."""
    database_url = f"sqlite:///{tmp_path / 'radmatch.db'}"
    server = make_server(tmp_path, database_url, checkpoint).start()
    originals = tmp_path / "data" / "originals"
    try:
        with server.examiner() as client:
            person = new_person(client, "unwritable-store")
            stored = png(1)
            assert upload(client, person, stored).status_code == 201
            away = tmp_path / "originals-away"
            shutil.move(originals, away)
            originals.write_bytes(b"not a directory\n")
            assert_refused_without_a_trace(client, person, png(2), database_url, away)
            assert originals.read_bytes() == b"not a directory\n"
            assert image_rows(database_url) == (1, 1)

            originals.unlink()
            shutil.move(tmp_path / "originals-away", originals)
            response = upload(client, person, png(2))  # no restart needed
            assert response.status_code == 201, response.text
            assert first_match(search(client, png(2))) == (person, response.json()["id"])
        assert settled(database_url, originals) == []
    finally:
        server.stop()


def test_full_disks_are_refused_clearly_and_leave_nothing(checkpoint: Path, tmp_path: Path) -> None:
    """The data directory on one small tmpfs, the SQLite database on another. The originals' disk
    full but for two pages: the upload's write fails part way, 507, and its temporary file goes
    too. The database's disk full: writes get 503, reads go on. Both recover once space is freed,
    without a restart."""
    with (
        small_tmpfs(tmp_path / "files", "2m") as files_disk,
        small_tmpfs(tmp_path / "database", "4m") as database_disk,
    ):
        database_url = f"sqlite:///{database_disk / 'radmatch.db'}"
        data_dir = files_disk / "data"
        originals = data_dir / "originals"
        server = make_server(tmp_path, database_url, checkpoint, data_dir=data_dir).start()
        try:
            with server.examiner() as client:
                person = new_person(client, "full-disks")
                assert upload(client, person, png(1)).status_code == 201

                filler = fill(files_disk, leave=8192)
                large = png(2, side=256)  # about 65 KB: more than is left
                assert_refused_without_a_trace(client, person, large, database_url, originals)
                filler.unlink()
                response = upload(client, person, large)
                assert response.status_code == 201, response.text
                assert first_match(search(client, large)) == (person, response.json()["id"])

                filler = fill(database_disk)
                # SQLite reuses its write-ahead log's space first: write until it needs more.
                statuses = []
                for seed in range(100, 400):
                    response = upload(client, person, png(seed))
                    statuses.append(response.status_code)
                    assert response.status_code in (201, 503), response.text
                    if response.status_code == 503:
                        assert UNAVAILABLE in response.json()["detail"]
                        break
                assert statuses[-1] == 503, f"the full disk never stopped a write: {statuses}"
                assert client.get(f"{API}/people/{person}").status_code == 200  # reads go on
                filler.unlink()
                response = wait_for(
                    "writes again",
                    lambda: (r := upload(client, person, png(9999))).is_success and r,
                )
                assert first_match(search(client, png(9999))) == (person, response.json()["id"])
            assert settled(database_url, originals) == []
        finally:
            server.stop()


# --- the index snapshot ---------------------------------------------------------------------------


def test_a_damaged_or_missing_snapshot_is_rebuilt_when_the_server_starts(
    checkpoint: Path, tmp_path: Path
) -> None:
    database_url = f"sqlite:///{tmp_path / 'radmatch.db'}"
    server = make_server(tmp_path, database_url, checkpoint)
    # The gallery and its snapshot, made in-process (one server start fewer).
    service = Service.open(
        Settings(data_dir=tmp_path / "data", database_url=database_url, checkpoint=checkpoint)
    )
    try:
        person_id = in_process.new_person(service, "snapshot")
        images = {seed: ingest(service, person_id, png(seed)).id for seed in range(4)}
        version = service.matcher.serving.version
    finally:
        service.close()  # saves the snapshot
    snapshot = snapshot_path(tmp_path / "data" / "index", version.id)
    assert VectorIndex.load(snapshot, version.id, version.dimension).size == 4

    for damage in ("damaged", "missing"):
        if damage == "damaged":
            snapshot.write_bytes(snapshot.read_bytes()[:100])
        else:
            snapshot.unlink()
        server.start()
        try:
            with server.examiner() as client:
                ready = client.get("/readyz")
                assert ready.status_code == 200, ready.text
                assert ready.json()["checks"]["index_size"] == 4, ready.text
                for seed, image_id in images.items():
                    assert first_match(search(client, png(seed))) == (person_id, image_id)
        finally:
            server.stop()  # graceful: saves a good snapshot again
        assert VectorIndex.load(snapshot, version.id, version.dimension).size == 4
    log = server.log.read_text()
    assert "rebuilding the index from the database" in log and "unreadable index snapshot" in log
