"""From a decoded radiograph to the network's input tensor, as in the paper: centre crop, resize, crop,
normalise. The centre crop is a physical size when the pixel spacing is known, so that images from
detectors with different pixel sizes show the same anatomy at the same scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

PAPER_CROP_PX = 700  # the paper's centre crop, used when an image's pixel spacing is unknown
PAPER_RESIZE_RATIO = 280 / 256  # resize to 280, then crop 256


@dataclass(frozen=True)
class Preprocessing:
    input_size: int = 256
    crop_mm: float = 120.0
    crop_px: int = PAPER_CROP_PX
    mean: float = 0.5
    std: float = 0.25
    # Embed the mean of an image's embedding and its left-right mirror image's (test-time
    # augmentation: both knees are one identity). It belongs to the checkpoint, not to a search,
    # because the gallery must be embedded the same way (docs/results/accuracy.md).
    flip_tta: bool = False

    @property
    def resize(self) -> int:
        return round(self.input_size * PAPER_RESIZE_RATIO)


def centre_crop(image: np.ndarray, crop_side_px: int) -> np.ndarray:
    """The central square of side crop_side_px, or the largest central square that fits."""
    side = min(crop_side_px, *image.shape)
    top = (image.shape[0] - side) // 2
    left = (image.shape[1] - side) // 2
    return image[top : top + side, left : left + side]


def crop_side_px(prep: Preprocessing, pixel_spacing_mm: float | None) -> int:
    if pixel_spacing_mm is None or pixel_spacing_mm <= 0:
        return prep.crop_px
    return max(1, round(prep.crop_mm / pixel_spacing_mm))


def resized(image: np.ndarray, prep: Preprocessing, pixel_spacing_mm: float | None) -> torch.Tensor:
    """Centre-cropped and resized to prep.resize, shape (1, resize, resize), values still in [0, 1]."""
    square = centre_crop(image, crop_side_px(prep, pixel_spacing_mm))
    tensor = torch.from_numpy(np.ascontiguousarray(square, dtype=np.float32))[None, None]
    tensor = F.interpolate(
        tensor,
        size=(prep.resize, prep.resize),
        mode="bilinear",
        antialias=True,
        align_corners=False,
    )
    return tensor[0]


def final_crop(
    tensor: torch.Tensor, prep: Preprocessing, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Crop prep.input_size from the resized image: at random when a generator is given (training),
    else from the centre (evaluation and the service), then normalise."""
    margin = tensor.shape[-1] - prep.input_size
    if generator is None:
        top = left = margin // 2
    else:
        top, left = (int(v) for v in torch.randint(0, margin + 1, (2,), generator=generator))
    crop = tensor[..., top : top + prep.input_size, left : left + prep.input_size]
    return (crop - prep.mean) / prep.std


def preprocess(
    image: np.ndarray, prep: Preprocessing, pixel_spacing_mm: float | None
) -> torch.Tensor:
    """The evaluation-time input tensor (1, input_size, input_size) for one decoded image."""
    return final_crop(resized(image, prep, pixel_spacing_mm), prep)
