"""A server in int8 (RADMATCH_PRECISION=int8): it starts only with a model whose int8 file was
measured within the bound, and each search says it was embedded in int8 and what int8 was measured
to cost, so that a re-run can allow for it and the case report can state it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from model.inference import EmbeddingModel
from model.int8 import quantize, write_int8
from tests.app.test_case_report import case_search, open_case, pdf_text, report
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


def quantised(checkpoint: Path, int8_top1: float) -> None:
    """The checkpoint's int8 file, with a record that says int8 scored int8_top1 (float32 0.5)."""
    fp32 = EmbeddingModel.load(checkpoint, "cpu", backend="onnxruntime")
    calibration = np.random.default_rng(0).random((16, 1, 64, 64), dtype=np.float32)
    measured = {"fp32": {"cmc_top1": 0.5, "mAP": 0.5}, "int8": {"cmc_top1": int8_top1, "mAP": 0.5}}
    write_int8(
        checkpoint,
        quantize(fp32.forward.onnx.data, calibration),
        {"checkpoint_sha256": fp32.sha256, **measured},
    )


def test_a_server_in_int8_will_not_start_with_an_unmeasured_model(tmp_path, own_checkpoint):
    with pytest.raises(AssertionError, match="has no measured int8 file; run `radmatch quantize"):
        new_server(
            tmp_path, f"sqlite:///{tmp_path / 'radmatch.db'}", own_checkpoint, precision="int8"
        )


def test_a_server_in_int8_says_so_on_each_search_and_in_the_case_report(
    tmp_path, own_checkpoint, phantom_manifest
):
    quantised(own_checkpoint, int8_top1=0.496)
    server = new_server(
        tmp_path, f"sqlite:///{tmp_path / 'radmatch.db'}", own_checkpoint, precision="int8"
    )
    try:
        record = read_knee_manifest(phantom_manifest)[0]
        with server.examiner() as client:
            person = client.post(f"{API}/people", json={"external_ref": "P1"}).json()
            files = {"file": ("image.png", record.path.read_bytes())}
            spacing = {"pixel_spacing_mm": record.pixel_spacing_mm}  # as the case search has it
            uploaded = client.post(f"{API}/people/{person['id']}/images", files=files, data=spacing)
            assert uploaded.status_code == 201, uploaded.text
            case = open_case(client, "2026/INT8-001")
            body = case_search(client, case["id"], record)
            pdf = report(client, case["id"])
        loss = {"cmc_top1": pytest.approx(0.4), "mAP": 0.0}
        assert body["inference"] == {
            "device": "cpu",
            "precision": "int8",
            "backend": "onnxruntime",
            "int8_loss_pp": loss,
        }
        assert body["candidates"][0]["person_id"] == person["id"]
        assert body["candidates"][0]["similarity"] == pytest.approx(1.0, abs=1e-5)
        text = pdf_text(pdf, tmp_path)
        assert "Embedded on cpu, int8, by onnxruntime" in text
        assert "int8 measured lost 0.40 points of CMC top-1 and 0.00 of mAP to float32" in text
        with server.admin() as admin:
            (version,) = admin.get(f"{API}/admin/models").json()
        assert version["int8"] == {
            "servable": True,
            "refused": None,
            "loss_pp": loss,
            "bound_pp": 1.0,
        }
    finally:
        server.stop()


def test_the_model_listing_says_why_a_version_may_not_run_in_int8(tmp_path, own_checkpoint):
    server = new_server(tmp_path, f"sqlite:///{tmp_path / 'radmatch.db'}", own_checkpoint)
    try:
        with server.admin() as admin:
            assert admin.get(f"{API}/admin/models").json()[0]["int8"] is None  # never quantised
            quantised(own_checkpoint, int8_top1=0.48)
            int8 = admin.get(f"{API}/admin/models").json()[0]["int8"]
        assert not int8["servable"] and int8["loss_pp"]["cmc_top1"] == pytest.approx(2.0)
        assert "lost cmc_top1 2.00, mAP 0.00 percentage points" in int8["refused"]
    finally:
        server.stop()
