"""Checkpoints: what goes in comes out, and a damaged or foreign file is refused."""

from __future__ import annotations

import hashlib

import pytest
import torch

from model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, sha256_path
from model.network import Architecture, Embedder
from model.preprocess import Preprocessing


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(3)
    embedder = Embedder(Architecture(embedding_dim=32)).eval()
    path = tmp_path / "run" / "checkpoint.pt"
    prep = Preprocessing(input_size=64)
    digest = save_checkpoint(path, embedder, prep, metrics={"val_mAP": 0.5}, training={"lr": 1e-4})
    return path, embedder, prep, digest


def test_round_trip_gives_the_same_embeddings_and_information(saved):
    path, embedder, prep, digest = saved
    loaded = load_checkpoint(path)
    inputs = torch.randn(3, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded.embedder(inputs), embedder(inputs))
    assert loaded.preprocessing == prep
    assert loaded.embedder.embedding_dim == 32 and not loaded.embedder.training
    assert loaded.info["metrics"] == {"val_mAP": 0.5}
    assert loaded.info["training"] == {"lr": 1e-4}
    assert loaded.info["code_version"].startswith("0.1.0")
    assert loaded.info["created"].endswith("+00:00")
    assert loaded.sha256 == digest == hashlib.sha256(path.read_bytes()).hexdigest()
    # sha256sum's format, so that `sha256sum -c checkpoint.pt.sha256` checks it too
    assert sha256_path(path).read_text() == f"{digest}  checkpoint.pt\n"
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "checkpoint.pt",
        "checkpoint.pt.sha256",
    ]


def test_a_changed_file_is_refused(saved):
    path, *_ = saved
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match"):
        load_checkpoint(path)


def test_a_truncated_file_without_its_hash_is_refused(saved):
    path, *_ = saved
    sha256_path(path).unlink()
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not a torch checkpoint"):
        load_checkpoint(path)


def test_another_torch_file_is_refused(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(Embedder().state_dict(), path)
    with pytest.raises(CheckpointError, match="not a radmatch embedder checkpoint"):
        load_checkpoint(path)


def test_the_architecture_options_come_back(tmp_path):
    torch.manual_seed(4)
    architecture = Architecture(embedding_dim=16, pooling="gem", neck="bn", last_stride=1)
    embedder = Embedder(architecture)
    embedder(torch.randn(4, 1, 64, 64))  # train mode: the neck's running statistics move
    embedder.eval()
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, embedder, Preprocessing(input_size=64))
    loaded = load_checkpoint(path)
    assert loaded.embedder.architecture == architecture
    inputs = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded.embedder(inputs), embedder(inputs))


def test_a_checkpoint_older_than_the_options_loads_with_the_papers_architecture(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, Embedder(Architecture(embedding_dim=32)), Preprocessing(input_size=64))
    payload = torch.load(path, weights_only=True)
    payload["architecture"] = {"name": "resnet18", "embedding_dim": 32}  # as written before them
    torch.save(payload, path)
    sha256_path(path).unlink()
    assert load_checkpoint(path).embedder.architecture == Architecture(embedding_dim=32)
