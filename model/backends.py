"""The forward pass of an embedder, by one of two engines: PyTorch eager (CPU or GPU, float32 or
bfloat16) or ONNX Runtime (CPU, float32). Each is called with preprocessed inputs, float32
(N, 1, S, S), and returns unit embeddings, float32 (N, D), as a numpy array; EmbeddingModel
(model/inference.py) keeps the checkpoint and the preprocessing and hands the forward to one.

On the CPU, ONNX Runtime runs the same network faster than PyTorch eager (1.45 to 3.1 times on a
2-core Intel Xeon, by input size and threads; docs/results/performance.md), with the
same embeddings to within float32 rounding (bench/inference_backends.py): it fuses each
convolution with its batch norm and activation, and its thread pool does not spin
(model/threads.py).
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from model.onnx_file import INPUT_NAME, OnnxFile
from model.threads import thread_count

Backend = Literal["torch", "onnxruntime"]
BACKENDS: tuple[Backend, ...] = ("torch", "onnxruntime")
BATCH_SIZE = 64  # at most this many images per forward: bounds the activations' memory


# int8 runs only on ONNX Runtime, and only a model measured for it (model/int8.py).
Precision = Literal["fp32", "bf16", "int8"]


class BackendError(ValueError):
    """A backend that cannot run as asked: an unknown name, or ONNX Runtime off the CPU."""


@torch.inference_mode()
def embed_inputs(
    network: torch.nn.Module,
    inputs: torch.Tensor,
    batch_size: int = BATCH_SIZE,
    precision: Precision = "fp32",
) -> torch.Tensor:
    """Embeddings (N, D) on the CPU of preprocessed inputs (N, 1, S, S), by PyTorch eager on the
    network's device."""
    device = next(network.parameters()).device
    layout = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    outputs = []
    with autocast:
        for batch in inputs.split(batch_size):
            embeddings = network(batch.to(device).contiguous(memory_format=layout)).float()
            if precision == "bf16":  # unit length again, in float32
                embeddings = F.normalize(embeddings, dim=1)
            outputs.append(embeddings.cpu())
    return torch.cat(outputs)


class Forward(Protocol):
    name: Backend

    def __call__(self, inputs: torch.Tensor | np.ndarray) -> np.ndarray: ...


class TorchForward:
    """PyTorch eager, on the network's device, at the given precision."""

    name: Backend = "torch"

    def __init__(self, network: torch.nn.Module, precision: Precision = "fp32"):
        self.network = network
        self.precision = precision

    def __call__(self, inputs: torch.Tensor | np.ndarray) -> np.ndarray:
        tensor = torch.as_tensor(inputs, dtype=torch.float32)
        return embed_inputs(self.network, tensor, BATCH_SIZE, self.precision).numpy()


def load_onnxruntime() -> ModuleType:
    """ONNX Runtime without its telemetry, which on import writes a device id and an event store
    under ~/.cache/Microsoft unless told not to: labs are often air-gapped, and radmatch writes
    nothing outside its data directory. Setting ORT_DISABLE_TELEMETRY=0 opts back in."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    import onnxruntime

    return onnxruntime


class OnnxForward:
    """ONNX Runtime on the CPU: graph optimisations all on, `threads` intra-op threads that do
    not spin, one operator at a time."""

    name: Backend = "onnxruntime"

    def __init__(self, onnx: OnnxFile, threads: int | None = None):
        onnxruntime = load_onnxruntime()
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads if threads is not None else thread_count()
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        # Spinning threads took the cores that decoding and FAISS needed (model/threads.py).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self.onnx = onnx
        self.threads = options.intra_op_num_threads
        self.session = onnxruntime.InferenceSession(
            onnx.data, options, providers=["CPUExecutionProvider"]
        )

    def __call__(self, inputs: torch.Tensor | np.ndarray) -> np.ndarray:
        if isinstance(inputs, torch.Tensor):
            inputs = inputs.detach().cpu().numpy()
        array = np.ascontiguousarray(inputs, dtype=np.float32)
        outputs = [
            self.session.run(None, {INPUT_NAME: array[start : start + BATCH_SIZE]})[0]
            for start in range(0, len(array), BATCH_SIZE)
        ]
        if not outputs:
            return np.zeros((0, self.session.get_outputs()[0].shape[1]), dtype=np.float32)
        return np.concatenate(outputs).astype(np.float32, copy=False)
