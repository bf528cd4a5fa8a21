"""The FAISS index of one model version's embeddings, with ids = image ids, and how it stays in step
with the database.

The database is the truth. Every transaction that adds or removes an embedding bumps its model
version's generation (see ModelVersion.index_generation), so "everything up to generation G" is a
well-defined state: an index records the generation it reflects, and catching up means applying
the embeddings added or removed after it. A snapshot on disk is only a shortcut for start-up.

Small galleries are searched exactly (a flat inner-product scan). From `approximate_from` images
on, a build makes an approximate index instead, HNSW or IVF as configured: a flat scan costs about
50-65 ms per query at a million images on two cores, HNSW about 1 ms (docs/results/performance.md). The kind is chosen when an index is built (at
start-up without a usable snapshot, or by a rebuild job); catching up adds to the index it has.
HNSW and IVF cannot remove vectors in place, so their removals are tombstones that searches skip
and the next build drops. Every search says which index answered it.
"""

from __future__ import annotations

import io
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from app.serving.index_options import IndexKind, IndexOptions
from app.storage.tables import Embedding, ModelVersion
from model.files import write_atomically
from model.threads import thread_count, use_faiss_threads

SNAPSHOT_FORMAT = "radmatch-index/2"


class SnapshotError(ValueError):
    """An index file that cannot be used: damaged, or made for another model version."""


def _new_faiss_index(kind: IndexKind, dimension: int, options: IndexOptions, size: int):
    if kind == "flat":
        inner = faiss.IndexFlatIP(dimension)
    elif kind == "hnsw":
        inner = faiss.IndexHNSWFlat(dimension, options.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = options.hnsw_ef_construction
    else:
        lists = options.ivf_lists_for(size)
        inner = faiss.IndexIVFFlat(
            faiss.IndexFlatIP(dimension), dimension, lists, faiss.METRIC_INNER_PRODUCT
        )
    return faiss.IndexIDMap2(inner)


def _kind_of(faiss_index) -> IndexKind:
    inner = faiss.downcast_index(faiss_index.index)
    if isinstance(inner, faiss.IndexHNSWFlat):
        return "hnsw"
    if isinstance(inner, faiss.IndexIVFFlat):
        return "ivf"
    if isinstance(inner, faiss.IndexFlatIP):
        return "flat"
    raise SnapshotError(f"unsupported index type {type(inner).__name__}")


class VectorIndex:
    """Inner-product search (cosine on unit vectors) over image ids: exact for the flat kind,
    approximate for HNSW and IVF. Thread-safe: searches and updates from the request threads and
    the sync thread take one lock."""

    def __init__(
        self,
        model_version_id: int,
        dimension: int,
        generation: int = 0,
        faiss_index=None,
        options: IndexOptions | None = None,
        removed: np.ndarray | None = None,
    ):
        self.model_version_id = model_version_id
        self.dimension = dimension
        self.generation = generation
        self.options = options or IndexOptions()
        self._index = faiss_index or _new_faiss_index("flat", dimension, self.options, 0)
        self.kind = _kind_of(self._index)
        self._removed: set[int] = set()
        self._skip_removed = None
        self._lock = threading.Lock()
        if removed is not None and len(removed):
            self._tombstone(removed)

    @classmethod
    def build(
        cls,
        model_version_id: int,
        dimension: int,
        generation: int,
        ids: np.ndarray,
        vectors: np.ndarray,
        options: IndexOptions,
    ) -> VectorIndex:
        """An index of these vectors, of the kind the options choose for their number (IVF is
        trained on them)."""
        kind = options.kind_for(len(ids))
        faiss_index = _new_faiss_index(kind, dimension, options, len(ids))
        use_faiss_threads(thread_count())
        if len(ids):
            vectors = np.ascontiguousarray(vectors, dtype=np.float32)
            if kind == "ivf":
                faiss_index.train(vectors)
            faiss_index.add_with_ids(vectors, np.asarray(ids, dtype=np.int64))
        return cls(model_version_id, dimension, generation, faiss_index, options)

    @property
    def size(self) -> int:
        return self._index.ntotal - len(self._removed)

    @property
    def exact(self) -> bool:
        return self.kind == "flat"

    def description(self) -> dict[str, Any]:
        """What answers searches: stored with every search."""
        parameters: dict[str, int] = {}
        inner = faiss.downcast_index(self._index.index)
        if self.kind == "hnsw":  # the degree is the built graph's, the effort today's setting
            parameters = {"m": inner.hnsw.nb_neighbors(1), "ef_search": self.options.hnsw_ef_search}
        elif self.kind == "ivf":
            parameters = {"lists": inner.nlist, "nprobe": min(self.options.ivf_nprobe, inner.nlist)}
        return {"kind": self.kind, "exact": self.exact, "parameters": parameters}

    def apply(self, generation: int, add_ids, add_vectors, remove_ids) -> None:
        with self._lock:
            if len(remove_ids):
                if self.exact:
                    self._index.remove_ids(np.asarray(remove_ids, dtype=np.int64))
                else:
                    self._tombstone(remove_ids)
            if len(add_ids):
                vectors = np.ascontiguousarray(add_vectors, dtype=np.float32)
                use_faiss_threads(thread_count())
                self._index.add_with_ids(vectors, np.asarray(add_ids, dtype=np.int64))
            self.generation = generation

    def _tombstone(self, ids) -> None:
        self._removed.update(int(i) for i in ids)
        removed = faiss.IDSelectorBatch(np.fromiter(self._removed, np.int64, len(self._removed)))
        # The C++ selectors point at each other: keep both referenced.
        self._skip_removed = (faiss.IDSelectorNot(removed), removed)

    def search(
        self, query: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, int, int]:
        """Similarities and image ids of the k nearest (best first, -1 ids pad a short answer), and
        the generation and size they were found at."""
        with self._lock:
            k = max(1, min(k, self._index.ntotal))
            selectors = []  # referenced until the search is done: faiss holds raw pointers
            if allowed_ids is not None:
                selectors.append(faiss.IDSelectorBatch(allowed_ids.astype(np.int64)))
            if self._skip_removed is not None:
                selectors.append(self._skip_removed[0])
            if len(selectors) == 2:
                selectors.append(faiss.IDSelectorAnd(selectors[0], selectors[1]))
            params = self._search_parameters(k, selectors[-1] if selectors else None)
            use_faiss_threads(1)  # one query: see model/threads.py
            similarities, ids = self._index.search(query[None].astype(np.float32), k, params=params)
            return similarities[0], ids[0], self.generation, self.size

    def _search_parameters(self, k: int, selector):
        if self.kind == "hnsw":
            return faiss.SearchParametersHNSW(
                sel=selector, efSearch=max(self.options.hnsw_ef_search, k)
            )
        if self.kind == "ivf":
            return faiss.SearchParametersIVF(sel=selector, nprobe=self.options.ivf_nprobe)
        return None if selector is None else faiss.SearchParameters(sel=selector)

    def ids(self) -> np.ndarray:
        with self._lock:
            ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
            if self._removed:
                ids = ids[~np.isin(ids, np.fromiter(self._removed, np.int64))]
            return ids

    def save(self, path: Path) -> None:
        with self._lock:
            serialized = faiss.serialize_index(self._index)
            removed = np.fromiter(self._removed, np.int64, len(self._removed))
            meta = {
                "format": SNAPSHOT_FORMAT,
                "model_version_id": self.model_version_id,
                "dimension": self.dimension,
                "generation": self.generation,
                "kind": self.kind,
            }
        buffer = io.BytesIO()
        np.savez(
            buffer,
            meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
            index=serialized,
            removed=removed,
        )
        write_atomically(path, buffer.getvalue())

    @classmethod
    def load(
        cls, path: Path, model_version_id: int, dimension: int, options: IndexOptions | None = None
    ) -> VectorIndex:
        try:
            with np.load(path) as arrays:
                meta = json.loads(arrays["meta"].tobytes())
                serialized = arrays["index"]
                removed = arrays["removed"]
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
        return cls(model_version_id, dimension, meta["generation"], faiss_index, options, removed)


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


def _live_at(model_version_id: int, generation: int):
    """Where-clauses for the embeddings that generation `generation` of the version contains."""
    return (
        Embedding.model_version_id == model_version_id,
        Embedding.added_generation <= generation,
        or_(Embedding.removed_generation.is_(None), Embedding.removed_generation > generation),
    )


def build_from_database(
    session: Session,
    model_version_id: int,
    dimension: int,
    options: IndexOptions,
    generation: int | None = None,
) -> VectorIndex:
    """A new index of every embedding the version has now (or had at an earlier generation), of
    the kind its size calls for."""
    if generation is None:
        generation = current_generation(session, model_version_id)
    rows = session.execute(
        select(Embedding.image_id, Embedding.vector)
        .where(*_live_at(model_version_id, generation))
        .order_by(Embedding.image_id)
    ).all()
    ids = np.fromiter((i for i, _ in rows), np.int64, len(rows))
    vectors = np.frombuffer(b"".join(v for _, v in rows), np.float32).reshape(len(rows), dimension)
    return VectorIndex.build(model_version_id, dimension, generation, ids, vectors, options)


def check_consistency(index: VectorIndex, session: Session) -> Consistency:
    """Compare the index's ids with the embeddings live at the index's generation."""
    generation = index.generation
    live = session.scalars(
        select(Embedding.image_id).where(*_live_at(index.model_version_id, generation))
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
