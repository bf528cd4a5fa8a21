"""The `radmatch` command: each subcommand end to end, and its refusals."""

from __future__ import annotations

import hashlib
import json

import pytest

from cli import main
from model.checkpoint import load_checkpoint


def test_evaluate_command_writes_metrics(tmp_path, capsys):
    cohort = tmp_path / "cohort"
    assert (
        main(["synth", "--out", str(cohort), "--subjects", "3", "--seed", "11", "--no-dicom"]) == 0
    )
    out = tmp_path / "eval"
    args = ["evaluate", "--manifest", str(cohort / "manifest.csv"), "--embedder", "raw-pixels"]
    assert main([*args, "--input-size", "64", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert "all" in metrics["intervals"]
    for interval in metrics["intervals"].values():
        assert 0.0 <= interval["mAP"] <= 1.0
        assert set(interval["cmc"]) == {"1", "5", "10"}
    assert (out / "metrics.md").read_text().startswith("| metric |")
    assert "CMC top-1" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("option", "message"),
    [("--subjects=0", "at least one subject"), ("--seed=-1", "zero or positive")],
)
def test_synth_refuses_bad_options_with_a_message(tmp_path, option, message):
    args = ["synth", "--out", str(tmp_path), "--subjects", "1", option]
    with pytest.raises(SystemExit, match=message):
        main(args)
    assert not (tmp_path / "manifest.csv").exists()


def test_evaluate_reads_the_chestxray14_test_split(tmp_path, capsys, chestxray14_release):
    """Three test-split patients with a baseline and a follow-up; one train-split patient left out."""
    chestxray14_release(tmp_path, patients=4, test_patients={1, 2, 3})
    out = tmp_path / "eval"
    args = ["evaluate", "--chestxray14", str(tmp_path), "--embedder", "raw-pixels"]
    assert main([*args, "--input-size", "64", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["gallery_images"] == 3
    assert metrics["intervals"]["all"]["queries"] == 3
    assert set(metrics["intervals"]) == {"12", "all"}  # one year of age apart
    assert "CMC top-1" in capsys.readouterr().out


def test_evaluate_refuses_a_broken_manifest_with_its_location(tmp_path):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("person_id,side\nP1,L\n")
    with pytest.raises(SystemExit, match="manifest.csv"):
        main(["evaluate", "--manifest", str(manifest), "--embedder", "raw-pixels"])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--preset", "fast"], "unknown preset 'fast'"),
        (["--people-per-batch", "40"], "a batch of 40 people needs at least that many"),
        (["--manifest", "missing.csv"], "missing.csv"),
    ],
)
def test_train_refuses_what_it_cannot_do_with_a_message(
    phantom_manifest, tmp_path, options, message
):
    command = ["train", "--manifest", str(phantom_manifest), "--preset", "smoke"]
    with pytest.raises(SystemExit, match=message):
        main([*command, "--out", str(tmp_path / "run"), *options])
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_evaluate_refuses_a_damaged_checkpoint(phantom_manifest, tmp_path):
    checkpoint = tmp_path / "checkpoint.pt"
    checkpoint.write_bytes(b"not a checkpoint")
    command = ["evaluate", "--manifest", str(phantom_manifest), "--checkpoint", str(checkpoint)]
    with pytest.raises(SystemExit, match="not a torch checkpoint"):
        main(command)


def test_train_on_a_chestxray14_release_leaves_its_test_split_out(tmp_path, chestxray14_release):
    root = chestxray14_release(tmp_path / "cxr", patients=8, test_patients={7, 8}, visits=3)
    run = tmp_path / "run"
    assert main(["train", "--chestxray14", str(root), "--preset", "smoke", "--out", str(run)]) == 0
    info = load_checkpoint(run / "checkpoint.pt").info
    index = (root / "Data_Entry_2017.csv").read_bytes()
    assert info["manifest_sha256"] == hashlib.sha256(index).hexdigest()
    assert info["training"]["val_fraction"] == 0.25
