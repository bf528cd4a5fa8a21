"""int8: a checkpoint's embedder with int8 weights and activations, for ONNX Runtime on the CPU, and
the record of what it costs in accuracy, without which it is not used.

The graph is the float32 ONNX export (model/onnx_file.py) quantised statically in ONNX Runtime's
QDQ format: weights int8 per output channel, activations uint8 with scales calibrated (MinMax)
on preprocessed images of the model's own training set. On CPUs with VNNI it runs several times
faster than float32, and its embeddings move: how far a ranking moves is measured, not assumed.

`radmatch quantize` (training/int8_trial.py) makes `<checkpoint>.int8.onnx` and beside it
`<checkpoint>.int8.json`: the checkpoint's and the file's sha256, the calibration set, and CMC
top-1 and mAP over every follow-up of test people the model never saw, in float32 and in int8.
Precision int8 (RADMATCH_PRECISION) loads the file only when that record names this checkpoint
and these bytes and shows a loss within ACCURACY_BOUND_PP on both measures; otherwise it is
refused, saying which of those failed.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model.backends import BackendError, load_onnxruntime
from model.files import write_atomically
from model.onnx_file import INPUT_NAME, OnnxFile

# The most a model may lose, in percentage points of CMC top-1 and of mAP over all follow-ups,
# and still be served in int8. About the standard error of a top-1 over 2,000 queries: a loss
# smaller than this is within what another draw of test people would show.
ACCURACY_BOUND_PP = 1.0
MEASURES = ("cmc_top1", "mAP")
CALIBRATION_BATCH = 16


class Int8Refused(BackendError):
    """Precision int8 asked for a checkpoint with no valid int8 record, or one over the bound
    (then `loss_pp` holds what it lost)."""

    def __init__(self, message: str, loss_pp: dict[str, float] | None = None):
        super().__init__(message)
        self.loss_pp = loss_pp


@dataclass(frozen=True)
class MeasuredInt8:
    """A checkpoint's int8 file, vouched for by its record, and the percentage points of each
    measure it lost to float32 on test people (negative: a gain)."""

    onnx: OnnxFile
    loss_pp: dict[str, float]


def int8_path(checkpoint_path: Path) -> Path:
    return checkpoint_path.with_name(checkpoint_path.name + ".int8.onnx")


def int8_record_path(checkpoint_path: Path) -> Path:
    return checkpoint_path.with_name(checkpoint_path.name + ".int8.json")


def quantize(onnx_data: bytes, calibration_inputs: np.ndarray) -> bytes:
    """The float32 graph with int8 weights and uint8 activations, their ranges calibrated on
    `calibration_inputs` (N, 1, S, S), preprocessed as the model's inputs are."""
    load_onnxruntime()  # without its telemetry
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Calibration(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches: Iterator[np.ndarray] = iter(
                np.array_split(calibration_inputs, -(-len(calibration_inputs) // CALIBRATION_BATCH))
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {INPUT_NAME: np.ascontiguousarray(batch)}

    if len(calibration_inputs) == 0:
        raise ValueError("int8 calibration needs at least one image")
    # The quantiser works on files; these live only as long as this call.
    with tempfile.TemporaryDirectory(prefix="radmatch-int8-") as scratch:
        float_path, prepared, quantised = (
            Path(scratch) / n for n in ("f.onnx", "p.onnx", "q.onnx")
        )
        float_path.write_bytes(onnx_data)
        quant_pre_process(str(float_path), str(prepared))
        quantize_static(
            str(prepared),
            str(quantised),
            Calibration(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        return quantised.read_bytes()


def accuracy_loss(record: dict[str, Any]) -> dict[str, float]:
    """Percentage points lost from float32 to int8, per measure (negative: int8 did better)."""
    return {m: 100.0 * (record["fp32"][m] - record["int8"][m]) for m in MEASURES}


def within_bound(record: dict[str, Any]) -> bool:
    return all(loss <= ACCURACY_BOUND_PP for loss in accuracy_loss(record).values())


def write_int8(checkpoint_path: Path, data: bytes, record: dict[str, Any]) -> dict[str, Any]:
    """The file, then its record (naming the file's sha256): a crash between the two leaves a
    record that does not match, so the file is refused, never used unmeasured."""
    record = {
        **record,
        "int8_sha256": hashlib.sha256(data).hexdigest(),
        "bound_pp": ACCURACY_BOUND_PP,
        "loss_pp": accuracy_loss(record),
        "accepted": within_bound(record),
    }
    write_atomically(int8_path(checkpoint_path), data)
    text = json.dumps(record, indent=2) + "\n"
    write_atomically(int8_record_path(checkpoint_path), text.encode())
    return record


def checked_int8(checkpoint_sha256: str, checkpoint_path: Path) -> MeasuredInt8:
    """The checkpoint's int8 file, when its record vouches for it; Int8Refused saying why not."""
    path, record_file = int8_path(checkpoint_path), int8_record_path(checkpoint_path)
    how = (
        f"run `radmatch quantize --checkpoint {checkpoint_path} --training-cohort <the cohort it "
        "trained on> --manifest <other people's manifest>` to make and measure it"
    )
    try:
        record = json.loads(record_file.read_text())
        data = path.read_bytes()
    except FileNotFoundError:
        raise Int8Refused(
            f"precision int8: {checkpoint_path} has no measured int8 file; {how}"
        ) from None
    except (OSError, ValueError) as error:
        raise Int8Refused(
            f"precision int8: cannot read {record_file} or {path} ({error})"
        ) from None
    if record.get("checkpoint_sha256") != checkpoint_sha256:
        raise Int8Refused(
            f"precision int8: {path} was made from another checkpoint (sha256 "
            f"{str(record.get('checkpoint_sha256'))[:12]}, not {checkpoint_sha256[:12]}); {how}"
        )
    if record.get("int8_sha256") != hashlib.sha256(data).hexdigest():
        raise Int8Refused(f"precision int8: {path} is not the file its record measured; {how}")
    loss = accuracy_loss(record)  # from the measured numbers, not the record's own verdict
    if not within_bound(record):
        losses = ", ".join(f"{m} {points:.2f}" for m, points in loss.items())
        raise Int8Refused(
            f"precision int8 is refused for this model: on test people it lost {losses} "
            f"percentage points to float32, over the bound of {ACCURACY_BOUND_PP}; serve it in "
            "fp32",
            loss_pp=loss,
        )
    return MeasuredInt8(OnnxFile(path, data), loss)


def int8_status(checkpoint_sha256: str, checkpoint_path: Path) -> dict[str, Any] | None:
    """Whether a checkpoint may be served in int8, with the loss its record measured (null where
    the record does not vouch for this checkpoint's file); None where `radmatch quantize` never
    ran for it."""
    if not int8_record_path(checkpoint_path).exists():
        return None
    try:
        loss, refused = checked_int8(checkpoint_sha256, checkpoint_path).loss_pp, None
    except Int8Refused as error:
        loss, refused = error.loss_pp, str(error)
    return {
        "servable": refused is None,
        "refused": refused,
        "loss_pp": loss,
        "bound_pp": ACCURACY_BOUND_PP,
    }
