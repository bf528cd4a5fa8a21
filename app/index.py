"""The FAISS index of one model version's embeddings, with ids = image ids, and how it stays in step
with the database.

The database is the truth. Every transaction that adds or removes an embedding bumps its model
version's generation (see ModelVersion.index_generation), so "everything up to generation G" is a
well-defined state: an index records the generation it reflects, and catching up means applying
the embeddings added or removed after it. A snapshot on disk is only a shortcut for start-up.
"""

from __future__ import annotations

import io
import json
import threading
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from app.tables import Embedding, ModelVersion
from model.checkpoint import write_atomically

SNAPSHOT_FORMAT = "radmatch-index/1"


class SnapshotError(ValueError):
    """An index file that cannot be used: damaged, or made for another model version."""


class VectorIndex:
    """Exact inner-product search (cosine on unit vectors) over image ids. Thread-safe: searches
    and updates from the request threads and the sync thread take one lock."""

    def __init__(
        self, model_version_id: int, dimension: int, generation: int = 0, faiss_index=None
    ):
        self.model_version_id = model_version_id
        self.dimension = dimension
        self.generation = generation
        self._index = faiss_index or faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        return self._index.ntotal

    def apply(self, generation: int, add_ids, add_vectors, remove_ids) -> None:
        with self._lock:
            if len(remove_ids):
                self._index.remove_ids(np.asarray(remove_ids, dtype=np.int64))
            if len(add_ids):
                vectors = np.ascontiguousarray(add_vectors, dtype=np.float32)
                self._index.add_with_ids(vectors, np.asarray(add_ids, dtype=np.int64))
            self.generation = generation

    def search(
        self, query: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, int, int]:
        """Similarities and image ids of the k nearest (best first, -1 ids pad a short answer), and
        the generation and size they were found at."""
        params = None
        if allowed_ids is not None:
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed_ids.astype(np.int64)))
        with self._lock:
            k = max(1, min(k, self._index.ntotal))
            similarities, ids = self._index.search(query[None].astype(np.float32), k, params=params)
            return similarities[0], ids[0], self.generation, self._index.ntotal

    def ids(self) -> np.ndarray:
        with self._lock:
            return faiss.vector_to_array(self._index.id_map).astype(np.int64)

    def save(self, path: Path) -> None:
        with self._lock:
            serialized = faiss.serialize_index(self._index)
            meta = {
                "format": SNAPSHOT_FORMAT,
                "model_version_id": self.model_version_id,
                "dimension": self.dimension,
                "generation": self.generation,
            }
        buffer = io.BytesIO()
        np.savez(buffer, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), index=serialized)
        write_atomically(path, buffer.getvalue())

    @classmethod
    def load(cls, path: Path, model_version_id: int, dimension: int) -> VectorIndex:
        try:
            with np.load(path) as arrays:
                meta = json.loads(arrays["meta"].tobytes())
                serialized = arrays["index"]
            faiss_index = faiss.deserialize_index(serialized)
            if not isinstance(meta, dict):
                raise ValueError("no metadata")
        except Exception as error:  # a damaged file fails in numpy, zipfile, json or faiss
            raise SnapshotError(f"{path.name}: unreadable index snapshot ({error!r})") from None
        expected = {
            "format": SNAPSHOT_FORMAT,
            "model_version_id": model_version_id,
            "dimension": dimension,
        }
        if faiss_index.d != dimension or any(meta.get(k) != v for k, v in expected.items()):
            raise SnapshotError(f"{path.name}: made for {meta}, not for {expected}")
        return cls(model_version_id, dimension, meta["generation"], faiss_index)


def snapshot_path(index_dir: Path, model_version_id: int) -> Path:
    return index_dir / f"model-{model_version_id}.npz"


def current_generation(session: Session, model_version_id: int) -> int:
    return session.scalar(
        select(ModelVersion.index_generation).where(ModelVersion.id == model_version_id)
    )


def bump_generation(session: Session, model_version_id: int) -> int:
    """The next generation, inside the caller's transaction. The row lock it takes is held until
    commit, so concurrent writers commit their generations in order."""
    return session.execute(
        ModelVersion.__table__.update()
        .where(ModelVersion.id == model_version_id)
        .values(index_generation=ModelVersion.index_generation + 1)
        .returning(ModelVersion.index_generation)
    ).scalar_one()


def catch_up(index: VectorIndex, session: Session) -> int:
    """Apply what was committed after the index's generation; returns how many ids changed."""
    version, since = index.model_version_id, index.generation
    target = current_generation(session, version)
    if target == since:
        return 0
    if target < since:
        raise SnapshotError(
            f"the index is at generation {since}, ahead of the database's {target}: "
            "it belongs to another database"
        )
    in_range = lambda column: and_(column > since, column <= target)  # noqa: E731
    added = session.execute(
        select(Embedding.image_id, Embedding.vector).where(
            Embedding.model_version_id == version,
            in_range(Embedding.added_generation),
            or_(Embedding.removed_generation.is_(None), Embedding.removed_generation > target),
        )
    ).all()
    removed = session.scalars(
        select(Embedding.image_id).where(
            Embedding.model_version_id == version,
            in_range(Embedding.removed_generation),
            Embedding.added_generation <= since,
        )
    ).all()
    vectors = np.stack([np.frombuffer(v, np.float32) for _, v in added]) if added else None
    index.apply(target, [i for i, _ in added], vectors, removed)
    return len(added) + len(removed)


@dataclass(frozen=True)
class Consistency:
    index_size: int
    database_size: int
    generation: int
    missing: int  # in the database, not in the index
    unexpected: int  # in the index, not in the database

    @property
    def ok(self) -> bool:
        return self.missing == 0 and self.unexpected == 0


def check_consistency(index: VectorIndex, session: Session) -> Consistency:
    """Compare the index's ids with the embeddings live at the index's generation."""
    generation = index.generation
    live = session.scalars(
        select(Embedding.image_id).where(
            Embedding.model_version_id == index.model_version_id,
            Embedding.added_generation <= generation,
            or_(
                Embedding.removed_generation.is_(None),
                Embedding.removed_generation > generation,
            ),
        )
    ).all()
    in_index = index.ids()
    database = np.asarray(live, dtype=np.int64)
    return Consistency(
        index_size=len(in_index),
        database_size=len(database),
        generation=generation,
        missing=len(np.setdiff1d(database, in_index)),
        unexpected=len(np.setdiff1d(in_index, database)),
    )
