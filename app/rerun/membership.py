"""Explaining who entered or left the top k: people the stored answer had and the re-run lacks,
people the re-run found and the stored answer lacks, and people pushed across the boundary by
others who moved for reasons of their own."""

from __future__ import annotations

from collections.abc import Sequence

from app.rerun.causes import Cause, Change, Difference, because
from app.rerun.context import Context, as_at_original, unless_model_changed
from app.rerun.words import approximate, named, when
from app.search.answer import Candidate


def explain_removed(c: Candidate, rerun_: Sequence[Candidate], context: Context) -> Difference:
    gallery, person_id = context.gallery, c.person_id
    person = gallery.people[person_id]
    best = c.best_image_id
    shown = [m.image_id for m in c.images]
    where = "now" if context.now else "at the original state"
    difference = Difference(
        Change.REMOVED,
        Cause.UNEXPLAINED,
        f"{c.who} was rank {c.rank} in the stored answer but is not among the "
        f"{len(rerun_)} people the exact re-run {where} found",
        person_id=person_id,
        external_ref=c.external_ref,
        original_rank=c.rank,
        original_similarity=c.similarity,
    )
    if not context.now:
        if all(gallery.deleted_before(i) for i in shown):
            return because(difference, Cause.DELETED_DURING, gallery.deleted_during(shown))
    else:
        if person.deleted_at is not None and person.deleted_at > gallery.searched_at:
            reason = gallery.reasons.get(("person", person_id))
            said = f" (reason: {reason})" if reason else ""
            return because(
                difference,
                Cause.DELETED_SINCE,
                f"{c.who} was deleted on {when(person.deleted_at)}{said}",
            )
        if gallery.deleted_since(best):
            left = [
                i for i in gallery.images_of[person_id] if i.deleted_at is None and i.id != best
            ]
            rest = f"{c.who} has no images left"
            if left:
                rest = "its other images rank below the top k"
                if context.filters.any():
                    rest += f" or do not match the filters ({context.filters.words()})"
            return because(
                difference,
                Cause.DELETED_SINCE,
                f"its best match, {gallery.deletion(best)}; {rest}",
            )
        if (inherited := as_at_original(difference, context)) is not None:
            return inherited
    if context.filters.any() and not context.filters.matches(person, gallery.images[best]):
        return because(
            difference,
            Cause.FILTERS,
            f"{c.who} no longer matches the filters ({context.filters.words()}): its "
            "attributes were changed after the search",
        )
    edit = gallery.edit(person_id, shown)
    if context.filters.any() and edit is not None:
        return because(difference, Cause.FILTERS, edit)
    return unless_model_changed(difference, context)


def explain_added(c: Candidate, original: Sequence[Candidate], context: Context) -> Difference:
    gallery, person_id = context.gallery, c.person_id
    person = gallery.people[person_id]
    best = c.best_image_id
    difference = Difference(
        Change.ADDED,
        Cause.UNEXPLAINED,
        f"{c.who} is rank {c.rank} (similarity {c.similarity:.6f}) in the exact re-run "
        f"{'now' if context.now else 'at the original state'} but not in the stored answer",
        person_id=person_id,
        external_ref=c.external_ref,
        rank=c.rank,
        similarity=c.similarity,
    )
    if context.now:
        if person.created_at > gallery.searched_at:
            return because(
                difference,
                Cause.ADDED_SINCE,
                f"added to the gallery on {when(person.created_at)}, after the search",
            )
        added = gallery.added_since(best)
        if added is not None:
            return because(difference, Cause.ADDED_SINCE, f"its best match: {added}")
        if (inherited := as_at_original(difference, context)) is not None:
            return inherited
    elif not context.index.get("exact", True):
        last = original[-1].similarity if original else None
        if len(original) < context.k or last is None or c.similarity >= last - context.drift:
            return because(difference, Cause.APPROXIMATE, approximate(context.index, c))
    edit = gallery.edit(person_id, [m.image_id for m in c.images])
    if context.filters.any() and edit is not None:
        return because(difference, Cause.FILTERS, edit)
    return unless_model_changed(difference, context)


def explain_shifted_out(
    removed: dict[int, Difference],
    explained: dict[int, Difference],
    original: Sequence[Candidate],
    rerun_: Sequence[Candidate],
    context: Context,
) -> None:
    """People pushed below rank k by people who overtook them for explained reasons (newcomers,
    or a better image), or tied with the last one."""
    if len(rerun_) < context.k:
        return
    last = rerun_[-1]
    then = {c.person_id: c.similarity for c in original}
    for difference in removed.values():
        if difference.explained:
            continue
        similarity = difference.original_similarity
        if _tied_with_last(
            difference, similarity, last, context, f" at rank {len(rerun_)}, the last place"
        ):
            continue
        overtook = [
            c.person_id
            for c in rerun_
            if c.similarity > similarity and then.get(c.person_id, -2.0) < similarity
        ]
        reasons = [explained.get(p) for p in overtook]
        if overtook and all(d is not None and d.explained for d in reasons):
            because(
                difference,
                Cause.SHIFT,
                f"pushed below rank {context.k} by {', '.join(named(d) for d in reasons)}",
            )


def explain_shifted_in(
    added: dict[int, Difference],
    removed: dict[int, Difference],
    original: Sequence[Candidate],
    context: Context,
) -> None:
    """People who enter the top k, below everyone who stayed, because as many people left it
    for explained reasons; or tied with the stored answer's last one."""
    if len(original) < context.k:
        return
    last = original[-1]
    gone = [d for d in removed.values() if d.explained and d.cause not in (Cause.SHIFT, Cause.TIE)]
    for difference in sorted(added.values(), key=lambda d: d.rank):
        if difference.explained:
            continue
        similarity = difference.similarity
        if _tied_with_last(difference, similarity, last, context, ", last in the stored answer"):
            continue
        if gone and similarity <= last.similarity + context.drift:
            because(
                difference,
                Cause.SHIFT,
                f"it moves into the top {context.k} because {named(gone.pop(0))} left",
            )


def _tied_with_last(
    difference: Difference, similarity: float, last: Candidate, context: Context, place: str
) -> bool:
    """Whether the person ties with the last of the top k: then which of them is shown is the
    order of ties."""
    if abs(last.similarity - similarity) > context.drift:
        return False
    because(
        difference,
        Cause.TIE,
        f"its similarity {similarity:.6f} equals, within {context.drift:g}, that of "
        f"{last.who}{place}; which of them is shown is the order of ties",
    )
    return True
