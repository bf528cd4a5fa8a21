"""The ANN benchmark's structured gallery: the three covariances fitted from embeddings are the
ones they were drawn with, and a drawn gallery keeps each image with its person."""

from __future__ import annotations

import numpy as np
import pytest

from bench.ann import measured_structure, structured_data
from bench.embedding_structure import EmbeddingStructure, summary
from tests.support.servers import seeded_checkpoint
from training.cohorts import read_knee_manifest

DIM = 8


def drawn_cohort(rng, people=400, visits=6, images=2):
    """Embeddings with known parts: person spread 1.0, visit 0.3, image 0.1 (per dimension)."""
    centres = rng.standard_normal((people, DIM))
    deviations = 0.3 * rng.standard_normal((people, visits, DIM))
    residuals = 0.1 * rng.standard_normal((people, visits, images, DIM))
    embeddings = (centres[:, None, None] + deviations[:, :, None] + residuals).reshape(-1, DIM)
    person = np.repeat(np.arange(people), visits * images)
    visit = np.tile(np.repeat(np.arange(visits) * 12.0, images), people)
    return embeddings, person.astype(str), visit


def spread(factor: np.ndarray) -> np.ndarray:
    """The per-dimension standard deviation a factor draws with."""
    return np.sqrt(np.diag(factor.T @ factor))


def test_fitting_recovers_the_parts_the_embeddings_were_drawn_with():
    embeddings, people, visits = drawn_cohort(np.random.default_rng(0))
    structure = EmbeddingStructure.fit(embeddings, people, visits)
    # A centre is the mean of 12 images: its spread carries a little of theirs (0.3^2 / 6).
    assert spread(structure.person) == pytest.approx(np.full(DIM, 1.0), rel=0.12)
    # A visit mean holds half an image residual's variance beside the visit's own.
    assert spread(structure.visit) == pytest.approx(np.full(DIM, 0.3), rel=0.12)
    # Residuals about a visit mean of two images have half the variance they were drawn with.
    assert spread(structure.image) == pytest.approx(np.full(DIM, 0.1 / np.sqrt(2)), rel=0.12)


def test_a_drawn_gallery_keeps_images_with_their_people():
    embeddings, people, visits = drawn_cohort(np.random.default_rng(1))
    structure = EmbeddingStructure.fit(embeddings, people, visits)
    gallery, queries, query_people = structured_data(structure, 4_000, 1_000, 50, seed=0)
    assert gallery.shape == (4_000, DIM) and queries.shape == (50, DIM)
    np.testing.assert_allclose(np.linalg.norm(gallery, axis=1), 1.0, rtol=1e-5)
    drawn = summary(gallery, np.arange(4_000) % 1_000)
    assert drawn["genuine_cosine_mean"] > drawn["impostor_cosine_mean"] + 0.2
    # A query (a new visit) finds its own person's images among its nearest four (chance: 1 in 1,000).
    nearest = np.argsort(-(queries @ gallery.T), axis=1)[:, :4]
    assert (nearest % 1_000 == query_people[:, None]).mean() > 0.5


def test_the_structure_is_measured_from_the_embedder_itself(phantom_manifest, tmp_path):
    checkpoint = seeded_checkpoint(tmp_path / "checkpoint.pt")
    structure, source = measured_structure(checkpoint, phantom_manifest)
    records = read_knee_manifest(phantom_manifest)
    assert source["images"] == len(records) and structure.dim == 128
    assert source["people"] == len({r.person_id for r in records})
    measured = source["measured"]
    assert -1 <= measured["impostor_cosine_mean"] < measured["genuine_cosine_mean"] <= 1
