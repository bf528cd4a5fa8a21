"""A server in int8 (RADMATCH_PRECISION=int8): it starts only with a model whose int8 file was
measured within the bound, and each search says it was embedded in int8, so that a re-run can
allow for it."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from model.inference import EmbeddingModel
from model.int8 import quantize, write_int8
from tests.support.servers import API, new_server
from training.cohorts import read_knee_manifest


@pytest.fixture
def own_checkpoint(tmp_path, checkpoint):
    """The shared test checkpoint, copied (with its .sha256) so that int8 files stay here."""
    copy = tmp_path / "models" / "checkpoint.pt"
    copy.parent.mkdir()
    for suffix in ("", ".sha256"):
        shutil.copy(f"{checkpoint}{suffix}", f"{copy}{suffix}")
    return copy


def test_a_server_in_int8_will_not_start_with_an_unmeasured_model(tmp_path, own_checkpoint):
    with pytest.raises(AssertionError, match="has no measured int8 file; run `radmatch quantize"):
        new_server(
            tmp_path, f"sqlite:///{tmp_path / 'radmatch.db'}", own_checkpoint, precision="int8"
        )


def test_a_server_in_int8_says_so_on_each_search(tmp_path, own_checkpoint, phantom_manifest):
    fp32 = EmbeddingModel.load(own_checkpoint, "cpu", backend="onnxruntime")
    calibration = np.random.default_rng(0).random((16, 1, 64, 64), dtype=np.float32)
    measured = {"fp32": {"cmc_top1": 0.5, "mAP": 0.5}, "int8": {"cmc_top1": 0.5, "mAP": 0.5}}
    write_int8(
        own_checkpoint,
        quantize(fp32.forward.onnx.data, calibration),
        {"checkpoint_sha256": fp32.sha256, **measured},
    )
    server = new_server(
        tmp_path, f"sqlite:///{tmp_path / 'radmatch.db'}", own_checkpoint, precision="int8"
    )
    try:
        record = read_knee_manifest(phantom_manifest)[0]
        with server.examiner() as client:
            person = client.post(f"{API}/people", json={"external_ref": "P1"}).json()
            files = {"file": ("image.png", record.path.read_bytes())}
            uploaded = client.post(f"{API}/people/{person['id']}/images", files=files)
            assert uploaded.status_code == 201, uploaded.text
            answer = client.post(f"{API}/search", files={"file": ("q", record.path.read_bytes())})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["inference"] == {"device": "cpu", "precision": "int8", "backend": "onnxruntime"}
        assert body["candidates"][0]["person_id"] == person["id"]
        assert body["candidates"][0]["similarity"] == pytest.approx(1.0, abs=1e-5)
    finally:
        server.stop()
