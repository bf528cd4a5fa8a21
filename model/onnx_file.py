"""A checkpoint's embedder as an ONNX file, for ONNX Runtime (model/backends.py), and the check that
it is that checkpoint's before it is used.

The file is `<checkpoint>.onnx`, beside the checkpoint; where that directory cannot be written (a
read-only models volume), `<fallback dir>/<checkpoint sha256>.onnx`, the service's data directory
(app/serving/model_versions.py). Beside it, `<file>.sha256` holds two lines in sha256sum's format:
the ONNX file's sha256, and the sha256 of the checkpoint it was exported from. A file is used only
when both match (its bytes, and the checkpoint's sha256 as loaded now); otherwise it is exported
again, with a warning, and written as every file here is (temporary name, fsync, rename). The
bytes that were checked are the bytes handed to ONNX Runtime: the file is read once.

Export is deterministic (same checkpoint, same torch: the same bytes), so two processes exporting
at once write the same file.
"""

from __future__ import annotations

import copy
import hashlib
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from model.checkpoint import Checkpoint
from model.files import write_atomically

log = logging.getLogger("radmatch")

OPSET = 17
INPUT_NAME = "inputs"
OUTPUT_NAME = "embeddings"


@dataclass(frozen=True)
class OnnxFile:
    path: Path
    data: bytes  # the checked bytes, as read or exported


def onnx_path(checkpoint_path: Path) -> Path:
    return checkpoint_path.with_name(checkpoint_path.name + ".onnx")


def record_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def checked_onnx(
    checkpoint: Checkpoint, checkpoint_path: Path, fallback_dir: Path | None = None
) -> OnnxFile:
    """The checkpoint's ONNX file, checked, or exported (again) where it can be written."""
    places = [onnx_path(Path(checkpoint_path))]
    if fallback_dir is not None:
        places.append(Path(fallback_dir) / f"{checkpoint.sha256}.onnx")
    for place in places:
        data = _valid_data(place, checkpoint.sha256)
        if data is not None:
            return OnnxFile(place, data)
    data = export_onnx(checkpoint)
    failures = []
    for place in places:
        try:
            write_onnx(place, data, checkpoint.sha256, Path(checkpoint_path).name)
        except OSError as error:  # a read-only directory: the next place
            failures.append(f"{place}: {error}")
            continue
        log.info("exported %s to ONNX as %s", Path(checkpoint_path).name, place)
        return OnnxFile(place, data)
    raise OSError("cannot write the ONNX file: " + "; ".join(failures))


def write_onnx(path: Path, data: bytes, checkpoint_sha256: str, checkpoint_name: str) -> None:
    """The file first, then its record: a crash between the two leaves a record that does not
    match, so the file is exported again, never used unchecked."""
    write_atomically(path, data)
    digest = hashlib.sha256(data).hexdigest()
    lines = f"{digest}  {path.name}\n{checkpoint_sha256}  {checkpoint_name}\n"
    write_atomically(record_path(path), lines.encode())


def _valid_data(path: Path, checkpoint_sha256: str) -> bytes | None:
    """The file's bytes when its record vouches for them and for this checkpoint; None (with a
    warning when something was there) otherwise."""
    if not path.exists():
        return None
    try:
        data = path.read_bytes()
        fields = record_path(path).read_text().split()
    except OSError as error:
        log.warning("exporting %s again: cannot read it or its record (%s)", path, error)
        return None
    recorded = fields[0] if fields else None
    made_from = fields[2] if len(fields) >= 3 else None
    if hashlib.sha256(data).hexdigest() != recorded:
        log.warning("exporting %s again: its sha256 is not the one recorded beside it", path)
        return None
    if made_from != checkpoint_sha256:
        log.warning(
            "exporting %s again: it was made from checkpoint %s, not %s",
            path,
            (made_from or "(none recorded)")[:12],
            checkpoint_sha256[:12],
        )
        return None
    return data


def export_onnx(checkpoint: Checkpoint) -> bytes:
    """The embedder in float32 on the CPU as an ONNX graph: input (N, 1, S, S), output (N, D)
    unit embeddings, N free."""
    network = copy.deepcopy(checkpoint.embedder).to("cpu", torch.float32).eval()
    network = network.to(memory_format=torch.contiguous_format)
    side = checkpoint.preprocessing.input_size
    example = torch.zeros(1, 1, side, side)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated in favour of the torch.export one, which
        # needs onnxscript; this one still exports a ResNet exactly.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            network,
            (example,),
            buffer,
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        )
    return buffer.getvalue()
