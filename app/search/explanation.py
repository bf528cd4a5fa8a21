"""Explanation maps for one candidate of a stored search: where, in the query and in one of the
candidate's images, the model's similarity comes from (model/explanation.py), recomputed with the
model version that answered the search."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.core.errors import NotFound, Unprocessable
from app.gallery.images import original_bytes
from app.rerun.replay import load_searched_model, stored_query
from app.search.answer import SearchAnswer
from app.serving.matcher import Matcher
from app.storage.records import Records
from app.storage.tables import Image, ModelVersion, Search
from model.explanation import input_region, similarity_maps
from model.image import DecodedImage
from model.inference import EmbeddingModel, pixel_spacing
from model.preprocess import crop_side_px

METHOD = (
    "Each cell is one location of the network's last feature map and holds its share of the "
    "cosine similarity: the embedding is the average of the locations' features through a linear "
    "layer (whose bias is shared evenly), so the similarity is exactly the sum of the cells."
)


@dataclass(frozen=True)
class Pair:
    """What an explanation compares, read from the database in one go."""

    record: Search
    image: Image
    version: ModelVersion


def explain(
    *, records: Records, matcher: Matcher, search_id: int, person_id: int, image_id: int | None
) -> dict[str, Any]:
    pair = _pair(records, search_id, person_id, image_id)
    query = stored_query(records, pair.record)
    query_image = matcher.decode(query.data)
    candidate_image = matcher.decode(original_bytes(records, pair.image))
    model = _model(matcher, pair.version, search_id)
    query_spacing = pixel_spacing(query_image, query.pixel_spacing_mm)
    candidate_spacing = pixel_spacing(candidate_image, pair.image.pixel_spacing_mm)
    maps = similarity_maps(
        model.checkpoint.embedder,
        model.input_tensor(query_image, query_spacing),
        model.input_tensor(candidate_image, candidate_spacing),
        model.checkpoint.preprocessing.flip_tta,
    )
    return {
        "search_id": search_id,
        "person_id": person_id,
        "image_id": pair.image.id,
        "similarity": maps.similarity,
        "method": METHOD,
        "query": _side(model, query_image, query_spacing, maps.query.tolist()),
        "candidate": _side(model, candidate_image, candidate_spacing, maps.candidate.tolist()),
    }


def _pair(records: Records, search_id: int, person_id: int, image_id: int | None) -> Pair:
    with records.sessions() as session:
        record = session.get(Search, search_id)
        if record is None:
            raise NotFound(f"no search with id {search_id}")
        answer = SearchAnswer.from_json(record.response)
        candidate = next((c for c in answer.candidates if c.person_id == person_id), None)
        if candidate is None:
            raise NotFound(f"person {person_id} is not a candidate of search {search_id}")
        chosen = image_id if image_id is not None else candidate.best_image_id
        image = session.get(Image, chosen)
        if image is None or image.deleted_at is not None or image.person_id != person_id:
            raise Unprocessable(f"image {chosen} is not an image of person {person_id} on record")
        version = session.get(ModelVersion, answer.model_version.id)
        session.expunge_all()
    return Pair(record, image, version)


def _model(matcher: Matcher, version: ModelVersion, search_id: int) -> EmbeddingModel:
    """The served model when it answered the search, else that version's checkpoint."""
    serving = matcher.serving
    if serving is not None and serving.version.id == version.id:
        return serving.model
    return load_searched_model(matcher, version, search_id)


def _side(
    model: EmbeddingModel, image: DecodedImage, spacing: float | None, cells: list
) -> dict[str, Any]:
    prep = model.checkpoint.preprocessing
    height, width = image.pixels.shape
    return {
        "map": cells,
        "region": input_region(height, width, prep, crop_side_px(prep, spacing)),
        "width": width,
        "height": height,
    }
