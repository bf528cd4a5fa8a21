"""Training batches: identity-balanced, reproducible, shared between processes without overlap."""

from __future__ import annotations

import pytest
import torch

from model.preprocess import Preprocessing
from training.data import IdentityBatches, augment

# 10 people with 6 images each and one person with only 2
LABELS = torch.tensor([p for p in range(10) for _ in range(6)] + [10, 10])


def plan(epoch: int = 0, **options) -> list[list[tuple[int, int]]]:
    settings = {"people_per_batch": 4, "images_per_person": 4, "batches": 12, "seed": 0}
    batches = IdentityBatches(LABELS, **(settings | options))
    batches.set_epoch(epoch)
    return list(batches)


def test_every_batch_is_p_distinct_people_with_k_images_each():
    batches = plan()
    assert len(batches) == 12
    seen = set()
    for batch in batches:
        people = LABELS[[index for index, _ in batch]].view(4, 4)
        assert (people == people[:, :1]).all()  # K consecutive images of one person
        assert len(set(people[:, 0].tolist())) == 4
        seen |= set(people[:, 0].tolist())
        for row in people.tolist():
            if row[0] != 10:  # a person with enough images never repeats one
                indices = [i for i, _ in batch if LABELS[i] == row[0]]
                assert len(set(indices)) == 4
    assert seen == set(range(11))  # shuffled cycles visit everybody


def test_the_plan_depends_only_on_seed_and_epoch():
    assert plan() == plan()
    assert plan() != plan(epoch=1)
    assert plan() != plan(seed=1)


def test_processes_share_one_plan_without_overlap():
    whole = plan(batches=7)
    first, second = plan(batches=7, rank=0, world_size=2), plan(batches=7, rank=1, world_size=2)
    assert first == whole[0::2] and second == whole[1::2]
    shard = IdentityBatches(LABELS, 4, 4, 7, seed=0, rank=1, world_size=2)
    assert len(shard) == 3


def test_refuses_batches_it_cannot_build():
    with pytest.raises(ValueError, match="at least that many"):
        IdentityBatches(LABELS, 12, 4, 1, seed=0)
    with pytest.raises(ValueError, match="two people"):
        IdentityBatches(torch.zeros(5, dtype=torch.long), 1, 4, 1, seed=0)


def test_augmentation_is_reproducible_and_random():
    prep = Preprocessing(input_size=64)
    image = torch.rand(1, prep.resize, prep.resize)
    first = augment(image, prep, torch.Generator().manual_seed(5))
    assert first.shape == (1, 64, 64)
    assert torch.equal(first, augment(image, prep, torch.Generator().manual_seed(5)))
    assert not torch.equal(first, augment(image, prep, torch.Generator().manual_seed(6)))


def test_the_radiograph_augmentation_draws_more_changes_from_the_same_seed():
    prep = Preprocessing(input_size=64)
    image = torch.rand(1, prep.resize, prep.resize)
    outputs = [
        augment(image, prep, torch.Generator().manual_seed(seed), "radiograph") for seed in range(8)
    ]
    again = augment(image, prep, torch.Generator().manual_seed(0), "radiograph")
    assert torch.equal(outputs[0], again) and outputs[0].shape == (1, 64, 64)
    paper = [augment(image, prep, torch.Generator().manual_seed(seed)) for seed in range(8)]
    assert all(not torch.equal(o, p) for o, p in zip(outputs, paper, strict=True))
    # More varied than the paper's: its windows, edges and occlusions spread the images further.
    spread = torch.stack(outputs).std(dim=0).mean()
    assert spread > torch.stack(paper).std(dim=0).mean()
