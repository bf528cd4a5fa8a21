"""`radmatch calibrate` and what `radmatch evaluate` reports of a calibrated checkpoint: the
calibrated LRs of the protocol's pairs per interval, and the four calibration figures."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
import torch
from PIL import Image

from cli import main
from model.checkpoint import load_checkpoint, save_checkpoint
from model.network import Embedder
from model.preprocess import Preprocessing
from tests.support.servers import seeded_checkpoint

FIGURES = ("ece.png", "pav.png", "scores.png", "tippett.png")


def test_calibrate_rewrites_the_checkpoint_with_its_calibration(
    calibration_manifest, tmp_path, capsys
):
    path = seeded_checkpoint(tmp_path / "checkpoint.pt")
    before = load_checkpoint(path)
    command = ["calibrate", "--checkpoint", str(path), "--manifest", str(calibration_manifest)]
    assert main([*command, "--method", "kde"]) == 0
    printed = capsys.readouterr().out
    assert "calibration: kde on" in printed and "| pooled |" in printed
    assert "| 7 years and more |" in printed

    after = load_checkpoint(path)  # its .sha256 was rewritten with it
    assert printed.strip().endswith(f"sha256 {after.sha256}")
    assert {k: v for k, v in after.info.items() if k != "calibration"} == before.info
    for name, weights in before.embedder.state_dict().items():
        assert torch.equal(weights, after.embedder.state_dict()[name])
    payload = after.info["calibration"]
    assert payload["calibration"]["method"] == "kde"
    assert payload["source"] == {
        "kind": "manifest",
        "manifest": str(calibration_manifest),
        "manifest_sha256": hashlib.sha256(calibration_manifest.read_bytes()).hexdigest(),
        "images": payload["source"]["images"],
        "people": 6,
    }
    assert payload["validation"]["folds"] == 3  # two people or more in each fold


def test_calibrate_refuses_the_people_the_checkpoint_trained_on(phantom_manifest, tmp_path):
    path = tmp_path / "checkpoint.pt"
    sha256 = hashlib.sha256(phantom_manifest.read_bytes()).hexdigest()
    save_checkpoint(path, Embedder(), Preprocessing(input_size=64), manifest_sha256=sha256)
    command = ["calibrate", "--checkpoint", str(path), "--manifest", str(phantom_manifest)]
    with pytest.raises(SystemExit, match="never trained on"):
        main(command)
    assert "calibration" not in load_checkpoint(path).info


def test_evaluate_reports_the_calibrated_likelihood_ratios(
    checkpoint, phantom_manifest, tmp_path, capsys
):
    path = shutil.copy(checkpoint, tmp_path / "checkpoint.pt")  # calibrated (tests/conftest.py)
    shutil.copy(f"{checkpoint}.sha256", tmp_path / "checkpoint.pt.sha256")
    out = tmp_path / "evaluation"
    command = ["evaluate", "--checkpoint", str(path), "--manifest", str(phantom_manifest)]
    assert main([*command, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| calibrated LRs (logistic) |" in printed and "| Cllr |" in printed
    assert (out / "metrics.md").read_text() == printed

    metrics = json.loads((out / "metrics.json").read_text())
    calibration = metrics["calibration"]
    assert calibration["method"] == "logistic"
    assert calibration["source"]["kind"] == "manifest"
    assert list(calibration["intervals"]) == list(metrics["intervals"])
    everything = calibration["intervals"]["all"]
    assert everything["same_pairs"] + everything["different_pairs"] == sum(
        interval["same_pairs"] + interval["different_pairs"]
        for name, interval in calibration["intervals"].items()
        if name != "all"
    )
    verification = metrics["verification"]
    assert everything["same_pairs"] == verification["genuine_pairs"]
    assert everything["different_pairs"] == verification["impostor_pairs"]
    for interval in calibration["intervals"].values():
        assert interval["cllr"] >= 0 and interval["cllr_min"] <= interval["cllr"] + 1e-9
        assert set(interval["bands"]) == {
            "0-2 years",
            "2-4 years",
            "4-7 years",
            "7 years and more",
        }
    assert calibration["figures"] == list(FIGURES)
    for name in FIGURES:
        with Image.open(out / name) as figure:
            assert figure.format == "PNG"


@pytest.mark.parametrize("embedder", ["uncalibrated checkpoint", "raw-pixels"])
def test_evaluate_without_a_calibration_says_why(embedder, calibration_manifest, tmp_path, capsys):
    if embedder == "raw-pixels":
        options, why = ["--embedder", "raw-pixels", "--input-size", "64"], "reference embedder"
    else:
        path = seeded_checkpoint(tmp_path / "checkpoint.pt")
        options, why = ["--checkpoint", str(path)], "carries no calibration"
    out = tmp_path / "evaluation"
    command = ["evaluate", "--manifest", str(calibration_manifest), *options, "--out", str(out)]
    assert main(command) == 0
    printed = capsys.readouterr().out
    assert "calibration: none;" in printed and why in printed
    assert json.loads((out / "metrics.json").read_text())["calibration"] is None
    assert not any((out / name).exists() for name in FIGURES)
