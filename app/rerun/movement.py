"""Explaining how a person found in both answers moved: their similarity, their rank, and (at the
original state) the images retrieved for them."""

from __future__ import annotations

from collections.abc import Sequence

from app.rerun.causes import Cause, Change, Difference, because, unexplained_change
from app.rerun.context import Context, as_at_original, unless_model_changed
from app.rerun.words import approximate
from app.search.answer import Candidate

# Similarities this close are the same number (float32 sums in another order).
IDENTICAL = 1e-5


def explain_similarity(before: Candidate, after: Candidate, context: Context):
    """The person's best match changed, or its similarity moved by more than IDENTICAL."""
    gallery = context.gallery
    old, new = before.best_image_id, after.best_image_id
    gap = abs(before.similarity - after.similarity)
    if old == new and gap <= IDENTICAL:
        return None
    difference = unexplained_change(
        Change.SIMILARITY,
        f"{before.who}'s similarity is {after.similarity:.6f} (image {new}); the stored "
        f"answer had {before.similarity:.6f} (image {old})",
        before,
        after,
    )
    if old == new:
        if context.model_change is not None:
            return because(difference, Cause.MODEL, "the active model changed (see above)")
        if gap <= context.drift:
            return because(
                difference,
                Cause.DRIFT,
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
            return because(
                difference, Cause.DELETED_SINCE, f"its best match then, {gallery.deletion(old)}"
            )
        added = gallery.added_since(new)
        if added is not None:
            return because(difference, Cause.ADDED_SINCE, f"its best match now: {added}")
        if (inherited := as_at_original(difference, context)) is not None:
            return inherited
        return unless_model_changed(difference, context)
    if gallery.deleted_before(old):
        return because(difference, Cause.DELETED_DURING, gallery.deleted_during([old]))
    if not context.index.get("exact", True) and after.similarity > before.similarity:
        return because(difference, Cause.APPROXIMATE, approximate(context.index, after))
    if gap <= context.drift:
        return because(
            difference,
            Cause.TIE,
            "two of its images are equally similar, within floating-point rounding; which is "
            "shown first is the order of ties",
        )
    return difference


def explain_rank(
    before: Candidate,
    after: Candidate,
    original: Sequence[Candidate],
    rerun_: Sequence[Candidate],
    own: dict[int, Difference],
    context: Context,
) -> Difference:
    """A rank change, explained by the people who came above it or left, each for a reason."""
    person_id = before.person_id
    above_then = {c.person_id for c in original[: before.rank - 1]}
    above_now = {c.person_id for c in rerun_[: after.rank - 1]}
    by_id = {c.person_id: c for c in original} | {c.person_id: c for c in rerun_}
    difference = unexplained_change(
        Change.RANK,
        f"{before.who} is rank {after.rank}; the stored answer had it at rank {before.rank}",
        before,
        after,
    )
    reasons, missing, ties = [], [], 0
    for other, moved in [(p, "now above it") for p in sorted(above_now - above_then)] + [
        (p, "no longer above it") for p in sorted(above_then - above_now)
    ]:
        explained = own.get(other)
        if explained is not None and explained.explained:
            reasons.append(f"{by_id[other].who} is {moved} ({explained.cause})")
        elif person_id in own and own[person_id].explained:
            reasons.append(f"{by_id[other].who} is {moved}: its own similarity changed")
        elif _tied(by_id, before, other, original, rerun_, context.drift):
            ties += 1
            reasons.append(f"{by_id[other].who} is {moved}: equal similarity, order of ties")
        else:
            missing.append(f"{by_id[other].who} is {moved} for no reason found")
    if missing:
        difference.explanation += "; " + "; ".join(reasons + missing)
        return unless_model_changed(difference, context)
    cause = Cause.TIE if ties == len(reasons) else Cause.SHIFT
    return because(difference, cause, "; ".join(reasons))


def _tied(
    by_id: dict[int, Candidate],
    before: Candidate,
    other: int,
    original: Sequence[Candidate],
    rerun_: Sequence[Candidate],
    drift: float,
) -> bool:
    """Whether the two people's similarities are equal within the drift, then and now."""
    then = {c.person_id: c.similarity for c in original}
    now = {c.person_id: c.similarity for c in rerun_}
    pairs = [(then.get(before.person_id), then.get(other))]
    pairs.append((now.get(before.person_id), now.get(other)))
    known = [(a, b) for a, b in pairs if a is not None and b is not None]
    return bool(known) and all(abs(a - b) <= drift for a, b in known)


def explain_images(before: Candidate, after: Candidate, context: Context):
    """The person's retrieved images (ids and similarities), at the original state."""
    old = [(m.image_id, m.similarity) for m in before.images]
    new = [(m.image_id, m.similarity) for m in after.images]
    if [i for i, _ in old] == [i for i, _ in new] and all(
        abs(a - b) <= IDENTICAL for (_, a), (_, b) in zip(old, new, strict=True)
    ):
        return None
    gallery = context.gallery
    difference = unexplained_change(
        Change.IMAGES,
        f"{before.who}'s retrieved images are {[i for i, _ in new]}; the stored answer "
        f"showed {[i for i, _ in old]}",
        before,
        after,
    )
    if [i for i, _ in old] == [i for i, _ in new]:
        gap = max(abs(a - b) for (_, a), (_, b) in zip(old, new, strict=True))
        if gap <= context.drift:
            return because(
                difference,
                Cause.DRIFT,
                f"the same images, similarities moved by at most {gap:.2g} (floating-point "
                "rounding when the query is embedded again)",
            )
        return difference
    dropped = sorted({i for i, _ in old} - {i for i, _ in new})
    if dropped and all(gallery.deleted_before(i) for i in dropped):
        return because(difference, Cause.DELETED_DURING, gallery.deleted_during(dropped))
    if not context.index.get("exact", True):
        return because(
            difference,
            Cause.APPROXIMATE,
            f"the approximate {context.index.get('kind')} index retrieves a different set of "
            "images than an exact scan",
        )
    return difference
