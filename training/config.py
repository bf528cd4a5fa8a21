"""What a training run does, as one flat record: a named preset, then a TOML config file, then
command-line options override it, in that order.

Every field is a command-line option of `radmatch train` (`--people-per-batch 16`, `--no-amp`) and a
key of the config file (`people_per_batch = 16`).
"""

from __future__ import annotations

import argparse
import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from model.network import NECKS, POOLINGS, Architecture
from training.losses import LOSSES, TRIPLET_MINING

LR_SCHEDULES = ("constant", "cosine")
AUGMENTATIONS = ("paper", "radiograph")


@dataclass(frozen=True)
class TrainConfig:
    # data
    input_size: int = 256
    people_per_batch: int = 32  # P identities per batch
    images_per_person: int = 4  # K images per identity
    val_fraction: float = 0.1  # share of the training people held out for model selection
    cache_images: bool = False  # decode every image once and keep it in memory
    workers: int = 4  # data-loading processes
    # optimisation
    epochs: int = 100
    max_steps_per_epoch: int | None = None  # a shorter epoch (the default visits every image once)
    lr: float = 1e-4
    weight_decay: float = 1e-4
    lr_schedule: str = "constant"  # "cosine": decays to zero over the run, step by step
    warmup_epochs: int = 0  # the rate rises linearly from zero over these first epochs
    # loss (training.losses.build_loss)
    loss: str = "adatriplet-am"
    margin: float = 0.25
    beta: float = 0.0
    lambda_an: float = 1.0
    triplets: str = "semihard"
    k_delta: float = 2.0
    k_an: float = 2.0
    # A cosine-softmax identity term beside the metric loss (training/losses.py,
    # CosineClassifier), weighted by this; 0 leaves it out (the paper's).
    classification_weight: float = 0.0
    # augmentation (training/data.py): "paper" (rotation, gamma, noise), or "radiograph", which
    # adds what differs between X-ray systems and exposures (scale, window, edge processing,
    # occlusion by markers)
    augmentation: str = "paper"
    # network (model/network.py, Architecture)
    embedding_dim: int = 128
    pooling: str = "avg"
    neck: str = "linear"
    last_stride: int = 2
    # Checkpoints embed the mean of an image and its mirror image (model/preprocess.py): +1.6
    # points of CMC top-1 on phantom test people for the cpu preset (docs/results/accuracy.md).
    flip_tta: bool = False
    backbone_weights: str | None = None  # a local ResNet-18 weights file; from scratch when unset
    # execution
    seed: int = 0
    device: str = "auto"  # "auto" = CUDA when present, else CPU
    # bfloat16 autocast where the device computes it natively (a GPU; a CPU with AVX512-BF16 or
    # AMX: training.train.computes_bf16), float32 elsewhere
    amp: bool = True
    channels_last: bool = True  # the network's memory format (faster for convolutions, CPU too)
    # calibration of the best checkpoint (training/calibration/fitting.py): on this cohort's
    # people never trained on; when unset, on the validation people
    calibration_manifest: str | None = None

    @property
    def batch_size(self) -> int:
        return self.people_per_batch * self.images_per_person

    @property
    def architecture(self) -> Architecture:
        return Architecture(
            embedding_dim=self.embedding_dim,
            pooling=self.pooling,
            neck=self.neck,
            last_stride=self.last_stride,
        )


PRESETS: dict[str, TrainConfig] = {
    # docs/method.md ("The embedder"): 256 px, 32 people x 4 images, Adam 1e-4, 100 epochs.
    "paper": TrainConfig(),
    # The best model 2 CPU cores train in 15 minutes (from scratch, hence the larger rate): of
    # the recipe's options only the identity term helped (docs/results/accuracy.md).
    "cpu": TrainConfig(
        input_size=128,
        people_per_batch=16,
        epochs=42,
        lr=3e-4,
        classification_weight=1.0,
        cache_images=True,
        workers=0,
        flip_tta=True,
    ),
    # The whole pipeline in about a minute: checks that training runs, not that it learns.
    "smoke": TrainConfig(
        input_size=64,
        people_per_batch=4,
        epochs=2,
        max_steps_per_epoch=3,
        val_fraction=0.25,
        lr=3e-4,
        cache_images=True,
        workers=0,
    ),
}


class ConfigError(ValueError):
    pass


def resolve_config(
    preset: str, config_file: Path | None = None, overrides: dict[str, Any] | None = None
) -> TrainConfig:
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    values: dict[str, Any] = {}
    if config_file is not None:
        try:
            values.update(tomllib.loads(config_file.read_text()))
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise ConfigError(f"{config_file}: {error}") from None
        check_options(values, str(config_file))
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return _checked_choices(_checked_ranges(dataclasses.replace(PRESETS[preset], **values)))


# Options that only make sense within limits: (lowest, highest), None for unbounded.
_RANGES: dict[str, tuple[float | None, float | None]] = {
    "input_size": (32, 4096),
    "people_per_batch": (2, None),
    "images_per_person": (2, None),
    "val_fraction": (0.0, 0.9),
    "workers": (0, None),
    "epochs": (1, None),
    "max_steps_per_epoch": (1, None),
    "lr": (0.0, None),
    "weight_decay": (0.0, None),
    "margin": (0.0, 2.0),
    "classification_weight": (0.0, None),
    "warmup_epochs": (0, None),
    "embedding_dim": (2, None),
}

# Options that name one of a few things.
_CHOICES: dict[str, tuple[Any, ...]] = {
    "loss": LOSSES,
    "triplets": TRIPLET_MINING,
    "lr_schedule": LR_SCHEDULES,
    "augmentation": AUGMENTATIONS,
    "pooling": POOLINGS,
    "neck": NECKS,
    "last_stride": (1, 2),
}


def _checked_ranges(config: TrainConfig) -> TrainConfig:
    for name, (lowest, highest) in _RANGES.items():
        value = getattr(config, name)
        if value is None:
            continue
        if (lowest is not None and value < lowest) or (highest is not None and value > highest):
            bounds = f"at least {lowest}" if highest is None else f"between {lowest} and {highest}"
            raise ConfigError(f"{name} = {value!r} must be {bounds}")
    return config


def _checked_choices(config: TrainConfig) -> TrainConfig:
    for name, choices in _CHOICES.items():
        if getattr(config, name) not in choices:
            listed = ", ".join(str(choice) for choice in choices)
            raise ConfigError(f"{name} = {getattr(config, name)!r} must be one of {listed}")
    return config


def check_options(values: dict[str, Any], source: str) -> dict[str, Any]:
    """Refuse unknown options and values of the wrong type, naming where they came from."""
    known = {f.name: f for f in fields(TrainConfig)}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"{source}: unknown option {key!r}")
        if not _accepts(known[key], value):
            raise ConfigError(f"{source}: {key} = {value!r} is not a {known[key].type}")
    return values


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """One option per field; unset options (None) leave the preset's or the file's value."""
    group = parser.add_argument_group("training options (override the preset and --config)")
    for field in fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        base = _base_type(field)
        if base is bool:
            group.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction)
        else:
            group.add_argument(flag, dest=field.name, type=base, metavar=base.__name__.upper())


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    return {field.name: getattr(args, field.name) for field in fields(TrainConfig)}


def _base_type(field: dataclasses.Field) -> type:
    hint = typing.get_type_hints(TrainConfig)[field.name]
    if isinstance(hint, types.UnionType):
        return next(t for t in typing.get_args(hint) if t is not type(None))
    return hint


def _accepts(field: dataclasses.Field, value: Any) -> bool:
    base = _base_type(field)
    if base is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, base) and (base is bool or not isinstance(value, bool))
