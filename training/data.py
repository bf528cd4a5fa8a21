"""Training batches: P people x K images each, with the paper's augmentations.

Every random choice of an epoch (which people and images form each batch, every image's crop,
rotation, gamma and noise) is drawn from a generator seeded by (seed, epoch). A run is therefore
reproducible whatever the number of loader processes, and a resumed run continues exactly as an
uninterrupted one would have. Under torch.distributed each process takes every world_size-th batch
of the same epoch plan, so that together they cover it once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torchvision.transforms.v2.functional as TF
from torch.utils.data import Dataset
from tqdm import tqdm

from model.preprocess import Preprocessing, final_crop
from training.embedders import load_resized
from training.records import ImageRecord

# The augmentation of docs/method.md ("The embedder"): rotation within +-10 degrees, gamma in
# [0.5, 1.5] with p = 0.5 and Gaussian noise with p = 0.5. The paper does not give the noise level;
# 0.02 of the display range is about the quantum noise of a well-exposed radiograph.
ROTATION_DEGREES = 10.0
GAMMA_RANGE = (0.5, 1.5)
NOISE_STD = 0.02
AUGMENT_PROBABILITY = 0.5


# What the "radiograph" augmentation adds, from what differs between the phantom's X-ray systems and
# exposures (training/phantom/render.py): the scale an anatomy is shown at (magnification, and the
# pixel spacing a DICOM header rounds), the window a reader's histogram analysis picks, the
# detector's edge enhancement (or a softer system's blur), and what covers the anatomy (burned-in
# markers, implants, collimation).
SCALE_SPREAD = 0.1  # zoom within 1 +- this
WINDOW_SPREAD = 0.1  # black and white levels move by up to this share of the range
EDGE_AMOUNT = (-0.6, 0.8)  # unsharp-mask amount; below zero it blurs
OCCLUSION_SIDE = (0.1, 0.3)  # an occluding rectangle's sides, as shares of the image's


def augment(
    image: torch.Tensor,
    prep: Preprocessing,
    generator: torch.Generator,
    augmentation: str = "paper",
) -> torch.Tensor:
    """A resized image (1, R, R) in [0, 1] -> a randomly augmented, cropped, normalised input."""
    draws = torch.rand(5, generator=generator).tolist()
    angle = (2 * draws[0] - 1) * ROTATION_DEGREES
    if augmentation == "radiograph":
        image = _acquisition_changes(image, angle, torch.rand(12, generator=generator).tolist())
    else:
        image = TF.rotate(image, angle, interpolation=TF.InterpolationMode.BILINEAR)
    if draws[1] < AUGMENT_PROBABILITY:
        low, high = GAMMA_RANGE
        image = image.clamp(0, 1) ** (low + (high - low) * draws[2])
    if draws[3] < AUGMENT_PROBABILITY:
        image = image + NOISE_STD * torch.randn(image.shape, generator=generator)
    return final_crop(image, prep, generator)


def _acquisition_changes(image: torch.Tensor, angle: float, draws: list[float]) -> torch.Tensor:
    """Rotation by `angle` with a random zoom, then (each with AUGMENT_PROBABILITY) another window,
    edge enhancement or blur, and an occluding rectangle of a random grey, from 12 draws in [0, 1)."""
    scale = 1 + (2 * draws[0] - 1) * SCALE_SPREAD
    image = TF.affine(
        image,
        angle=angle,
        translate=[0, 0],
        scale=scale,
        shear=[0.0, 0.0],
        interpolation=TF.InterpolationMode.BILINEAR,
    )
    if draws[1] < AUGMENT_PROBABILITY:
        black = (2 * draws[2] - 1) * WINDOW_SPREAD
        white = 1 + (2 * draws[3] - 1) * WINDOW_SPREAD
        image = (image - black) / (white - black)
    if draws[4] < AUGMENT_PROBABILITY:
        low, high = EDGE_AMOUNT
        amount = low + (high - low) * draws[5]
        image = image + amount * (image - TF.gaussian_blur(image, [5, 5], [1.0, 1.0]))
    if draws[6] < AUGMENT_PROBABILITY:
        side = image.shape[-1]
        low, high = OCCLUSION_SIDE
        height, width = (round(side * (low + (high - low) * d)) for d in draws[7:9])
        top, left = round((side - height) * draws[9]), round((side - width) * draws[10])
        image = image.clone()
        image[..., top : top + height, left : left + width] = draws[11]
    return image


class TrainingImages(Dataset):
    """Items are addressed by (record index, augmentation seed) and are (input, identity label)."""

    def __init__(
        self,
        records: Sequence[ImageRecord],
        prep: Preprocessing,
        cache: bool,
        progress: bool,
        augmentation: str = "paper",
    ):
        self.records = list(records)
        self.prep = prep
        self.augmentation = augmentation
        people = {pid: i for i, pid in enumerate(sorted({r.person_id for r in self.records}))}
        self.labels = torch.tensor([people[r.person_id] for r in self.records])
        self.cached: torch.Tensor | None = None
        if cache:
            loading = tqdm(self.records, desc="decode", unit="img", disable=not progress)
            self.cached = torch.stack([load_resized(r, prep) for r in loading])

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, seed = item
        image = self.cached[index] if self.cached is not None else None
        if image is None:
            image = load_resized(self.records[index], self.prep)
        generator = torch.Generator().manual_seed(seed)
        return augment(image, self.prep, generator, self.augmentation), self.labels[index]


class IdentityBatches:
    """The batch plan of each epoch: lists of (record index, augmentation seed), P people x K
    images. Call set_epoch() before iterating, as with torch's DistributedSampler.

    People are visited in a shuffled cycle, so each appears about equally often; a person's K
    images are drawn without replacement (with replacement when they have fewer than K).
    """

    def __init__(
        self,
        labels: torch.Tensor,
        people_per_batch: int,
        images_per_person: int,
        batches: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ):
        people = int(labels.max()) + 1
        if people < 2:
            raise ValueError("training needs at least two people")
        if people_per_batch > people:
            raise ValueError(
                f"a batch of {people_per_batch} people needs at least that many training people; "
                f"the manifest has {people}"
            )
        self.by_person = [torch.nonzero(labels == p).flatten() for p in range(people)]
        self.p, self.k = people_per_batch, images_per_person
        self.batches, self.seed, self.rank, self.world_size = batches, seed, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(range(self.rank, self.batches, self.world_size))

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.empty(0, dtype=torch.long)
        for batch in range(self.batches):
            if len(order) < self.p:
                cycle = torch.randperm(len(self.by_person), generator=g)
                # People still waiting from the last cycle go to the end of the new one, so that
                # no batch holds a person twice (one identity of 2K images).
                waiting = torch.isin(cycle, order)
                order = torch.cat([order, cycle[~waiting], cycle[waiting]])
            chosen, order = order[: self.p], order[self.p :]
            indices = torch.cat([self._images_of(person, g) for person in chosen.tolist()])
            seeds = torch.randint(0, 2**62, (len(indices),), generator=g)
            if batch % self.world_size == self.rank:
                yield list(zip(indices.tolist(), seeds.tolist(), strict=True))

    def _images_of(self, person: int, generator: torch.Generator) -> torch.Tensor:
        images = self.by_person[person]
        if len(images) >= self.k:
            return images[torch.randperm(len(images), generator=generator)[: self.k]]
        return images[torch.randint(len(images), (self.k,), generator=generator)]
