"""Re-running a stored search: is its answer reproducible, and what has changed since?

At the original state: the stored query original (checked against its sha256), embedded with the
model version the search used, searched exactly (a flat scan) over that version's embeddings as
the search's index generation contained them, with the same k, filters and pixel spacing, and
grouped by person over the gallery as it was when the search was recorded (images deleted since
still count). The answer should be the stored one: the same people at the same ranks, with
similarities within 1e-5, or within what floating-point rounding explains between the device and
precision the search recorded and the re-run's. Every difference is listed with its cause; one
that nothing explains is reported as unexplained. That would be a bug, and the response says so
rather than hide it.

Now: the same query with the model this server serves, searched exactly over today's gallery,
each difference from the stored answer explained by what happened since: people and images added
or deleted, another active model, a record edited, or the approximate index that answered then.

Nothing is stored but an audit entry: a re-run is not a new search.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from app.core.errors import ClientError, Conflict, Gone, NotFound
from app.gallery.images import decode
from app.search.service import SearchFilters, _allowed_images, _nearest_people
from app.serving.index import IndexOptions, VectorIndex, build_from_database, current_generation
from app.serving.model_versions import load_model
from app.serving.service import Service, sha256_of
from app.storage.tables import AuditEntry, Embedding, Image, ModelVersion, Person, Search, utcnow
from model.checkpoint import CheckpointError
from model.image import DecodedImage
from model.inference import EmbeddingModel

# Similarities this close are the same number (float32 sums in another order).
IDENTICAL = 1e-5
# How far a query's similarities may move when the same model embeds it again: at float32 on the
# CPU only the batch it ran in differs; TF32 or bfloat16 on a GPU move them by about 1e-3.
DRIFT_CPU_FP32 = 1e-4
DRIFT_GPU_OR_BF16 = 5e-3
# A flat index whatever the size: a re-run is exact.
EXACT = IndexOptions(approximate_from=np.iinfo(np.int64).max)

APPROXIMATE = "approximate_index"
TIE = "tie"
DRIFT = "float_drift"
DELETED_DURING = "deleted_during_search"
ADDED_SINCE = "added_since"
DELETED_SINCE = "deleted_since"
MODEL = "model_changed"
FILTERS = "filter_attributes_changed"
SHIFT = "rank_shift"
UNEXPLAINED = "unexplained"


@dataclass
class Difference:
    """One way an answer differs from the stored one, and why.

    change: added (a person the stored answer lacks), removed (one it had), rank, similarity (of
    the person's best image, or another best image), images (the person's retrieved images),
    index_size, model."""

    change: str
    cause: str
    explanation: str
    person_id: int | None = None
    external_ref: str | None = None
    original_rank: int | None = None
    rank: int | None = None
    original_similarity: float | None = None
    similarity: float | None = None

    @property
    def explained(self) -> bool:
        return self.cause != UNEXPLAINED

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "explained": self.explained}


def _unexplained_change(
    change: str, explanation: str, before: dict[str, Any], after: dict[str, Any]
) -> Difference:
    """A change to a person found in both answers, until a cause is found for it."""
    return Difference(
        change,
        UNEXPLAINED,
        explanation,
        person_id=before["person_id"],
        external_ref=before["external_ref"],
        original_rank=before["rank"],
        rank=after["rank"],
        original_similarity=before["similarity"],
        similarity=after["similarity"],
    )


@dataclass
class Gallery:
    """What explanations need about the people in either answer and their images."""

    searched_at: datetime
    generation: int  # the stored search's index generation
    people: dict[int, Person]
    images: dict[int, Image]
    images_of: dict[int, list[Image]]
    added_generation: dict[int, int]  # image id -> when the search's model's embedding came in
    reasons: dict[tuple[str, int], str]  # ("image" | "person", id) -> why it was deleted
    edited: dict[tuple[str, int], datetime]  # targets changed by an *.update entry since

    def deleted_since(self, image_id: int) -> bool:
        deleted = self.images[image_id].deleted_at
        return deleted is not None and deleted > self.searched_at

    def deleted_before(self, image_id: int) -> bool:
        deleted = self.images[image_id].deleted_at
        return deleted is not None and deleted <= self.searched_at

    def added_since(self, image_id: int) -> str | None:
        """How the image came in after the search, or None."""
        image = self.images[image_id]
        if image.uploaded_at > self.searched_at:
            return f"image {image_id} was uploaded on {_when(image.uploaded_at)}, after the search"
        generation = self.added_generation.get(image_id)
        if generation is not None and generation > self.generation:
            return (
                f"image {image_id} entered the index at generation {generation}, after the "
                f"search's generation {self.generation}"
            )
        return None

    def deletion(self, image_id: int) -> str:
        image = self.images[image_id]
        reason = self.reasons.get(("image", image_id))
        said = f" (reason: {reason})" if reason else ""
        return f"image {image_id} was deleted on {_when(image.deleted_at)}{said}"

    def edit(self, person_id: int, image_ids: list[int]) -> str | None:
        targets = [("person", person_id)] + [("image", i) for i in image_ids]
        times = [self.edited[t] for t in targets if t in self.edited]
        if not times:
            return None
        return f"its record was edited on {_when(max(times))}, after the search"


@dataclass
class Context:
    """How to read one comparison: the stored search, and what the re-run ran with."""

    k: int
    filters: SearchFilters
    index: dict[str, Any]  # the stored response's index description
    drift: float
    rounding: str  # how the stored search and the re-run embedded the query, in words
    gallery: Gallery
    now: bool = False  # against today's state (else at the original state)
    model_change: str | None = None
    # The explained differences at the original state, by (change, person id): now only.
    at_original: dict[tuple[str, int], Difference] = field(default_factory=dict)


def rerun(service: Service, search_id: int, key_id: int | None) -> dict[str, Any]:
    serving = service.require_serving()
    with service.sessions() as session:
        record = session.get(Search, search_id)
        if record is None:
            raise NotFound(f"no search with id {search_id}")
        version = session.get(ModelVersion, record.model_version_id)
    decoded = _decoded_query(service, record)
    parameters = record.parameters
    k = int(parameters["k"])
    filters = _filters(parameters.get("filters") or {})
    spacing = parameters.get("pixel_spacing_mm")
    same_model = serving.version.id == version.id
    then_model = serving.model if same_model else _load(service, version, search_id)
    vector = service.batcher.embed(then_model, decoded, spacing)
    now_vector = vector if same_model else service.batcher.embed(serving.model, decoded, spacing)

    with service.sessions() as session:
        generation = record.index_generation
        index = build_from_database(session, version.id, version.dimension, EXACT, generation)
        then, _, then_size = _exact_answer(
            session, index, vector, k, filters, as_of=record.created_at
        )
        current = current_generation(session, serving.version.id)
        if not (same_model and current == generation):  # one index at a time in memory
            index = build_from_database(
                session, serving.version.id, serving.version.dimension, EXACT, current
            )
        now, now_generation, now_size = _exact_answer(
            session, index, now_vector, k, filters, as_of=None
        )
        del index
        now_version = session.get(ModelVersion, serving.version.id)
        original = record.response["candidates"]
        gallery = _gallery(session, record, original + then + now)

    stored_index = {"kind": "flat", "exact": True, "parameters": {}}
    stored_index |= record.response.get("index") or {}
    stored_inference = record.response.get("inference")
    at_original = Context(
        k, filters, stored_index, *_rounding(stored_inference, then_model), gallery
    )
    then_differences = compare(original, then, at_original)
    if then_size != record.index_size:
        then_differences.insert(0, _size_difference(record, version, then_size))
    since = Context(
        k,
        filters,
        stored_index,
        *_rounding(stored_inference, serving.model),
        gallery,
        now=True,
        model_change=_model_change(version, now_version),
        at_original={(d.change, d.person_id): d for d in then_differences if d.explained},
    )
    now_differences = compare(original, now, since)
    if since.model_change is not None:
        now_differences.insert(0, Difference("model", MODEL, since.model_change))

    response = {
        "search_id": record.id,
        "rerun_at": utcnow().isoformat(),
        "query_sha256": record.query_sha256,
        "model_version": {"id": version.id, "sha256": version.sha256},
        "inference": stored_inference,
        "rerun_inference": then_model.inference,
        "index_generation": record.index_generation,
        "index": stored_index,
        "parameters": parameters,
        "at_original": _part(original, then, then_differences) | {"index_size": then_size},
        "now": _part(original, now, now_differences)
        | {
            "model_version": {"id": now_version.id, "sha256": now_version.sha256},
            "index_generation": now_generation,
            "index_size": now_size,
        },
    }
    _audit(service, record.id, key_id, response)
    return response


def _exact_answer(
    session: Session,
    index: VectorIndex,
    vector: np.ndarray,
    k: int,
    filters: SearchFilters,
    as_of: datetime | None,
) -> tuple[list[dict[str, Any]], int, int]:
    """The search module's own ranking and grouping, over an exact index: as_of None is the
    gallery now, a time the gallery as it was then (images deleted since still count; today's
    attributes, as no history of them is kept)."""
    allowed = _allowed_images(session, filters, as_of=as_of) if filters.any() else None
    return _nearest_people(session, index, vector, k, allowed, as_of=as_of)


# --- the re-run's inputs -------------------------------------------------------------------------


def _decoded_query(service: Service, record: Search) -> DecodedImage:
    """The stored query original, checked against its sha256, decoded."""
    if not service.store.exists(record.query_sha256):
        raise Gone(
            f"the query image of search {record.id} (sha256 {record.query_sha256}) is no longer "
            "stored: the search cannot be re-run"
        )
    data = service.store.read(record.query_sha256)
    if sha256_of(data) != record.query_sha256:
        raise Conflict(
            f"the stored query image of search {record.id} no longer hashes to its sha256 "
            f"{record.query_sha256}: the original store is damaged (`radmatch audit verify` "
            "lists what else is)"
        )
    try:
        return decode(service, data)
    except ClientError as error:
        raise Conflict(
            f"the stored query of search {record.id} can no longer be decoded: {error.message}"
        ) from None


def _filters(stored: dict[str, Any]) -> SearchFilters:
    known = {f.name for f in fields(SearchFilters)}
    return SearchFilters(**{name: value for name, value in stored.items() if name in known})


def _load(service: Service, version: ModelVersion, search_id: int) -> EmbeddingModel:
    """The checkpoint of a version this server does not serve, refused if it is gone or changed."""
    try:
        return load_model(version, service.settings)
    except (CheckpointError, OSError) as error:
        raise Conflict(
            f"search {search_id} was answered by model version {version.id}, whose checkpoint "
            f"cannot be loaded now: {error}. Restore {version.checkpoint_path} (sha256 "
            f"{version.sha256}) to re-run it"
        ) from None


def _rounding(stored: dict[str, str] | None, model: EmbeddingModel) -> tuple[float, str]:
    """How far a similarity may move between the stored search's embedding of the query and
    this one (the stored search's device and precision, where recorded, and the model's), and
    those two in words."""
    runs = [model.inference] + ([stored] if stored else [])
    cpu_fp32 = all(run == {"device": "cpu", "precision": "fp32"} for run in runs)
    now = _on(model.inference)
    if stored is None:
        words = f"the re-run embedded it on {now}; the stored search does not say how it did"
    else:
        words = f"the stored search embedded it on {_on(stored)}, the re-run on {now}"
    return (DRIFT_CPU_FP32 if cpu_fp32 else DRIFT_GPU_OR_BF16), words


def _on(inference: dict[str, str]) -> str:
    return f"{inference['device']} in {inference['precision']}"


def _gallery(session: Session, record: Search, candidates: list[dict[str, Any]]) -> Gallery:
    person_ids = sorted({c["person_id"] for c in candidates})
    people = {
        p.id: p for p in session.scalars(select(Person).where(Person.id.in_(person_ids))).all()
    }
    rows = session.scalars(
        select(Image).where(Image.person_id.in_(person_ids)).order_by(Image.id)
    ).all()
    images = {image.id: image for image in rows}
    images_of: dict[int, list[Image]] = {p: [] for p in person_ids}
    for image in rows:
        images_of[image.person_id].append(image)
    added = dict(
        session.execute(
            select(Embedding.image_id, Embedding.added_generation).where(
                Embedding.model_version_id == record.model_version_id,
                Embedding.image_id.in_(list(images)),
            )
        ).all()
    )
    entries = session.execute(
        select(AuditEntry.action, AuditEntry.target_type, AuditEntry.target_id, AuditEntry.at)
        .add_columns(AuditEntry.details)
        .where(
            or_(
                and_(AuditEntry.target_type == "image", AuditEntry.target_id.in_(list(images))),
                and_(AuditEntry.target_type == "person", AuditEntry.target_id.in_(person_ids)),
            )
        )
        .order_by(AuditEntry.id)
    ).all()
    reasons, edited = {}, {}
    for action, target_type, target_id, at, details in entries:
        if action.endswith(".delete") and isinstance(details, dict) and details.get("reason"):
            reasons[(target_type, target_id)] = str(details["reason"])
        elif action.endswith(".update") and at > record.created_at:
            edited[(target_type, target_id)] = at
    return Gallery(
        searched_at=record.created_at,
        generation=record.index_generation,
        people=people,
        images=images,
        images_of=images_of,
        added_generation=added,
        reasons=reasons,
        edited=edited,
    )


def _model_change(then: ModelVersion, now: ModelVersion) -> str | None:
    if then.id == now.id:
        return None
    since = f", active since {_when(now.activated_at)}" if now.activated_at else ""
    return (
        f"the search used model version {then.id} (sha256 {then.sha256[:12]}); this server now "
        f"serves model version {now.id} (sha256 {now.sha256[:12]}{since}). Similarities from two "
        "models are on different scales, so candidates may move for that reason alone"
    )


def _size_difference(record: Search, version: ModelVersion, size: int) -> Difference:
    return Difference(
        "index_size",
        UNEXPLAINED,
        f"the stored search saw {record.index_size} images at generation "
        f"{record.index_generation}, but the database holds {size} embeddings of model version "
        f"{version.id} live at that generation",
    )


# --- comparing answers -------------------------------------------------------------------------


def _part(
    original: list[dict[str, Any]], rerun_: list[dict[str, Any]], differences: list[Difference]
) -> dict[str, Any]:
    return {
        "identical": not differences,
        "exact": True,
        "candidates": rerun_,
        "max_similarity_difference": _max_difference(original, rerun_),
        "unexplained": sum(not d.explained for d in differences),
        "differences": [d.as_json() for d in differences],
    }


def _max_difference(original: list[dict[str, Any]], rerun_: list[dict[str, Any]]) -> float | None:
    """The largest change of a person's similarity to the same best image."""
    after = {c["person_id"]: c for c in rerun_}
    gaps = [
        abs(c["similarity"] - after[c["person_id"]]["similarity"])
        for c in original
        if c["person_id"] in after and _best(c) == _best(after[c["person_id"]])
    ]
    return max(gaps) if gaps else None


def compare(
    original: list[dict[str, Any]], rerun_: list[dict[str, Any]], context: Context
) -> list[Difference]:
    """Every difference between the stored candidates and a re-run's, with its cause, in the
    stored ranking's order (people the stored answer lacks last)."""
    before = {c["person_id"]: c for c in original}
    after = {c["person_id"]: c for c in rerun_}
    removed = {p: _removed(c, rerun_, context) for p, c in before.items() if p not in after}
    added = {p: _added(c, original, context) for p, c in after.items() if p not in before}
    changed = {
        p: d
        for p, c in before.items()
        if p in after and (d := _similarity(c, after[p], context)) is not None
    }
    _shifted_out(removed, {**added, **changed}, original, rerun_, context)
    _shifted_in(added, removed, original, context)
    own = {**removed, **added, **changed}
    ranks = {
        p: d
        for p, c in before.items()
        if p in after
        and c["rank"] != after[p]["rank"]
        and (d := _rank(c, after[p], original, rerun_, own, context)) is not None
    }
    images = {}
    if not context.now:
        images = {
            p: d
            for p, c in before.items()
            if p in after and p not in changed and (d := _images(c, after[p], context))
        }
    differences = []
    for person_id in before:
        for group in (removed, ranks, changed, images):
            if person_id in group:
                differences.append(group[person_id])
    differences += [added[p] for p in after if p in added]
    return differences


def _removed(c: dict[str, Any], rerun_: list[dict[str, Any]], context: Context) -> Difference:
    gallery, person_id = context.gallery, c["person_id"]
    person = gallery.people[person_id]
    best = _best(c)
    shown = [m["image_id"] for m in c["images"]]
    where = "now" if context.now else "at the original state"
    difference = Difference(
        "removed",
        UNEXPLAINED,
        f"{_who(c)} was rank {c['rank']} in the stored answer but is not among the "
        f"{len(rerun_)} people the exact re-run {where} found",
        person_id=person_id,
        external_ref=c["external_ref"],
        original_rank=c["rank"],
        original_similarity=c["similarity"],
    )
    if not context.now:
        if all(gallery.deleted_before(i) for i in shown):
            return _because(difference, DELETED_DURING, _during(gallery, shown))
    else:
        if person.deleted_at is not None and person.deleted_at > gallery.searched_at:
            reason = gallery.reasons.get(("person", person_id))
            said = f" (reason: {reason})" if reason else ""
            return _because(
                difference,
                DELETED_SINCE,
                f"{_who(c)} was deleted on {_when(person.deleted_at)}{said}",
            )
        if gallery.deleted_since(best):
            left = [
                i for i in gallery.images_of[person_id] if i.deleted_at is None and i.id != best
            ]
            rest = f"{_who(c)} has no images left"
            if left:
                rest = "its other images rank below the top k"
                if context.filters.any():
                    rest += f" or do not match the filters ({_filter_words(context.filters)})"
            return _because(
                difference,
                DELETED_SINCE,
                f"its best match, {gallery.deletion(best)}; {rest}",
            )
        if (inherited := _as_at_original(difference, context)) is not None:
            return inherited
    if context.filters.any() and not _matches(context.filters, person, gallery.images[best]):
        return _because(
            difference,
            FILTERS,
            f"{_who(c)} no longer matches the filters ({_filter_words(context.filters)}): its "
            "attributes were changed after the search",
        )
    edit = gallery.edit(person_id, shown)
    if context.filters.any() and edit is not None:
        return _because(difference, FILTERS, edit)
    return _unless_model_changed(difference, context)


def _added(c: dict[str, Any], original: list[dict[str, Any]], context: Context) -> Difference:
    gallery, person_id = context.gallery, c["person_id"]
    person = gallery.people[person_id]
    best = _best(c)
    difference = Difference(
        "added",
        UNEXPLAINED,
        f"{_who(c)} is rank {c['rank']} (similarity {c['similarity']:.6f}) in the exact re-run "
        f"{'now' if context.now else 'at the original state'} but not in the stored answer",
        person_id=person_id,
        external_ref=c["external_ref"],
        rank=c["rank"],
        similarity=c["similarity"],
    )
    if context.now:
        if person.created_at > gallery.searched_at:
            return _because(
                difference,
                ADDED_SINCE,
                f"added to the gallery on {_when(person.created_at)}, after the search",
            )
        added = gallery.added_since(best)
        if added is not None:
            return _because(difference, ADDED_SINCE, f"its best match: {added}")
        if (inherited := _as_at_original(difference, context)) is not None:
            return inherited
    elif not context.index.get("exact", True):
        last = original[-1]["similarity"] if original else None
        if len(original) < context.k or last is None or c["similarity"] >= last - context.drift:
            return _because(difference, APPROXIMATE, _approximate(context, c))
    edit = gallery.edit(person_id, [m["image_id"] for m in c["images"]])
    if context.filters.any() and edit is not None:
        return _because(difference, FILTERS, edit)
    return _unless_model_changed(difference, context)


def _shifted_out(
    removed: dict[int, Difference],
    explained: dict[int, Difference],
    original: list[dict[str, Any]],
    rerun_: list[dict[str, Any]],
    context: Context,
) -> None:
    """People pushed below rank k by people who overtook them for explained reasons (newcomers,
    or a better image), or tied with the last one."""
    if len(rerun_) < context.k:
        return
    last = rerun_[-1]
    then = {c["person_id"]: c["similarity"] for c in original}
    for difference in removed.values():
        if difference.explained:
            continue
        similarity = difference.original_similarity
        if abs(last["similarity"] - similarity) <= context.drift:
            _because(
                difference,
                TIE,
                f"its similarity {similarity:.6f} equals, within {context.drift:g}, that of "
                f"{_who(last)} at rank {len(rerun_)}, the last place; which of them is shown is "
                "the order of ties",
            )
            continue
        overtook = [
            c["person_id"]
            for c in rerun_
            if c["similarity"] > similarity and then.get(c["person_id"], -2.0) < similarity
        ]
        reasons = [explained.get(p) for p in overtook]
        if overtook and all(d is not None and d.explained for d in reasons):
            _because(
                difference,
                SHIFT,
                f"pushed below rank {context.k} by {', '.join(_named(d) for d in reasons)}",
            )


def _shifted_in(
    added: dict[int, Difference],
    removed: dict[int, Difference],
    original: list[dict[str, Any]],
    context: Context,
) -> None:
    """People who enter the top k, below everyone who stayed, because as many people left it
    for explained reasons; or tied with the stored answer's last one."""
    if len(original) < context.k:
        return
    last = original[-1]
    gone = [d for d in removed.values() if d.explained and d.cause not in (SHIFT, TIE)]
    for difference in sorted(added.values(), key=lambda d: d.rank):
        if difference.explained:
            continue
        similarity = difference.similarity
        if abs(last["similarity"] - similarity) <= context.drift:
            _because(
                difference,
                TIE,
                f"its similarity {similarity:.6f} equals, within {context.drift:g}, that of "
                f"{_who(last)}, last in the stored answer; which of them is shown is the order "
                "of ties",
            )
        elif gone and similarity <= last["similarity"] + context.drift:
            _because(
                difference,
                SHIFT,
                f"it moves into the top {context.k} because {_named(gone.pop(0))} left",
            )


def _similarity(before: dict[str, Any], after: dict[str, Any], context: Context):
    """The person's best match changed, or its similarity moved by more than IDENTICAL."""
    gallery = context.gallery
    old, new = _best(before), _best(after)
    gap = abs(before["similarity"] - after["similarity"])
    if old == new and gap <= IDENTICAL:
        return None
    difference = _unexplained_change(
        "similarity",
        f"{_who(before)}'s similarity is {after['similarity']:.6f} (image {new}); the stored "
        f"answer had {before['similarity']:.6f} (image {old})",
        before,
        after,
    )
    if old == new:
        if context.model_change is not None:
            return _because(difference, MODEL, "the active model changed (see above)")
        if gap <= context.drift:
            return _because(
                difference,
                DRIFT,
                f"the same image moved by {gap:.2g}, within the {context.drift:g} that embedding "
                "the query again may move a similarity (floating-point rounding in another batch "
                f"or on other hardware: {context.rounding})",
            )
        difference.explanation += (
            f": the same image moved by {gap:.2g}, more than the {context.drift:g} that "
            f"floating-point rounding explains ({context.rounding})"
        )
        return difference
    if context.now:
        if gallery.deleted_since(old):
            return _because(
                difference, DELETED_SINCE, f"its best match then, {gallery.deletion(old)}"
            )
        added = gallery.added_since(new)
        if added is not None:
            return _because(difference, ADDED_SINCE, f"its best match now: {added}")
        if (inherited := _as_at_original(difference, context)) is not None:
            return inherited
        return _unless_model_changed(difference, context)
    if gallery.deleted_before(old):
        return _because(difference, DELETED_DURING, _during(gallery, [old]))
    if not context.index.get("exact", True) and after["similarity"] > before["similarity"]:
        return _because(difference, APPROXIMATE, _approximate(context, after))
    if gap <= context.drift:
        return _because(
            difference,
            TIE,
            "two of its images are equally similar, within floating-point rounding; which is "
            "shown first is the order of ties",
        )
    return difference


def _rank(
    before: dict[str, Any],
    after: dict[str, Any],
    original: list[dict[str, Any]],
    rerun_: list[dict[str, Any]],
    own: dict[int, Difference],
    context: Context,
) -> Difference:
    """A rank change, explained by the people who came above it or left, each for a reason."""
    person_id = before["person_id"]
    above_then = {c["person_id"] for c in original[: before["rank"] - 1]}
    above_now = {c["person_id"] for c in rerun_[: after["rank"] - 1]}
    by_id = {c["person_id"]: c for c in original} | {c["person_id"]: c for c in rerun_}
    difference = _unexplained_change(
        "rank",
        f"{_who(before)} is rank {after['rank']}; the stored answer had it at rank "
        f"{before['rank']}",
        before,
        after,
    )
    reasons, missing, ties = [], [], 0
    for other, moved in [(p, "now above it") for p in sorted(above_now - above_then)] + [
        (p, "no longer above it") for p in sorted(above_then - above_now)
    ]:
        explained = own.get(other)
        if explained is not None and explained.explained:
            reasons.append(f"{_who(by_id[other])} is {moved} ({explained.cause})")
        elif person_id in own and own[person_id].explained:
            reasons.append(f"{_who(by_id[other])} is {moved}: its own similarity changed")
        elif _tied(by_id, before, other, original, rerun_, context.drift):
            ties += 1
            reasons.append(f"{_who(by_id[other])} is {moved}: equal similarity, order of ties")
        else:
            missing.append(f"{_who(by_id[other])} is {moved} for no reason found")
    if missing:
        difference.explanation += "; " + "; ".join(reasons + missing)
        return _unless_model_changed(difference, context)
    cause = TIE if ties == len(reasons) else SHIFT
    return _because(difference, cause, "; ".join(reasons))


def _tied(
    by_id: dict[int, dict[str, Any]],
    before: dict[str, Any],
    other: int,
    original: list[dict[str, Any]],
    rerun_: list[dict[str, Any]],
    drift: float,
) -> bool:
    """Whether the two people's similarities are equal within the drift, then and now."""
    then = {c["person_id"]: c["similarity"] for c in original}
    now = {c["person_id"]: c["similarity"] for c in rerun_}
    pairs = [(then.get(before["person_id"]), then.get(other))]
    pairs.append((now.get(before["person_id"]), now.get(other)))
    known = [(a, b) for a, b in pairs if a is not None and b is not None]
    return bool(known) and all(abs(a - b) <= drift for a, b in known)


def _images(before: dict[str, Any], after: dict[str, Any], context: Context):
    """The person's retrieved images (ids and similarities), at the original state."""
    old = [(m["image_id"], m["similarity"]) for m in before["images"]]
    new = [(m["image_id"], m["similarity"]) for m in after["images"]]
    if [i for i, _ in old] == [i for i, _ in new] and all(
        abs(a - b) <= IDENTICAL for (_, a), (_, b) in zip(old, new, strict=True)
    ):
        return None
    gallery = context.gallery
    difference = _unexplained_change(
        "images",
        f"{_who(before)}'s retrieved images are {[i for i, _ in new]}; the stored answer "
        f"showed {[i for i, _ in old]}",
        before,
        after,
    )
    if [i for i, _ in old] == [i for i, _ in new]:
        gap = max(abs(a - b) for (_, a), (_, b) in zip(old, new, strict=True))
        if gap <= context.drift:
            return _because(
                difference,
                DRIFT,
                f"the same images, similarities moved by at most {gap:.2g} (floating-point "
                "rounding when the query is embedded again)",
            )
        return difference
    dropped = sorted({i for i, _ in old} - {i for i, _ in new})
    if dropped and all(gallery.deleted_before(i) for i in dropped):
        return _because(difference, DELETED_DURING, _during(gallery, dropped))
    if not context.index.get("exact", True):
        return _because(
            difference,
            APPROXIMATE,
            f"the approximate {context.index.get('kind')} index retrieves a different set of "
            "images than an exact scan",
        )
    return difference


# --- words ----------------------------------------------------------------------------------------


def _as_at_original(difference: Difference, context: Context) -> Difference | None:
    """Now: the difference with the cause the re-run at the original state found for the same
    change to the same person, if it found one."""
    inherited = context.at_original.get((difference.change, difference.person_id))
    if inherited is None:
        return None
    return _because(
        difference, inherited.cause, f"as at the original state: {inherited.explanation}"
    )


def _unless_model_changed(difference: Difference, context: Context) -> Difference:
    """A difference nothing else explained: the change of model does, if the model changed."""
    if context.model_change is not None:
        return _because(difference, MODEL, "the active model changed (see above)")
    return difference


def _because(difference: Difference, cause: str, why: str) -> Difference:
    difference.cause = cause
    difference.explanation = f"{difference.explanation}: {why}"
    return difference


def _who(candidate: dict[str, Any]) -> str:
    return f"{candidate['external_ref']} (person {candidate['person_id']})"


def _named(difference: Difference) -> str:
    return f"{difference.external_ref} (person {difference.person_id}, {difference.cause})"


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment is not None else "an unknown date"


def _best(candidate: dict[str, Any]) -> int:
    return candidate["images"][0]["image_id"]


def _during(gallery: Gallery, image_ids: list[int]) -> str:
    deleted = "; ".join(gallery.deletion(i) for i in image_ids)
    return (
        f"{deleted}, while the search was being answered (it was recorded on "
        f"{_when(gallery.searched_at)}): the search had already ranked it; the re-run, at the "
        "gallery as it was when the search was recorded, leaves it out"
    )


def _approximate(context: Context, c: dict[str, Any]) -> str:
    index = context.index
    settings = ", ".join(f"{k}={v}" for k, v in sorted((index.get("parameters") or {}).items()))
    return (
        f"the stored answer came from an approximate {index.get('kind')} index"
        f"{f' ({settings})' if settings else ''}, which did not return image {_best(c)} "
        f"(similarity {c['similarity']:.6f}); the exact scan does"
    )


def _matches(filters: SearchFilters, person: Person, image: Image) -> bool:
    return (
        (filters.sex is None or person.sex == filters.sex)
        and (filters.birth_year_min is None or (person.birth_year or 0) >= filters.birth_year_min)
        and (
            filters.birth_year_max is None
            or (person.birth_year is not None and person.birth_year <= filters.birth_year_max)
        )
        and (filters.body_part is None or image.body_part == filters.body_part)
        and (filters.side is None or image.side == filters.side)
    )


def _filter_words(filters: SearchFilters) -> str:
    return ", ".join(f"{k}={v}" for k, v in asdict(filters).items() if v is not None)


def _audit(service: Service, search_id: int, key_id: int | None, response: dict[str, Any]) -> None:
    then, now = response["at_original"], response["now"]
    with service.sessions.begin() as session:
        session.add(
            AuditEntry(
                key_id=key_id,
                action="search.rerun",
                target_type="search",
                target_id=search_id,
                details={
                    "identical": then["identical"],
                    "unexplained": then["unexplained"],
                    "now_identical": now["identical"],
                    "now_unexplained": now["unexplained"],
                    "now_model_version": now["model_version"]["id"],
                    "now_index_generation": now["index_generation"],
                },
            )
        )
