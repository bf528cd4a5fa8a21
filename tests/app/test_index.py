"""app/serving/index.py against real FAISS and a real database (SQLite and PostgreSQL): search order and
filtering, catching up with committed generations, consistency checks, snapshots, and the service
rebuilding its index when the snapshot on disk is unusable."""

from __future__ import annotations

import io
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import faiss
import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings
from app.serving.index import (
    SnapshotError,
    VectorIndex,
    bump_generation,
    catch_up,
    check_consistency,
    current_generation,
    snapshot_path,
)
from app.serving.index_options import IndexOptions
from app.serving.service import Service
from app.storage.database import make_engine, session_factory, upgrade
from app.storage.tables import Embedding, Image, ModelVersion, Person
from model.threads import apply_threads
from tests.support.in_process import delete, ingest, new_person

DIM = 128  # the `checkpoint` fixture's embedding size


def unit_vectors(count: int, seed: int, dimension: int = DIM) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count, dimension)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


# --- search, in memory ----------------------------------------------------------------------------


def small_index() -> VectorIndex:
    """Four ids whose cosine similarities to e1 are known exactly: 1, 0.707, 0, -1."""
    e1, e2 = np.eye(4, dtype=np.float32)[:2]
    vectors = np.stack([e1, e2, (e1 + e2) / np.sqrt(2), -e1])
    index = VectorIndex(model_version_id=1, dimension=4)
    index.apply(7, [10, 20, 30, 40], vectors, [])
    return index


def test_search_returns_ids_best_first_with_cosine_similarities() -> None:
    """Ranking is the service's answer: best first, scores that are cosines."""
    index = small_index()
    query = np.array([1, 0, 0, 0], dtype=np.float32)
    similarities, ids, generation, size = index.search(query, k=10)
    assert ids.tolist() == [10, 30, 20, 40]  # k is capped at the index's size: no padding
    np.testing.assert_allclose(similarities, [1, np.sqrt(0.5), 0, -1], atol=1e-6)
    assert (generation, size) == (7, 4)
    similarities, ids, _, _ = index.search(query, k=2)
    assert ids.tolist() == [10, 30]


def test_search_agrees_with_brute_force_cosine() -> None:
    """At the real dimension, on random unit vectors, FAISS ranks as numpy does."""
    vectors = unit_vectors(50, seed=1)
    ids = np.arange(100, 150)
    index = VectorIndex(model_version_id=1, dimension=DIM)
    index.apply(1, ids, vectors, [])
    query = unit_vectors(1, seed=2)[0]
    similarities, found, _, _ = index.search(query, k=5)
    cosines = vectors @ query
    best = np.argsort(-cosines)[:5]
    assert found.tolist() == ids[best].tolist()
    np.testing.assert_allclose(similarities, cosines[best], atol=1e-5)


def test_allowed_ids_restrict_the_results() -> None:
    """Filtered searches (by sex, age, ...) must never show an image outside the filter."""
    index = small_index()
    query = np.array([1, 0, 0, 0], dtype=np.float32)
    similarities, ids, _, _ = index.search(query, k=4, allowed_ids=np.array([40, 20, 99]))
    assert ids.tolist() == [20, 40, -1, -1]  # 99 is not in the index; -1 pads a short answer
    np.testing.assert_allclose(similarities[:2], [0, -1], atol=1e-6)
    _, ids, _, _ = index.search(query, k=4, allowed_ids=np.array([], dtype=np.int64))
    assert (ids == -1).all()


def test_faiss_runs_with_the_chosen_threads_in_whichever_thread_calls_it() -> None:
    """OpenMP keeps its thread count per thread: what apply_threads set where the service started
    must hold in the threads that serve requests, which build with every chosen thread and search
    one query with one (model/threads.py)."""
    seen: dict[str, int] = {}

    def serve_a_request() -> None:
        index = VectorIndex.build(1, DIM, 1, np.arange(10), unit_vectors(10, 3), IndexOptions())
        seen["build"] = faiss.omp_get_max_threads()
        index.search(unit_vectors(1, 4)[0], k=3)
        seen["search"] = faiss.omp_get_max_threads()

    try:
        for chosen in (2, 1):
            apply_threads(chosen)
            request = threading.Thread(target=serve_a_request)
            request.start()
            request.join()
            assert (seen["build"], seen["search"]) == (chosen, 1)
    finally:
        apply_threads()


# --- against the database -------------------------------------------------------------------------


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    upgrade(database_url)
    engine = make_engine(database_url)
    yield session_factory(engine)
    engine.dispose()


@pytest.fixture
def version_id(sessions: sessionmaker[Session]) -> int:
    return add_version(sessions)


@pytest.fixture
def person_id(sessions: sessionmaker[Session]) -> int:
    with sessions.begin() as session:
        person = Person(external_ref=f"person-{uuid.uuid4().hex[:8]}")
        session.add(person)
        session.flush()
        return person.id


def add_version(sessions: sessionmaker[Session], dimension: int = DIM) -> int:
    with sessions.begin() as session:
        version = ModelVersion(
            sha256=uuid.uuid4().hex * 2,
            checkpoint_path="/nowhere/checkpoint.pt",
            dimension=dimension,
            metrics={},
            info={},
        )
        session.add(version)
        session.flush()
        return version.id


def add_embedding(
    sessions: sessionmaker[Session], version_id: int, person_id: int, vector: np.ndarray
) -> int:
    """An image and its embedding committed as an upload commits them; returns the image id."""
    with sessions.begin() as session:
        image = Image(
            person_id=person_id,
            sha256=uuid.uuid4().hex * 2,
            size_bytes=1,
            format="png",
            image_metadata={},
        )
        session.add(image)
        session.flush()
        session.add(
            Embedding(
                image_id=image.id,
                model_version_id=version_id,
                vector=vector.astype(np.float32).tobytes(),
                added_generation=bump_generation(session, version_id),
            )
        )
        return image.id


def remove_embedding(sessions: sessionmaker[Session], version_id: int, image_id: int) -> None:
    """A deletion as the service commits it: removed at the version's next generation."""
    with sessions.begin() as session:
        embedding = session.get(Embedding, (image_id, version_id))
        embedding.removed_generation = bump_generation(session, version_id)


def index_ids(index: VectorIndex) -> list[int]:
    return sorted(index.ids().tolist())


def nearest(index: VectorIndex, vector: np.ndarray) -> tuple[int, float]:
    similarities, ids, _, _ = index.search(vector, k=1)
    return int(ids[0]), float(similarities[0])


def test_catch_up_applies_adds_and_removals_in_generation_order(
    sessions: sessionmaker[Session], version_id: int, person_id: int
) -> None:
    """The index follows the database's committed history, whatever generation it starts from."""
    vectors = unit_vectors(4, seed=3)
    a, b = (add_embedding(sessions, version_id, person_id, v) for v in vectors[:2])
    index = VectorIndex(version_id, DIM)
    with sessions() as session:
        assert catch_up(index, session) == 2
        assert index.generation == current_generation(session, version_id) == 2
    assert index_ids(index) == sorted([a, b])

    remove_embedding(sessions, version_id, a)
    c = add_embedding(sessions, version_id, person_id, vectors[2])
    with sessions() as session:
        assert catch_up(index, session) == 2
    assert index.generation == 4
    assert index_ids(index) == sorted([b, c])
    for image_id, vector in ((b, vectors[1]), (c, vectors[2])):
        found, similarity = nearest(index, vector)
        assert found == image_id
        assert similarity == pytest.approx(1, abs=1e-5)

    # A fresh index replays the whole history to the same state.
    fresh = VectorIndex(version_id, DIM)
    with sessions() as session:
        assert catch_up(fresh, session) == 2
    assert index_ids(fresh) == index_ids(index)
    assert fresh.generation == index.generation


def test_catch_up_is_idempotent(
    sessions: sessionmaker[Session], version_id: int, person_id: int
) -> None:
    """The sync thread calls it again and again: a second call must not add duplicates."""
    for vector in unit_vectors(3, seed=4):
        add_embedding(sessions, version_id, person_id, vector)
    index = VectorIndex(version_id, DIM)
    with sessions() as session:
        assert catch_up(index, session) == 3
        before = (index_ids(index), index.generation, index.size)
        assert catch_up(index, session) == 0
    assert (index_ids(index), index.generation, index.size) == before
    assert index.size == 3


def test_an_embedding_added_and_removed_after_the_index_is_never_added(
    sessions: sessionmaker[Session], version_id: int, person_id: int
) -> None:
    """A deleted image must never become searchable, even for an instant."""
    vectors = unit_vectors(2, seed=5)
    kept = add_embedding(sessions, version_id, person_id, vectors[0])
    index = VectorIndex(version_id, DIM)
    with sessions() as session:
        catch_up(index, session)
    gone = add_embedding(sessions, version_id, person_id, vectors[1])
    remove_embedding(sessions, version_id, gone)
    with sessions() as session:
        assert catch_up(index, session) == 0
        assert check_consistency(index, session).ok
    assert index_ids(index) == [kept]
    assert index.generation == 3
    assert nearest(index, vectors[1])[0] == kept


def test_catch_up_ignores_other_model_versions(
    sessions: sessionmaker[Session], version_id: int, person_id: int
) -> None:
    """Embeddings of another model live in another space: they must not enter this index."""
    other = add_version(sessions, dimension=DIM)
    mine = add_embedding(sessions, version_id, person_id, unit_vectors(1, seed=6)[0])
    add_embedding(sessions, other, person_id, unit_vectors(1, seed=7)[0])
    index = VectorIndex(version_id, DIM)
    with sessions() as session:
        assert catch_up(index, session) == 1
    assert index_ids(index) == [mine]


def test_catch_up_refuses_an_index_ahead_of_the_database(
    sessions: sessionmaker[Session], version_id: int, person_id: int
) -> None:
    """A snapshot from another database must be rebuilt, not trusted."""
    add_embedding(sessions, version_id, person_id, unit_vectors(1, seed=8)[0])
    index = VectorIndex(version_id, DIM, generation=5)
    with sessions() as session, pytest.raises(SnapshotError, match="ahead"):
        catch_up(index, session)


def test_check_consistency_reports_ok_missing_and_unexpected(
    sessions: sessionmaker[Session], version_id: int, person_id: int
) -> None:
    """/readyz and start-up rely on it to notice an index that disagrees with the database."""
    vectors = unit_vectors(4, seed=9)
    ids = [add_embedding(sessions, version_id, person_id, v) for v in vectors[:3]]
    index = VectorIndex(version_id, DIM)
    with sessions() as session:
        catch_up(index, session)
        consistency = check_consistency(index, session)
    assert consistency.ok
    assert (consistency.index_size, consistency.database_size) == (3, 3)
    assert (consistency.missing, consistency.unexpected, consistency.generation) == (0, 0, 3)

    # An index that claims the current generation but lacks the embeddings.
    lagging = VectorIndex(version_id, DIM, generation=index.generation)
    with sessions() as session:
        consistency = check_consistency(lagging, session)
    assert not consistency.ok
    assert (consistency.missing, consistency.unexpected) == (3, 0)
    assert (consistency.index_size, consistency.database_size) == (0, 3)

    index.apply(index.generation, [], None, [ids[0]])
    with sessions() as session:
        consistency = check_consistency(index, session)
    assert not consistency.ok
    assert (consistency.missing, consistency.unexpected) == (1, 0)

    index.apply(index.generation, [ids[0], max(ids) + 1000], vectors[[0, 3]], [])
    with sessions() as session:
        consistency = check_consistency(index, session)
    assert not consistency.ok
    assert (consistency.missing, consistency.unexpected) == (0, 1)
    assert (consistency.index_size, consistency.database_size) == (4, 3)


def test_check_consistency_judges_an_index_at_its_own_generation(
    sessions: sessionmaker[Session], version_id: int, person_id: int
) -> None:
    """An index that is merely behind is not broken: catching up fixes it, so it is not rebuilt."""
    vectors = unit_vectors(2, seed=10)
    first = add_embedding(sessions, version_id, person_id, vectors[0])
    index = VectorIndex(version_id, DIM)
    with sessions() as session:
        catch_up(index, session)
    add_embedding(sessions, version_id, person_id, vectors[1])
    remove_embedding(sessions, version_id, first)
    with sessions() as session:
        consistency = check_consistency(index, session)
    assert consistency.ok
    assert (consistency.generation, consistency.database_size) == (1, 1)
    assert index_ids(index) == [first]


def test_snapshot_round_trip_keeps_ids_vectors_and_generation(
    sessions: sessionmaker[Session], version_id: int, person_id: int, tmp_path: Path
) -> None:
    """Start-up trusts the snapshot plus catch-up; a lossy snapshot would silently drop images."""
    vectors = unit_vectors(5, seed=11)
    ids = [add_embedding(sessions, version_id, person_id, v) for v in vectors]
    remove_embedding(sessions, version_id, ids[1])
    index = VectorIndex(version_id, DIM)
    with sessions() as session:
        catch_up(index, session)
    path = snapshot_path(tmp_path / "index", version_id)
    index.save(path)

    loaded = VectorIndex.load(path, version_id, DIM)
    assert (loaded.model_version_id, loaded.dimension) == (version_id, DIM)
    assert loaded.generation == index.generation == 6
    assert index_ids(loaded) == index_ids(index) == sorted(ids[:1] + ids[2:])
    for image_id, vector in zip(ids, vectors, strict=True):
        if image_id == ids[1]:
            continue
        found, similarity = nearest(loaded, vector)
        assert found == image_id
        assert similarity == pytest.approx(1, abs=1e-5)
    query = unit_vectors(1, seed=12)[0]
    for got, want in zip(loaded.search(query, 4), index.search(query, 4), strict=True):
        np.testing.assert_array_equal(got, want)
    with sessions() as session:
        assert catch_up(loaded, session) == 0
        assert check_consistency(loaded, session).ok


def saved_snapshot(tmp_path: Path, version_id: int = 1) -> Path:
    index = VectorIndex(version_id, DIM)
    index.apply(3, [1, 2], unit_vectors(2, seed=13), [])
    path = snapshot_path(tmp_path, version_id)
    index.save(path)
    return path


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def garbage(data: bytes) -> bytes:
    return b"not an index snapshot\n" * 20


def empty(data: bytes) -> bytes:
    return b""


def bit_rot(data: bytes) -> bytes:
    """The zip structure intact, the serialized FAISS index inside it damaged."""
    middle = len(data) // 2
    return data[:middle] + bytes(b ^ 0xFF for b in data[middle : middle + 64]) + data[middle + 64 :]


@pytest.mark.parametrize("damage", [truncated, garbage, empty, bit_rot])
def test_load_refuses_a_damaged_snapshot(tmp_path: Path, damage) -> None:
    """Start-up rebuilds on SnapshotError only, so every kind of damage must raise it."""
    path = saved_snapshot(tmp_path)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(SnapshotError):
        VectorIndex.load(path, 1, DIM)


def test_load_refuses_a_missing_snapshot(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError):
        VectorIndex.load(tmp_path / "model-1.npz", 1, DIM)


def test_load_refuses_another_model_versions_snapshot(tmp_path: Path) -> None:
    """Vectors of another model are meaningless to this one's queries."""
    path = saved_snapshot(tmp_path, version_id=1)
    assert VectorIndex.load(path, 1, DIM).size == 2
    with pytest.raises(SnapshotError, match="made for"):
        VectorIndex.load(path, 2, DIM)
    with pytest.raises(SnapshotError, match="made for"):
        VectorIndex.load(path, 1, 64)


# --- the service ----------------------------------------------------------------------------------


def png_bytes(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(128, 128), dtype=np.uint8)
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("damage", [garbage, truncated])
def test_service_rebuilds_the_index_when_the_snapshot_is_damaged(
    database_url: str, checkpoint: Path, tmp_path: Path, damage
) -> None:
    """A damaged snapshot must cost a rebuild from the database, not a service that cannot start."""
    upgrade(database_url)
    settings = Settings(
        data_dir=tmp_path / "data", database_url=database_url, checkpoint=checkpoint
    )
    service = Service.open(settings)
    try:
        person_id = new_person(service, "rebuild")
        images = [ingest(service, person_id, png_bytes(seed)) for seed in range(3)]
        delete(service, images[0])
        version_id = service.matcher.serving.version.id
    finally:
        service.close()
    path = snapshot_path(settings.index_dir, version_id)
    assert VectorIndex.load(path, version_id, DIM).size == 2  # close() saved a usable snapshot
    path.write_bytes(damage(path.read_bytes()))

    service = Service.open(settings)
    try:
        index = service.matcher.serving.index
        assert index is not None
        assert index_ids(index) == sorted(image.id for image in images[1:])
        with service.records.sessions() as session:
            assert index.generation == current_generation(session, version_id) == 4
            assert check_consistency(index, session).ok
    finally:
        service.close()
    assert VectorIndex.load(path, version_id, DIM).size == 2  # and the damage is repaired


def test_service_builds_the_index_kind_its_gallery_size_calls_for(
    database_url: str, checkpoint: Path, tmp_path: Path
) -> None:
    """Exact below approximate_index_from; from there on the configured approximate kind, chosen
    when an index is built (here: at start-up) and kept while it catches up."""
    upgrade(database_url)

    def open_service(**options) -> Service:
        settings = Settings(
            data_dir=tmp_path / "data",
            database_url=database_url,
            checkpoint=checkpoint,
            approximate_index_from=3,
            **options,
        )
        return Service.open(settings)

    service = open_service()
    try:
        person_id = new_person(service, "kinds")
        images = [ingest(service, person_id, png_bytes(seed)) for seed in range(4)]
        assert service.matcher.serving.index.kind == "flat"  # built empty, then caught up
    finally:
        service.close()

    service = open_service()  # the flat snapshot holds 4 >= 3 images: rebuilt as HNSW
    try:
        index = service.matcher.serving.index
        assert index.description() == {
            "kind": "hnsw",
            "exact": False,
            "parameters": {"m": 32, "ef_search": 256},
        }
        delete(service, images[0])
        service.matcher.refresh()
        assert index_ids(index) == sorted(image.id for image in images[1:])
    finally:
        service.close()

    service = open_service()  # the HNSW snapshot and its tombstone load as saved
    try:
        index = service.matcher.serving.index
        assert index.kind == "hnsw"
        assert index_ids(index) == sorted(image.id for image in images[1:])
        with service.records.sessions() as session:
            assert check_consistency(index, session).ok
    finally:
        service.close()

    service = open_service(approximate_index="ivf")  # another kind configured: rebuilt
    try:
        index = service.matcher.serving.index
        assert (index.kind, index.exact) == ("ivf", False)
        assert index_ids(index) == sorted(image.id for image in images[1:])
    finally:
        service.close()
