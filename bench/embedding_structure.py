"""A gallery of any size with the structure of a trained embedder's real outputs, for bench/ann.py.

Embedding a million radiographs is out of reach here (hours of synthesis and inference), and
vectors drawn at random are the wrong test: in 128 dimensions they are nearly orthogonal, so a
query's exact top 10 beyond its own person is a set of near-ties that no index can reach. Real
embeddings are anisotropic and clustered (anatomy, age, acquisition), so the structure is measured
from the embedder itself: its unit embeddings of phantom people it never trained on are split into
three Gaussian parts, each with its own full covariance,

    image = person centre + visit deviation + image residual, then normalised,

- person centre: the mean of a person's embeddings, over people;
- visit deviation: the mean of a visit's embeddings less its person's centre (ageing, disease,
  the acquisition of that day);
- image residual: an embedding less its visit's mean (which knee, positioning).

New people, visits and images are drawn from those Gaussians. What this leaves out, and what it
adds: a visit's deviation is drawn without regard to how many years separate it from another
(a real drift grows with the interval), and each person centre's covariance carries a little of
the within-person spread (a centre is a mean of about 14 images), which makes people slightly
more separable than measured. `summary` compares the drawn embeddings with the measured ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def _factor(samples: np.ndarray) -> np.ndarray:
    """F with F.T @ F = the samples' covariance, so z @ F for z ~ N(0, I) has that covariance."""
    covariance = np.cov(samples, rowvar=False)
    values, vectors = np.linalg.eigh(covariance)
    return (vectors * np.sqrt(np.clip(values, 0, None))).T.astype(np.float32)


def _group_means(embeddings: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean of each group (groups numbered 0..G-1), and each row's group mean."""
    count = int(groups.max()) + 1
    sums = np.zeros((count, embeddings.shape[1]))
    np.add.at(sums, groups, embeddings)
    means = sums / np.bincount(groups, minlength=count)[:, None]
    return means, means[groups]


@dataclass(frozen=True)
class EmbeddingStructure:
    mean: np.ndarray  # (D,) the mean person centre
    person: np.ndarray  # (D, D) factors of the three covariances
    visit: np.ndarray
    image: np.ndarray

    @classmethod
    def fit(
        cls, embeddings: np.ndarray, people: Sequence[str], visits: Sequence[float]
    ) -> EmbeddingStructure:
        embeddings = np.asarray(embeddings, dtype=np.float64)
        _, person_of = np.unique(np.asarray(people), return_inverse=True)
        visit_keys = person_of * 10_000 + np.round(np.asarray(visits)).astype(np.int64)
        _, first_row, visit_of = np.unique(visit_keys, return_index=True, return_inverse=True)
        centres, _ = _group_means(embeddings, person_of)
        visit_means, visit_mean_of_row = _group_means(embeddings, visit_of)
        deviations = visit_means - centres[person_of[first_row]]
        return cls(
            mean=centres.mean(axis=0).astype(np.float32),
            person=_factor(centres),
            visit=_factor(deviations),
            image=_factor(embeddings - visit_mean_of_row),
        )

    @property
    def dim(self) -> int:
        return len(self.mean)

    def centres(self, count: int, rng: np.random.Generator) -> np.ndarray:
        return self.mean + self._draw(self.person, count, rng)

    def visits(self, count: int, rng: np.random.Generator) -> np.ndarray:
        return self._draw(self.visit, count, rng)

    def images(self, visit_points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Unit embeddings of one new image at each (centre + visit deviation)."""
        images = visit_points + self._draw(self.image, len(visit_points), rng)
        images /= np.linalg.norm(images, axis=1, keepdims=True)
        return images

    def _draw(self, factor: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
        return rng.standard_normal((count, self.dim), dtype=np.float32) @ factor


def summary(embeddings: np.ndarray, people: np.ndarray, sample: int = 4_000) -> dict[str, float]:
    """What decides how hard a gallery is to search: the cosine between two images of a person,
    and between images of two people (its mean and its far tail, where the exact top 10 lies),
    and how many dimensions the embeddings spread over (the covariance's participation ratio)."""
    rng = np.random.default_rng(0)
    rows = rng.choice(len(embeddings), size=min(sample, len(embeddings)), replace=False)
    vectors, owners = embeddings[rows], np.asarray(people)[rows]
    cosines = vectors @ vectors.T
    same = owners[:, None] == owners[None, :]
    off_diagonal = ~np.eye(len(rows), dtype=bool)
    genuine, impostor = cosines[same & off_diagonal], cosines[~same]
    values = np.linalg.eigvalsh(np.cov(vectors, rowvar=False))
    return {
        "genuine_cosine_mean": round(float(genuine.mean()), 4),
        "impostor_cosine_mean": round(float(impostor.mean()), 4),
        "impostor_cosine_p99_99": round(float(np.quantile(impostor, 0.9999)), 4),
        "participation_ratio": round(float(values.sum() ** 2 / (values**2).sum()), 1),
    }
