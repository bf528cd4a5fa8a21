"""int8: `radmatch quantize` measures the int8 file against float32 with the evaluation's own
numbers, and precision int8 serves a model only through a record that vouches for its file and
shows a loss within the bound."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from app.core.config import Settings
from cli import main
from model.backends import BackendError
from model.checkpoint import load_checkpoint, save_checkpoint
from model.inference import EmbeddingModel
from model.int8 import (
    ACCURACY_BOUND_PP,
    Int8Refused,
    int8_path,
    int8_record_path,
    quantize,
    write_int8,
)
from model.network import Embedder
from model.preprocess import Preprocessing
from tests.support.servers import seeded_checkpoint
from training.cohorts import read_knee_manifest


@pytest.fixture(scope="module")
def quantised(tmp_path_factory) -> tuple[Path, bytes]:
    """A seeded checkpoint and its int8 graph, calibrated on random inputs."""
    checkpoint = seeded_checkpoint(tmp_path_factory.mktemp("int8") / "checkpoint.pt")
    model = EmbeddingModel.load(checkpoint, "cpu", backend="onnxruntime")
    calibration = np.random.default_rng(0).random((32, 1, 64, 64), dtype=np.float32)
    return checkpoint, quantize(model.forward.onnx.data, calibration)


@pytest.fixture
def checkpoint(tmp_path, quantised) -> Path:
    """A copy of the quantised fixture's checkpoint, with no int8 record yet."""
    copy = tmp_path / "checkpoint.pt"
    shutil.copy(quantised[0], copy)
    shutil.copy(
        quantised[0].with_name("checkpoint.pt.sha256"), copy.with_name(copy.name + ".sha256")
    )
    return copy


def measured(fp32_top1: float, int8_top1: float, sha256: str) -> dict:
    return {
        "checkpoint_sha256": sha256,
        "fp32": {"cmc_top1": fp32_top1, "mAP": 0.5},
        "int8": {"cmc_top1": int8_top1, "mAP": 0.5},
    }


def sha256_of(checkpoint: Path) -> str:
    return load_checkpoint(checkpoint).sha256


def test_int8_is_refused_without_a_measured_file_naming_the_command_that_makes_it(
    checkpoint, capsys
):
    with pytest.raises(Int8Refused, match="has no measured int8 file; run `radmatch quantize") as e:
        EmbeddingModel.load(checkpoint, "cpu", precision="int8", backend="onnxruntime")
    options = [word for word in str(e.value).split("`")[1].split() if word.startswith("--")]
    with pytest.raises(SystemExit):
        main(["quantize", "--help"])
    usage = capsys.readouterr().out
    assert options and all(f"{option} " in usage for option in options)


def test_a_model_measured_within_the_bound_is_served_in_int8(checkpoint, quantised):
    record = write_int8(checkpoint, quantised[1], measured(0.60, 0.595, sha256_of(checkpoint)))
    assert record["accepted"] and record["loss_pp"]["cmc_top1"] == pytest.approx(0.5)
    int8 = EmbeddingModel.load(checkpoint, "cpu", precision="int8", backend="auto")
    fp32 = EmbeddingModel.load(checkpoint, "cpu", backend="onnxruntime")
    assert int8.inference == {
        "device": "cpu",
        "precision": "int8",
        "backend": "onnxruntime",
        "int8_loss_pp": {"cmc_top1": pytest.approx(0.5), "mAP": 0.0},
    }
    assert fp32.inference == {"device": "cpu", "precision": "fp32", "backend": "onnxruntime"}
    assert int8.forward.onnx.path == int8_path(checkpoint)
    inputs = torch.rand(4, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    cosine = np.sum(int8.embed_inputs(inputs) * fp32.embed_inputs(inputs), axis=1)
    assert 0.98 < cosine.min() < 0.999999  # close, and not the float32 graph


def test_a_model_that_lost_more_than_the_bound_is_refused(checkpoint, quantised):
    lost = 0.01 * (ACCURACY_BOUND_PP + 1)
    record = write_int8(
        checkpoint, quantised[1], measured(0.60, 0.60 - lost, sha256_of(checkpoint))
    )
    assert not record["accepted"]
    with pytest.raises(
        Int8Refused, match=r"lost cmc_top1 2\.00, mAP 0\.00 percentage points"
    ) as refused:
        EmbeddingModel.load(checkpoint, "cpu", precision="int8", backend="auto")
    assert refused.value.loss_pp == {"cmc_top1": pytest.approx(2.0), "mAP": 0.0}


def test_a_record_proves_only_its_own_file_and_checkpoint(checkpoint, quantised):
    write_int8(checkpoint, quantised[1], measured(0.60, 0.60, sha256_of(checkpoint)))
    int8_path(checkpoint).write_bytes(quantised[1][:-1] + b"\0")
    with pytest.raises(Int8Refused, match="is not the file its record measured"):
        EmbeddingModel.load(checkpoint, "cpu", precision="int8", backend="auto")
    write_int8(checkpoint, quantised[1], measured(0.60, 0.60, "0" * 64))
    with pytest.raises(Int8Refused, match="was made from another checkpoint"):
        EmbeddingModel.load(checkpoint, "cpu", precision="int8", backend="auto")


def test_int8_runs_only_on_onnxruntime_on_the_cpu(checkpoint, monkeypatch):
    with pytest.raises(BackendError, match="int8 runs only on"):
        EmbeddingModel.load(checkpoint, "cpu", precision="int8", backend="torch")
    monkeypatch.setenv("RADMATCH_PRECISION", "int8")
    assert Settings().precision == "int8"


def test_quantize_measures_int8_as_evaluate_measures_float32(
    checkpoint, phantom_manifest, calibration_manifest, tmp_path, capsys
):
    code = main(
        ["quantize", "--checkpoint", str(checkpoint), "--training-cohort", str(phantom_manifest),
         "--manifest", str(calibration_manifest)]
    )  # fmt: skip
    record = json.loads(int8_record_path(checkpoint).read_text())
    assert code == (0 if record["accepted"] else 1)
    assert (
        "may serve it" if record["accepted"] else "is refused for it"
    ) in capsys.readouterr().out
    assert record["checkpoint_sha256"] == sha256_of(checkpoint)
    assert record["int8_sha256"] == hashlib.sha256(int8_path(checkpoint).read_bytes()).hexdigest()
    # The seeded checkpoint names no cohort and holds none out: it trained on every image.
    assert record["calibration"]["images"] == min(256, len(read_knee_manifest(phantom_manifest)))
    test_images = read_knee_manifest(calibration_manifest)
    assert record["test"]["images"] == len(test_images)
    assert record["test"]["people"] == len({r.person_id for r in test_images})
    for measure in ("cmc_top1", "mAP"):
        lost = 100 * (record["fp32"][measure] - record["int8"][measure])
        assert record["loss_pp"][measure] == pytest.approx(lost)
    assert record["accepted"] == all(v <= ACCURACY_BOUND_PP for v in record["loss_pp"].values())
    assert 0.9 < record["cosine_to_fp32"]["min"] < 1.0
    assert record["speed"]["int8_images_per_second"] > 0

    main(["evaluate", "--checkpoint", str(checkpoint), "--manifest", str(calibration_manifest),
          "--out", str(tmp_path / "evaluation")])  # fmt: skip
    every = json.loads((tmp_path / "evaluation" / "metrics.json").read_text())["intervals"]["all"]
    assert record["fp32"]["cmc_top1"] == every["cmc"]["1"]
    assert record["fp32"]["mAP"] == every["mAP"]
    assert record["fp32"]["queries"] == every["queries"]


def test_quantize_calibrates_on_the_training_cohort_and_tests_on_others(
    tmp_path, phantom_manifest, calibration_manifest
):
    checkpoint = tmp_path / "trained.pt"
    torch.manual_seed(0)
    trained_on = hashlib.sha256(phantom_manifest.read_bytes()).hexdigest()
    save_checkpoint(
        checkpoint, Embedder(), Preprocessing(input_size=64), manifest_sha256=trained_on
    )
    other = ["--training-cohort", str(calibration_manifest), "--manifest", str(phantom_manifest)]
    with pytest.raises(SystemExit, match="is not the cohort this checkpoint trained on"):
        main(["quantize", "--checkpoint", str(checkpoint), *other])
    same = ["--training-cohort", str(phantom_manifest), "--manifest", str(phantom_manifest)]
    with pytest.raises(SystemExit, match="is the cohort it trained on: test on other people"):
        main(["quantize", "--checkpoint", str(checkpoint), *same])
    assert not int8_path(checkpoint).exists() and not int8_record_path(checkpoint).exists()


def test_quantize_splits_a_chestxray14_release_into_calibration_and_test(
    tmp_path, chestxray14_release
):
    root = chestxray14_release(tmp_path / "cxr", patients=8, test_patients={7, 8}, visits=3)
    checkpoint = tmp_path / "chest.pt"
    torch.manual_seed(0)
    trained_on = hashlib.sha256((root / "Data_Entry_2017.csv").read_bytes()).hexdigest()
    save_checkpoint(
        checkpoint, Embedder(), Preprocessing(input_size=64), manifest_sha256=trained_on
    )
    main(["quantize", "--checkpoint", str(checkpoint), "--training-cohort", str(root),
          "--chestxray14", str(root)])  # fmt: skip
    record = json.loads(int8_record_path(checkpoint).read_text())
    assert record["calibration"]["images"] == 6 * 3  # the six patients outside the test split
    assert record["test"]["people"] == 2 and record["test"]["images"] == 2 * 3
