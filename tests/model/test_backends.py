"""The inference backends: ONNX Runtime gives PyTorch's embeddings, from an ONNX file that is the
checkpoint's (checked before use, exported again when it is not), and the settings take only the
backends there are."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from app.core.config import Settings
from model.backends import BackendError
from model.checkpoint import save_checkpoint
from model.decode import decode_image
from model.inference import EmbeddingModel
from model.network import Embedder
from model.onnx_file import onnx_path, record_path
from model.preprocess import Preprocessing
from model.threads import available_cpus, thread_count
from tests.support.servers import seeded_checkpoint
from training.cohorts import read_knee_manifest


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    return seeded_checkpoint(tmp_path / "models" / "checkpoint.pt")


def both(checkpoint: Path, **options) -> tuple[EmbeddingModel, EmbeddingModel]:
    torch_model = EmbeddingModel.load(checkpoint, "cpu", backend="torch")
    return torch_model, EmbeddingModel.load(checkpoint, "cpu", backend="onnxruntime", **options)


def file_identity(path: Path) -> tuple[int, int]:
    status = path.stat()
    return status.st_ino, status.st_mtime_ns


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[EmbeddingModel, EmbeddingModel]:
    return both(seeded_checkpoint(tmp_path_factory.mktemp("model") / "checkpoint.pt"))


@pytest.mark.parametrize("batch", [1, 7])
def test_onnxruntime_embeds_phantoms_as_pytorch_does(models, phantom_manifest, batch):
    records = read_knee_manifest(phantom_manifest)[:batch]
    images = [decode_image(r.path.read_bytes()) for r in records]
    spacings = [r.pixel_spacing_mm for r in records]
    torch_model, onnx_model = models
    expected = torch_model.embed(images, spacings)
    got = onnx_model.embed(images, spacings)
    assert got.shape == expected.shape == (batch, 128) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cosine = np.sum(got * expected, axis=1) / np.linalg.norm(expected, axis=1)
    assert cosine.min() >= 0.99999
    # Inputs unlike a knee too: the graph is the network, not a fit to one kind of image.
    noise = torch.randn(batch, 1, 64, 64, generator=torch.Generator().manual_seed(batch))
    assert np.sum(onnx_model.embed_inputs(noise) * torch_model.embed_inputs(noise), 1).min() > (
        0.99999
    )


def test_the_onnx_file_is_made_beside_the_checkpoint_with_both_sha256s(checkpoint):
    model = EmbeddingModel.load(checkpoint, "cpu", backend="onnxruntime")
    onnx = onnx_path(checkpoint)
    assert onnx == checkpoint.with_name("checkpoint.pt.onnx") and onnx.is_file()
    onnx_line, checkpoint_line = record_path(onnx).read_text().splitlines()
    assert onnx_line == f"{hashlib.sha256(onnx.read_bytes()).hexdigest()}  checkpoint.pt.onnx"
    assert checkpoint_line == f"{model.sha256}  checkpoint.pt"
    assert model.inference == {"device": "cpu", "precision": "fp32", "backend": "onnxruntime"}
    assert not [p for p in checkpoint.parent.iterdir() if p.name.endswith(".tmp")]


def test_a_valid_onnx_file_is_used_as_it_is(checkpoint):
    EmbeddingModel.load(checkpoint, "cpu", backend="onnxruntime")
    before = file_identity(onnx_path(checkpoint))
    EmbeddingModel.load(checkpoint, "cpu", backend="onnxruntime")
    assert file_identity(onnx_path(checkpoint)) == before


def test_an_altered_onnx_file_is_exported_again(checkpoint, caplog):
    EmbeddingModel.load(checkpoint, "cpu", backend="onnxruntime")
    onnx = onnx_path(checkpoint)
    good = onnx.read_bytes()
    altered = bytearray(good)
    altered[len(altered) // 2] ^= 0xFF  # a weight, say: it would still load and embed wrongly
    onnx.write_bytes(bytes(altered))
    torch_model, onnx_model = both(checkpoint)
    assert onnx.read_bytes() == good
    assert "its sha256 is not the one recorded" in caplog.text
    inputs = torch.randn(3, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    assert np.sum(onnx_model.embed_inputs(inputs) * torch_model.embed_inputs(inputs), 1).min() > (
        0.99999
    )


def test_the_onnx_file_of_a_replaced_checkpoint_is_exported_again(checkpoint, caplog):
    EmbeddingModel.load(checkpoint, "cpu", backend="onnxruntime")
    old = onnx_path(checkpoint).read_bytes()
    torch.manual_seed(1)  # another model at the same path, with its own .sha256
    save_checkpoint(checkpoint, Embedder(), Preprocessing(input_size=64))
    torch_model, onnx_model = both(checkpoint)
    assert "it was made from checkpoint" in caplog.text
    assert onnx_path(checkpoint).read_bytes() != old
    assert record_path(onnx_path(checkpoint)).read_text().split()[2] == torch_model.sha256
    inputs = torch.randn(2, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    assert np.sum(onnx_model.embed_inputs(inputs) * torch_model.embed_inputs(inputs), 1).min() > (
        0.99999
    )


def test_where_the_checkpoint_directory_cannot_take_it_the_fallback_directory_does(
    checkpoint, tmp_path
):
    onnx_path(checkpoint).mkdir()  # in the way: the file cannot be written there
    fallback = tmp_path / "data" / "models" / "onnx"
    model = EmbeddingModel.load(checkpoint, "cpu", backend="onnxruntime", onnx_dir=fallback)
    written = fallback / f"{model.sha256}.onnx"
    assert written.is_file() and record_path(written).is_file()
    assert model.forward.onnx.path == written
    again = EmbeddingModel.load(checkpoint, "cpu", backend="onnxruntime", onnx_dir=fallback)
    assert again.forward.onnx.path == written


def test_onnxruntime_runs_on_the_cpu_in_float32_only(checkpoint):
    with pytest.raises(BackendError, match="fp32"):
        EmbeddingModel.load(checkpoint, "cpu", precision="bf16", backend="onnxruntime")
    with pytest.raises(BackendError, match="unknown inference backend"):
        EmbeddingModel.load(checkpoint, "cpu", backend="tensorrt")  # type: ignore[arg-type]


def test_auto_is_onnxruntime_on_the_cpu(checkpoint):
    assert EmbeddingModel.load(checkpoint, "cpu", backend="auto").backend == "onnxruntime"


def test_settings_take_only_the_backends_there_are(monkeypatch):
    monkeypatch.setenv("RADMATCH_INFERENCE_BACKEND", "onnxruntime")
    monkeypatch.setenv("RADMATCH_THREADS", "1")
    settings = Settings()
    assert settings.inference_backend == "onnxruntime" and settings.threads == 1
    monkeypatch.setenv("RADMATCH_INFERENCE_BACKEND", "tensorrt")
    with pytest.raises(ValidationError, match="inference_backend"):
        Settings()
    monkeypatch.setenv("RADMATCH_INFERENCE_BACKEND", "torch")
    monkeypatch.setenv("RADMATCH_THREADS", "0")
    with pytest.raises(ValidationError, match="threads"):
        Settings()


def test_threads_default_to_the_cpus_this_process_may_use(checkpoint):
    assert available_cpus() == len(os.sched_getaffinity(0))
    model = EmbeddingModel.load(checkpoint, "cpu", backend="onnxruntime", threads=1)
    assert model.forward.threads == 1 and thread_count() == 1 and torch.get_num_threads() == 1
    EmbeddingModel.load(checkpoint, "cpu", backend="onnxruntime", threads=available_cpus())
    assert torch.get_num_threads() == available_cpus()
