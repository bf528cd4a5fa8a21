"""The ranking benchmark's person scores: the mean of each person's best m gallery similarities,
computed for every query at once, equal a person-by-person reading of the same matrix."""

from __future__ import annotations

import pytest
import torch

from bench.ranking_options import person_scores


@pytest.mark.parametrize("best_of", [1, 2, 3])
def test_person_scores_are_each_persons_mean_of_their_best_similarities(best_of):
    generator = torch.Generator().manual_seed(0)
    owners = torch.tensor([2, 0, 1, 0, 2, 2, 0, 1, 2])  # people with 3, 2 and 4 images
    similarities = torch.rand(5, len(owners), generator=generator) * 2 - 1
    scores = person_scores(similarities, owners, best_of)
    for query in range(len(similarities)):
        for person in range(3):
            own = similarities[query, owners == person].sort(descending=True).values
            assert scores[query, person] == pytest.approx(own[:best_of].mean().item(), abs=1e-6)


def test_a_person_without_gallery_images_never_ranks():
    scores = person_scores(torch.tensor([[0.1, 0.2]]), torch.tensor([0, 2]), best_of=2)
    assert scores[0, 1] == float("-inf") and scores.argmax().item() == 2
