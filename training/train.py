"""The training loop: a plain loop in the style of torchvision's reference scripts.

Each epoch trains on identity-balanced batches, closes the loss's epoch (AutoMargin), validates on
held-out people by the paper's protocol, keeps the best model by validation mAP in
DIR/checkpoint.pt and everything needed to resume in DIR/last.pt. Run it under torchrun for several
GPUs or nodes: each process trains on its share of every epoch's batches, DistributedDataParallel
averages the gradients, and the first process validates and writes. After the last epoch the first
process calibrates the best checkpoint, similarity to likelihood ratio, on people it never trained
on (training/calibration/fitting.py).
"""

from __future__ import annotations

import functools
import io
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from model.checkpoint import save_checkpoint
from model.files import write_atomically
from model.inference import embed_inputs
from model.network import Embedder
from model.preprocess import Preprocessing
from training.calibration.fitting import calibrate_run, people_to_calibrate_on
from training.cohorts import read_cohort
from training.config import ConfigError, TrainConfig
from training.data import IdentityBatches, TrainingImages
from training.embedders import load_input
from training.evaluate import retrieval_metrics
from training.losses import CosineClassifier, build_loss
from training.protocol import protocol_groups
from training.records import ImageRecord

# Options that may change when a run is resumed: they do not change what is learned.
RESUMABLE_CHANGES = frozenset({"epochs", "workers", "device", "calibration_manifest"})


# Called after every training step with (epoch, step, steps per epoch); may raise to stop the run.
StepCallback = Callable[[int, int, int], None]


def train(
    config: TrainConfig,
    cohort: Path,
    out: Path,
    *,
    resume: bool = True,
    progress: bool = True,
    on_step: StepCallback | None = None,
) -> Path:
    """Train on a cohort's people, leaving out any in its test split; return DIR/checkpoint.pt.

    The cohort is a knee manifest file or the folder of a ChestX-ray14 release."""
    records, cohort_sha256 = read_cohort(cohort)
    records = [r for r in records if r.split != "test"]
    return train_on_records(
        config, records, cohort_sha256, out, resume=resume, progress=progress, on_step=on_step
    )


def train_on_records(
    config: TrainConfig,
    records: list[ImageRecord],
    cohort_sha256: str,
    out: Path,
    *,
    resume: bool = True,
    progress: bool = True,
    on_step: StepCallback | None = None,
) -> Path:
    """Train on these records (a share of their people held out for validation); return
    DIR/checkpoint.pt. cohort_sha256 names the data in the checkpoint."""
    process = _Process.start(config.device)
    torch.manual_seed(config.seed)  # the network's initial weights
    train_records, val_records = split_people(records, config.val_fraction, config.seed)
    calibration_people = people_to_calibrate_on(
        Path(config.calibration_manifest) if config.calibration_manifest else None,
        val_records,
        trained_on_sha256=cohort_sha256,
        trained_people=frozenset(r.person_id for r in train_records),
    )
    prep = Preprocessing(input_size=config.input_size, flip_tta=config.flip_tta)
    show = progress and process.is_main
    images = TrainingImages(train_records, prep, config.cache_images, show, config.augmentation)
    people = int(images.labels.max()) + 1
    validation = Validation(val_records, prep) if val_records and process.is_main else None

    objective, optimiser = build_objective(config, process.device, people)
    state = RunState()
    if resume and (out / "last.pt").exists():
        state = _resume(out / "last.pt", config, objective, optimiser)
    model = objective if process.world_size == 1 else DistributedDataParallel(objective)
    run = _Run(config, process, objective, model, optimiser, prep, validation, cohort_sha256, out)
    plan, loader = _identity_batch_loader(config, images, process)
    for epoch in range(state.epoch, config.epochs):
        summary = run.train_epoch(epoch, plan, loader, show, on_step)
        state.epoch = epoch + 1
        if process.is_main:
            run.record_epoch(epoch, summary, state, show)
        process.barrier()
    process.close()
    if process.is_main:  # after the other processes are released: it takes a while on many images
        calibrated = calibrate_run(out / "checkpoint.pt", calibration_people, str(process.device))
        if show:
            tqdm.write(calibrated)
    return out / "checkpoint.pt"


def _identity_batch_loader(
    config: TrainConfig, images: TrainingImages, process: _Process
) -> tuple[IdentityBatches, DataLoader]:
    """This process's share of every epoch's identity-balanced batches, and their loader."""
    batches = max(1, len(images) // config.batch_size)
    if config.max_steps_per_epoch is not None:
        batches = min(batches, config.max_steps_per_epoch)
    plan = IdentityBatches(
        images.labels,
        config.people_per_batch,
        config.images_per_person,
        batches,
        config.seed,
        process.rank,
        process.world_size,
    )
    loader = DataLoader(
        images,
        batch_sampler=plan,
        num_workers=config.workers,
        pin_memory=process.device.type == "cuda",
        persistent_workers=config.workers > 0,
    )
    return plan, loader


def build_objective(
    config: TrainConfig, device: torch.device, people: int
) -> tuple[Objective, torch.optim.Optimizer]:
    """The network and its loss (with the identity term, where the config has one) as training
    runs them on `device` (channels-last, and bfloat16 autocast where the device computes it, as
    the config asks), and their Adam optimiser."""
    weights = Path(config.backbone_weights) if config.backbone_weights else None
    network = Embedder(config.architecture, weights).to(
        device, memory_format=input_memory_format(config, device)
    )
    loss_fn = build_loss(
        config.loss,
        num_classes=people,
        embedding_dim=config.embedding_dim,
        margin=config.margin,
        beta=config.beta,
        lambda_an=config.lambda_an,
        triplets=config.triplets,
        k_delta=config.k_delta,
        k_an=config.k_an,
    ).to(device)
    classifier = None
    if config.classification_weight > 0:
        classifier = CosineClassifier(people, config.embedding_dim).to(device)
    objective = Objective(
        network,
        loss_fn,
        amp=config.amp and computes_bf16(device),
        classifier=classifier,
        classification_weight=config.classification_weight,
    )
    optimiser = torch.optim.Adam(
        objective.parameters(), config.lr, weight_decay=config.weight_decay
    )
    return objective, optimiser


def input_memory_format(config: TrainConfig, device: torch.device) -> torch.memory_format | None:
    return torch.channels_last if config.channels_last else None


def computes_bf16(device: torch.device) -> bool:
    """Whether the device computes bfloat16 natively: a GPU, or a CPU with AVX512-BF16 or AMX
    (an epoch of the cpu preset took 18 s instead of 42 s in float32 on a 2-core AMD EPYC with
    AVX512-BF16, at the same accuracy; docs/results/accuracy.md). Elsewhere a CPU would emulate
    it, slower than float32."""
    if device.type == "cuda":
        return True
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:  # not Linux: no way to ask, so float32
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimiser: torch.optim.Optimizer,
    device: torch.device,
    memory_format: torch.memory_format | None,
    progress: str | None,
    on_step: Callable[[int, int], None] | None = None,
    lr_at: Callable[[int], float] | None = None,
) -> torch.Tensor:
    """One pass over the loader; returns the loss of every step. lr_at gives each step's learning
    rate (the optimiser's own without it). With a progress description, a bar shows the loss,
    the mined triplets and pairs, and the margins (reading them waits for the GPU, so nothing is
    read without a bar)."""
    model.train()
    loss_fn = (model.module if isinstance(model, DistributedDataParallel) else model).loss_fn
    losses = []
    steps = tqdm(loader, desc=progress, disable=progress is None)
    for step, (inputs, labels) in enumerate(steps):
        if lr_at is not None:
            for group in optimiser.param_groups:
                group["lr"] = lr_at(step)
        inputs = inputs.to(device, memory_format=memory_format, non_blocking=True)
        loss = model(inputs, labels.to(device))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        losses.append(loss.detach())
        if progress is not None:
            steps.set_postfix(_progress(loss, loss_fn), refresh=False)
        if on_step is not None:
            on_step(step + 1, len(loader))
    return torch.stack(losses)


class Objective(nn.Module):
    """The network and its loss (with the identity term, where the run has one) as one module, so
    that DistributedDataParallel also averages the gradients of losses with parameters (class
    centres)."""

    def __init__(
        self,
        network: Embedder,
        loss_fn: nn.Module,
        amp: bool,
        classifier: CosineClassifier | None = None,
        classification_weight: float = 0.0,
    ):
        super().__init__()
        self.network = network
        self.loss_fn = loss_fn
        self.amp = amp
        self.classifier = classifier
        self.classification_weight = classification_weight

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with torch.autocast(inputs.device.type, dtype=torch.bfloat16, enabled=self.amp):
            embeddings = self.network(inputs)
        loss = self.loss_fn(embeddings, labels)
        if self.classifier is not None:
            loss = loss + self.classification_weight * self.classifier(embeddings, labels)
        return loss


def scheduled_lr(config: TrainConfig, epochs_done: float) -> float:
    """The learning rate after `epochs_done` (fractional) epochs: a linear warm-up, then constant
    or a cosine decay to zero at the end of the run."""
    if epochs_done < config.warmup_epochs:
        return config.lr * epochs_done / config.warmup_epochs
    if config.lr_schedule == "constant":
        return config.lr
    decayed = (epochs_done - config.warmup_epochs) / max(config.epochs - config.warmup_epochs, 1)
    return config.lr * 0.5 * (1 + math.cos(math.pi * min(decayed, 1.0)))


class Validation:
    """Model selection: mAP over all follow-ups of the held-out people (first visit = gallery).
    Inputs and the protocol's groups are prepared once; each epoch only embeds and ranks."""

    def __init__(self, records: list[ImageRecord], prep: Preprocessing):
        self.inputs = torch.stack([load_input(r, prep) for r in records])
        self.labels, self.gallery, groups = protocol_groups(records)
        self.queries = groups["all"]

    def mean_average_precision(self, network: Embedder) -> float:
        embeddings = embed_inputs(network.eval(), self.inputs)
        q, g = self.queries, self.gallery
        return retrieval_metrics(embeddings[q], self.labels[q], embeddings[g], self.labels[g])[
            "mAP"
        ]


@dataclass
class RunState:
    epoch: int = 0  # epochs completed
    best_score: float = -math.inf
    best_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def split_people(
    records: list[ImageRecord], val_fraction: float, seed: int
) -> tuple[list[ImageRecord], list[ImageRecord]]:
    """Hold out a seeded random share of the people (all their images) for validation."""
    people = sorted({r.person_id for r in records})
    held_out = round(len(people) * val_fraction)
    if val_fraction > 0 and len(people) - held_out < 2:
        raise ConfigError(f"{len(people)} people are too few to hold out {val_fraction:.0%}")
    validation = set(random.Random(seed).sample(people, held_out))
    return (
        [r for r in records if r.person_id not in validation],
        [r for r in records if r.person_id in validation],
    )


@dataclass(frozen=True)
class _Process:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def start(cls, device: str) -> _Process:
        """One process of a torchrun launch (RANK, WORLD_SIZE, LOCAL_RANK set), or the only one."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device == "auto":
            device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
        chosen = torch.device(device)
        if world_size > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo")
        if chosen.type == "cuda":
            torch.cuda.set_device(chosen)
        return cls(dist.get_rank() if world_size > 1 else 0, world_size, chosen)

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def close(self) -> None:
        if self.world_size > 1:
            dist.destroy_process_group()


@dataclass(frozen=True)
class _Run:
    """What every epoch of one run trains, validates and writes."""

    config: TrainConfig
    process: _Process
    objective: Objective
    model: nn.Module  # the objective, wrapped in DistributedDataParallel when there are several
    optimiser: torch.optim.Optimizer
    prep: Preprocessing
    validation: Validation | None
    cohort_sha256: str
    out: Path

    def train_epoch(
        self,
        epoch: int,
        plan: IdentityBatches,
        loader: DataLoader,
        show: bool,
        on_step: StepCallback | None,
    ) -> dict[str, Any]:
        """Train one epoch, close the loss's epoch (AutoMargin) and summarise it."""
        started = time.perf_counter()
        plan.set_epoch(epoch)
        description = f"epoch {epoch + 1}/{self.config.epochs}" if show else None
        step_done = None if on_step is None else functools.partial(on_step, epoch)
        memory_format = input_memory_format(self.config, self.process.device)
        steps = len(loader)
        losses = train_one_epoch(
            self.model,
            loader,
            self.optimiser,
            self.process.device,
            memory_format,
            description,
            step_done,
            lambda step: scheduled_lr(self.config, epoch + (step + 0.5) / steps),
        )
        loss_fn = self.objective.loss_fn
        loss_fn.end_epoch()
        return {
            "epoch": epoch + 1,
            "loss": losses.mean().item(),
            "steps": len(losses) * self.process.world_size,
            "seconds": round(time.perf_counter() - started, 1),
            "lr": self.optimiser.param_groups[0]["lr"],
            **_margins(loss_fn),
        }

    def record_epoch(
        self, epoch: int, summary: dict[str, Any], state: RunState, show: bool
    ) -> None:
        """The first process's part: validate, keep the best model so far, save the state to
        resume from."""
        if self.validation is not None:
            summary["val_mAP"] = self.validation.mean_average_precision(self.objective.network)
        state.history.append(summary)
        score = summary.get("val_mAP", 0.0)  # without validation the latest epoch is kept
        if score >= state.best_score:
            state.best_score, state.best_epoch = score, epoch + 1
            save_checkpoint(
                self.out / "checkpoint.pt",
                self.objective.network,
                self.prep,
                training={**asdict(self.config), "world_size": self.process.world_size},
                manifest_sha256=self.cohort_sha256,
                metrics={"epoch": epoch + 1, "val_mAP": summary.get("val_mAP")},
                history=state.history,
            )
        _save_last(self.out / "last.pt", self.config, self.objective, self.optimiser, state)
        if show:
            tqdm.write(_describe(summary))


def _save_last(
    path: Path, config: TrainConfig, objective: Objective, optimiser, state: RunState
) -> None:
    buffer = io.BytesIO()
    torch.save(
        {
            "config": asdict(config),
            "objective": objective.state_dict(),
            "optimiser": optimiser.state_dict(),
            "state": asdict(state),
        },
        buffer,
    )
    write_atomically(path, buffer.getvalue())


def _resume(path: Path, config: TrainConfig, objective: Objective, optimiser) -> RunState:
    saved = torch.load(path, map_location="cpu", weights_only=True)
    defaults = asdict(TrainConfig())  # an option newer than the run had its default then
    changed = {
        key
        for key, value in asdict(config).items()
        if key not in RESUMABLE_CHANGES and saved["config"].get(key, defaults[key]) != value
    }
    if changed:
        raise ConfigError(
            f"{path} was trained with other {', '.join(sorted(changed))}; "
            "train into a new folder or pass --no-resume to start over"
        )
    objective.load_state_dict(saved["objective"])
    optimiser.load_state_dict(saved["optimiser"])
    return RunState(**saved["state"])


def _margins(loss_fn: nn.Module) -> dict[str, float]:
    return {name: getattr(loss_fn, name) for name in ("margin", "beta") if hasattr(loss_fn, name)}


def _progress(loss: torch.Tensor, loss_fn: nn.Module) -> dict[str, str]:
    shown = {"loss": f"{loss.item():.4f}"}
    shown |= {name: str(int(count)) for name, count in getattr(loss_fn, "last", {}).items()}
    shown |= {name: f"{value:.3f}" for name, value in _margins(loss_fn).items()}
    return shown


def _describe(summary: dict[str, Any]) -> str:
    return "  ".join(
        f"{key} {value:.4f}" if isinstance(value, float) else f"{key} {value}"
        for key, value in summary.items()
    )
