"""The `radmatch` command: each subcommand end to end, and its refusals."""

from __future__ import annotations

import json

import pytest

from app.cli import main


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
