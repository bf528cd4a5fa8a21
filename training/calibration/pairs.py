"""Scored pairs of images: the data a calibration is fitted on and validated with.

Every same-person pair is kept, because they are few and they carry the numerator of every
likelihood ratio; different-person pairs grow with the square of the images, so at most
`max_different` of them are kept, a seeded uniform sample. A pair is (i, j) with i < j, and the
pairs are ordered by (i, j), so the same inputs always give the same Pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Pairs whose similarities are computed at once: bounds the (chunk, d) temporaries.
_SIMILARITY_CHUNK = 8192


@dataclass(frozen=True, eq=False)
class Pairs:
    """Scored pairs of images of people never trained on: what a calibration is fitted on."""

    images: tuple[str, ...]  # an identifier per image (e.g. "P0012/48/L" or a file name)
    people: tuple[str, ...]  # the person of each image (same length as images)
    first: np.ndarray  # int64 index into images
    second: np.ndarray  # int64 index into images
    similarity: np.ndarray  # float64 cosine similarity
    years: np.ndarray  # float64 years between the two images, NaN where unknown

    @property
    def same(self) -> np.ndarray:
        """True where both images are of one person."""
        people = np.asarray(self.people, dtype=object)
        return people[self.first] == people[self.second]

    def __len__(self) -> int:
        return len(self.first)

    def subset(self, mask: np.ndarray) -> Pairs:
        """The pairs selected by a boolean mask (or index array); images and people stay whole, so
        the indices keep their meaning."""
        return Pairs(
            self.images,
            self.people,
            self.first[mask],
            self.second[mask],
            self.similarity[mask],
            self.years[mask],
        )

    def as_json(self) -> dict[str, Any]:
        """Plain lists; Python's float repr round-trips float64 exactly. Unknown years are null,
        since NaN is not JSON."""
        return {
            "images": list(self.images),
            "people": list(self.people),
            "first": self.first.tolist(),
            "second": self.second.tolist(),
            "similarity": self.similarity.tolist(),
            "years": np.where(np.isnan(self.years), None, self.years).tolist(),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Pairs:
        return cls(
            tuple(d["images"]),
            tuple(d["people"]),
            np.asarray(d["first"], dtype=np.int64),
            np.asarray(d["second"], dtype=np.int64),
            np.asarray(d["similarity"], dtype=np.float64),
            np.array(d["years"], dtype=np.float64),  # null -> NaN
        )


def scored_pairs(
    images: Sequence[str],
    people: Sequence[str],
    months: Sequence[float] | np.ndarray,
    embeddings: np.ndarray,
    *,
    max_different: int = 50_000,
    seed: int = 0,
) -> Pairs:
    """Every same-person pair (i < j) of the images and at most `max_different` different-person
    pairs, with their cosine similarity and the years between the images.

    months: months since an arbitrary origin per image, NaN where unknown. The embeddings are
    normalised here, so the score is the cosine whatever the rows' lengths (a zero row scores 0).
    """
    n = len(images)
    if not len(people) == len(months) == len(embeddings) == n:
        raise ValueError("images, people, months and embeddings must have one entry per image")
    person = np.unique(np.asarray(people, dtype=object), return_inverse=True)[1].ravel()
    same_first, same_second = _same_person_pairs(person)
    diff_first, diff_second = _different_person_pairs(person, max_different, seed)
    first = np.concatenate([same_first, diff_first])
    second = np.concatenate([same_second, diff_second])
    order = np.lexsort((second, first))
    first, second = first[order], second[order]
    month = np.asarray(months, dtype=np.float64)
    return Pairs(
        tuple(images),
        tuple(people),
        first,
        second,
        _cosine(np.asarray(embeddings, dtype=np.float64), first, second),
        np.abs(month[first] - month[second]) / 12.0,
    )


def _same_person_pairs(person: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (i, j), i < j, of images of one person: each image pairs with the later images of its
    group in person order."""
    order = np.argsort(person, kind="stable")
    grouped = person[order]
    group_end = np.searchsorted(grouped, grouped, side="right")
    partners = group_end - np.arange(len(grouped)) - 1  # later images of the same person
    left = np.repeat(np.arange(len(grouped)), partners)
    starts = np.cumsum(partners) - partners
    right = left + 1 + np.arange(len(left)) - np.repeat(starts, partners)
    a, b = order[left], order[right]
    return np.minimum(a, b).astype(np.int64), np.maximum(a, b).astype(np.int64)


def _different_person_pairs(
    person: np.ndarray, max_different: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """All different-person pairs, or a uniform sample of `max_different` of them without
    replacement: a random sample of pair numbers (0 .. n(n-1)/2 - 1, row by row of the upper
    triangle), the same-person ones dropped, the first `max_different` kept."""
    n = len(person)
    total = n * (n - 1) // 2
    counts = np.bincount(person) if n else np.zeros(0, dtype=np.int64)
    different = total - int(np.sum(counts * (counts - 1) // 2))
    if different <= max_different:
        first, second = np.triu_indices(n, k=1)
        keep = person[first] != person[second]
        return first[keep].astype(np.int64), second[keep].astype(np.int64)
    rng = np.random.default_rng(seed)
    draw = min(total, int(max_different * total / different * 1.05) + 64)
    while True:  # rarely more than once: the draw expects 5% more than needed
        number = rng.choice(total, size=draw, replace=False)
        first, second = _pair_of_number(number, n)
        keep = np.flatnonzero(person[first] != person[second])[:max_different]
        if len(keep) == max_different:
            return first[keep], second[keep]
        draw = min(total, 2 * draw)


def _pair_of_number(number: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The pair (i, j) numbered k when the upper triangle is read row by row; row i starts at
    i*n - i*(i+1)/2. The float root can be off by one, which the two corrections fix."""
    k = number.astype(np.int64)
    root = np.sqrt((2.0 * n - 1.0) ** 2 - 8.0 * k)
    i = np.floor(((2 * n - 1) - root) / 2).astype(np.int64)
    for _ in range(2):
        i = np.where(_row_start(i, n) > k, i - 1, i)
        i = np.where(_row_start(i + 1, n) <= k, i + 1, i)
    return i, k - _row_start(i, n) + i + 1


def _row_start(i: np.ndarray, n: int) -> np.ndarray:
    return i * n - i * (i + 1) // 2


def _cosine(embeddings: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    unit = np.divide(embeddings, norms, out=np.zeros_like(embeddings), where=norms > 0)
    similarity = np.empty(len(first), dtype=np.float64)
    for start in range(0, len(first), _SIMILARITY_CHUNK):
        part = slice(start, start + _SIMILARITY_CHUNK)
        similarity[part] = np.einsum("ij,ij->i", unit[first[part]], unit[second[part]])
    return similarity
