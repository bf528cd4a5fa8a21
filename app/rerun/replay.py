"""Replaying a stored search: its query original (checked against its sha256) embedded again with
the model version it used and with today's, and ranked exactly (a flat scan) over that version's
embeddings at the search's index generation and over today's gallery."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session

from app.core.errors import Busy, ClientError, Conflict, Gone
from app.rerun.words import on
from app.search.ranking import Ranking, rank_people
from app.search.service import SearchQuery
from app.serving.index import (
    IndexOptions,
    VectorIndex,
    build_from_database,
    current_generation,
)
from app.serving.matcher import Matcher
from app.serving.model_versions import load_model
from app.storage.records import Records
from app.storage.tables import ModelVersion, Search
from model.checkpoint import CheckpointError
from model.image import DecodedImage
from model.inference import EmbeddingModel

# How far a query's similarities may move when the same model embeds it again: at float32 on the
# CPU only the batch it ran in differs; TF32 or bfloat16 on a GPU move them by about 1e-3.
DRIFT_CPU_FP32 = 1e-4
DRIFT_GPU_OR_BF16 = 5e-3
# int8 moved the similarity of two phantom test images from float32's by at most 0.067 (0.029 at
# the 99th percentile) with the `cpu` preset's model (docs/results/performance.md, "int8").
DRIFT_INT8 = 0.1
# A flat index whatever the size: a re-run is exact.
EXACT = IndexOptions(approximate_from=np.iinfo(np.int64).max)


@dataclass(frozen=True)
class Replay:
    query: SearchQuery  # as the stored search ran it
    then: Ranking  # the search's model over the gallery at its generation
    now: Ranking  # today's model over today's gallery
    then_model: EmbeddingModel
    now_model: EmbeddingModel
    now_version: ModelVersion


def replay(records: Records, matcher: Matcher, *, record: Search, version: ModelVersion) -> Replay:
    """The stored search ranked again, at its original state and now. The gallery at the
    original state keeps the images deleted since (with today's attributes: no history of them
    is kept)."""
    serving = matcher.require_serving()
    query = stored_query(records, record)
    decoded = _decoded(matcher, query, record.id)
    k, filters, spacing = query.k, query.filters, query.pixel_spacing_mm
    same_model = serving.version.id == version.id
    then_model = serving.model if same_model else load_searched_model(matcher, version, record.id)
    then_vector = matcher.batcher.embed(then_model, decoded, spacing)
    now_vector = (
        then_vector if same_model else matcher.batcher.embed(serving.model, decoded, spacing)
    )
    with records.sessions() as session:
        index = _exact_index(session, version, record.index_generation)
        then = rank_people(
            session, index=index, vector=then_vector, k=k, filters=filters, as_of=record.created_at
        )
        now_version = session.get(ModelVersion, serving.version.id)
        current = current_generation(session, now_version.id)
        if not (same_model and current == record.index_generation):  # one index in memory
            index = _exact_index(session, now_version, current)
        now = rank_people(session, index=index, vector=now_vector, k=k, filters=filters)
    return Replay(query, then, now, then_model, serving.model, now_version)


def _exact_index(session: Session, version: ModelVersion, generation: int) -> VectorIndex:
    """The version's embeddings live at the generation, in a flat index."""
    return build_from_database(session, version.id, version.dimension, EXACT, generation)


def stored_query(records: Records, record: Search) -> SearchQuery:
    """The stored search's query: its original, checked against its sha256, and parameters."""
    if not records.originals.exists(record.query_sha256):
        raise Gone(
            f"the query image of search {record.id} (sha256 {record.query_sha256}) is no longer "
            "stored: the search cannot be re-run"
        )
    query = SearchQuery.from_stored(records.originals.read(record.query_sha256), record.parameters)
    if query.sha256 != record.query_sha256:
        raise Conflict(
            f"the stored query image of search {record.id} no longer hashes to its sha256 "
            f"{record.query_sha256}: the original store is damaged (`radmatch audit verify` "
            "lists what else is)"
        )
    return query


def _decoded(matcher: Matcher, query: SearchQuery, search_id: int) -> DecodedImage:
    try:
        return matcher.decode(query.data)
    except Busy:
        raise  # the decode budget is full for now: try again, nothing is wrong with the query
    except ClientError as error:
        raise Conflict(
            f"the stored query of search {search_id} can no longer be decoded: {error.message}"
        ) from None


def load_searched_model(matcher: Matcher, version: ModelVersion, search_id: int) -> EmbeddingModel:
    """The checkpoint of a version this server does not serve, refused if it is gone or changed."""
    try:
        return load_model(version, matcher.settings)
    except (CheckpointError, OSError) as error:
        raise Conflict(
            f"search {search_id} was answered by model version {version.id}, whose checkpoint "
            f"cannot be loaded now: {error}. Restore {version.checkpoint_path} (sha256 "
            f"{version.sha256}) to re-run it"
        ) from None


def rounding(stored: dict[str, str] | None, rerun: dict[str, str]) -> tuple[float, str]:
    """How far a similarity may move between the stored search's embedding of the query and
    this one (the stored search's device, precision and backend, where recorded, and the
    model's), and those two in words."""
    runs = [rerun] + ([stored] if stored else [])
    # PyTorch and ONNX Runtime on the CPU in float32 differ by about 1e-6 (bench/
    # inference_backends.py), as two batches do: the backend does not widen the allowance.
    cpu_fp32 = all(run["device"] == "cpu" and run["precision"] == "fp32" for run in runs)
    int8 = any(run["precision"] == "int8" for run in runs)
    now = on(rerun)
    if stored is None:
        words = f"the re-run embedded it on {now}; the stored search does not say how it did"
    else:
        words = f"the stored search embedded it on {on(stored)}, the re-run on {now}"
    if int8:
        return DRIFT_INT8, words
    return (DRIFT_CPU_FP32 if cpu_fp32 else DRIFT_GPU_OR_BF16), words
