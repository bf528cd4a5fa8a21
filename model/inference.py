"""Decoded radiographs to unit embeddings with a trained checkpoint, in batches, on the GPU when there
is one. The service, `radmatch ingest` and `radmatch evaluate` all embed through here, so with one
backend and precision they agree to the bit. The forward pass is a backend's (model/backends.py):
on the CPU the service's default is ONNX Runtime, faster than PyTorch eager at the same
embeddings (cosine >= 0.99999); on a GPU PyTorch, channels-last, and in bfloat16 when asked (the service's
default there): about twice the images per second, at cosine differences around 1e-3."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from model.backends import (
    BACKENDS,
    Backend,
    BackendError,
    Forward,
    OnnxForward,
    Precision,
    TorchForward,
)
from model.backends import embed_inputs as embed_inputs  # the torch forward, for training
from model.checkpoint import Checkpoint, load_checkpoint
from model.image import DecodedImage
from model.int8 import checked_int8
from model.onnx_file import checked_onnx
from model.preprocess import Preprocessing, preprocess
from model.threads import apply_threads


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_backend(device: str) -> Backend:
    """ONNX Runtime on the CPU (faster than PyTorch there), PyTorch on a GPU."""
    return "torch" if torch.device(device).type == "cuda" else "onnxruntime"


def pixel_spacing(image: DecodedImage, known_mm: float | None = None) -> float | None:
    """The column spacing used for the physical centre crop: what the caller knows (a manifest, a
    form field) before what the file says."""
    if known_mm is not None:
        return known_mm
    spacing = image.metadata.pixel_spacing_mm
    return spacing[1] if spacing is not None else None


def flip_averaged(
    embed: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, prep: Preprocessing
) -> torch.Tensor:
    """Unit embeddings of preprocessed inputs (N, 1, S, S) by `embed`; for a checkpoint made
    with flip_tta, the normalised mean of each image's and its mirror image's, in one batch.
    Every path from a checkpoint to embeddings (the service, ingest, evaluate, calibration)
    comes through here."""
    if not prep.flip_tta:
        return embed(inputs)
    both = embed(torch.cat([inputs, inputs.flip(-1)]))
    return F.normalize(both[: len(inputs)] + both[len(inputs) :], dim=1)


class EmbeddingModel:
    """A checkpoint ready to embed: its network in eval mode, the preprocessing it was trained
    with, and the backend that runs its forward pass."""

    def __init__(
        self,
        checkpoint: Checkpoint,
        path: Path,
        precision: Precision = "fp32",
        forward: Forward | None = None,
        *,
        int8_loss_pp: dict[str, float] | None = None,
    ):
        self.checkpoint = checkpoint
        self.path = path
        self.precision = precision
        self.forward = forward or TorchForward(checkpoint.embedder, precision)
        self.int8_loss_pp = int8_loss_pp

    @classmethod
    def load(
        cls,
        path: Path,
        device: str | None = None,
        precision: Precision | Literal["auto"] = "auto",
        backend: Backend | Literal["auto"] = "torch",
        threads: int | None = None,
        onnx_dir: Path | None = None,
    ) -> EmbeddingModel:
        """Raises CheckpointError for a file that is not a radmatch checkpoint, BackendError for a
        backend the device or precision cannot use (Int8Refused, one of them, for precision int8
        without a measured int8 file within its bound). Precision "auto" is bfloat16 on a GPU,
        float32 on the CPU; backend "auto" is ONNX Runtime on the CPU, PyTorch on a GPU. ONNX
        Runtime runs the checkpoint's ONNX file, checked or exported first (model/onnx_file.py;
        `onnx_dir` where the checkpoint's directory cannot be written), or in int8 the measured
        int8 file (model/int8.py). `threads`: the process's thread setting (model/threads.py),
        None to keep what was applied."""
        device = device or default_device()
        if backend == "auto":
            backend = default_backend(device)
        if backend not in BACKENDS:
            raise BackendError(f"unknown inference backend {backend!r}; choose one of {BACKENDS}")
        if threads is not None:
            apply_threads(threads)
        checkpoint = load_checkpoint(path, device)
        on_gpu = next(checkpoint.embedder.parameters()).device.type == "cuda"
        if on_gpu:
            checkpoint.embedder.to(memory_format=torch.channels_last)
        if precision == "auto":
            precision = "bf16" if on_gpu else "fp32"
        if backend == "torch" and precision != "int8":
            return cls(checkpoint, Path(path), precision)
        if on_gpu or precision == "bf16" or backend == "torch":
            raise BackendError(
                "the onnxruntime backend runs on the CPU in fp32 or int8, and int8 runs only on "
                f"it: use device cpu with it (not {device} in {precision} by {backend}), or "
                "the torch backend in fp32 or bf16"
            )
        if precision == "int8":
            int8 = checked_int8(checkpoint.sha256, Path(path))
            forward = OnnxForward(int8.onnx, threads)
            return cls(checkpoint, Path(path), precision, forward, int8_loss_pp=int8.loss_pp)
        onnx = checked_onnx(checkpoint, Path(path), onnx_dir)
        return cls(checkpoint, Path(path), precision, OnnxForward(onnx, threads))

    @property
    def sha256(self) -> str:
        return self.checkpoint.sha256

    @property
    def backend(self) -> Backend:
        return self.forward.name

    @property
    def inference(self) -> dict[str, Any]:
        """How this model embeds: device type ("cpu", "cuda"), precision and backend ("torch",
        "onnxruntime"), and in int8 the accuracy its record measured it to lose; a search records
        it because they decide how far a similarity moves when the query is embedded again, and
        a case report states what int8 cost."""
        device = next(self.checkpoint.embedder.parameters()).device.type
        how = {"device": device, "precision": self.precision, "backend": self.backend}
        if self.int8_loss_pp is not None:
            how["int8_loss_pp"] = self.int8_loss_pp
        return how

    @property
    def dimension(self) -> int:
        return self.checkpoint.embedder.embedding_dim

    def input_tensor(
        self, image: DecodedImage, pixel_spacing_mm: float | None = None
    ) -> torch.Tensor:
        spacing = pixel_spacing(image, pixel_spacing_mm)
        return preprocess(image.pixels, self.checkpoint.preprocessing, spacing)

    def embed(
        self,
        images: Sequence[DecodedImage],
        pixel_spacings_mm: Sequence[float | None] | None = None,
    ) -> np.ndarray:
        """Unit embeddings, float32 (N, D), one per image."""
        spacings = pixel_spacings_mm or [None] * len(images)
        inputs = torch.stack(
            [self.input_tensor(im, sp) for im, sp in zip(images, spacings, strict=True)]
        )
        return self.embed_inputs(inputs)

    def embed_inputs(self, inputs: torch.Tensor) -> np.ndarray:
        """Unit embeddings, float32 (N, D), of preprocessed inputs (N, 1, S, S)."""
        forward = self.forward
        prep = self.checkpoint.preprocessing
        return flip_averaged(lambda x: torch.from_numpy(forward(x)), inputs, prep).numpy()
