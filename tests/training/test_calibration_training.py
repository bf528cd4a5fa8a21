"""Training leaves a calibrated checkpoint: fitted on pairs of people it never trained on (the
held-out validation people, or a calibration manifest's), stored in info["calibration"], and
reloaded to give the same LRs."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest

from cli import main
from model.checkpoint import load_checkpoint, sha256_path
from training.calibration.calibration import Calibration
from training.calibration.fitting import (
    calibrate_run,
    calibration_summary,
    image_ids,
    manifest_calibration_records,
    people_to_calibrate_on,
)
from training.calibration.pairs import Pairs
from training.cohorts import read_cohort
from training.config import PRESETS
from training.train import split_people, train

# One step of one epoch: what is checked is what training leaves behind, not what it learns.
TINY = dataclasses.replace(PRESETS["smoke"], epochs=1, max_steps_per_epoch=1)


@pytest.fixture(scope="module")
def run_with_validation(phantom_manifest, tmp_path_factory) -> Path:
    """10 phantom people, 4 of them held out for validation."""
    config = dataclasses.replace(TINY, val_fraction=0.4)
    return train(config, phantom_manifest, tmp_path_factory.mktemp("run"), progress=False)


@pytest.mark.slow  # a training run: about 10 s on two cores
def test_training_calibrates_the_best_checkpoint_on_the_validation_people(
    run_with_validation, phantom_manifest
):
    checkpoint = load_checkpoint(run_with_validation)  # verifies the rewritten .sha256 too
    info = checkpoint.info
    assert {"training", "manifest_sha256", "metrics", "history", "code_version"} <= set(info)
    records, _ = read_cohort(phantom_manifest)
    trained, validation = split_people(records, 0.4, TINY.seed)
    validation_people = {r.person_id for r in validation}
    assert len(validation_people) == 4

    payload = info["calibration"]
    assert payload["source"] == {
        "kind": "validation people",
        "manifest": None,
        "manifest_sha256": None,
        "images": len(validation),
        "people": 4,
    }
    pairs = Pairs.from_json(payload["pairs"])
    assert set(pairs.people) == validation_people  # never a person trained on
    assert not validation_people & {r.person_id for r in trained}
    assert pairs.images == tuple(image_ids(validation))
    n = len(validation)
    assert len(pairs) == n * (n - 1) // 2  # every pair of so few images
    assert payload["validation"]["folds"] == 2 and payload["validation"]["method"] == "logistic"

    calibration = Calibration.from_json(payload["calibration"])
    assessed = calibration.assess(pairs.similarity, pairs.years)
    assert np.all(np.isfinite(assessed.log10_lr))
    low, high = calibration.pooled.elub
    pooled = assessed.curve == -1
    assert np.all((assessed.log10_lr[pooled] >= low) & (assessed.log10_lr[pooled] <= high))
    # the logistic curve never speaks for different people the more similar two images are
    ordered = calibration.pooled.log10_lr(np.sort(pairs.similarity))
    assert np.all(np.diff(ordered) >= 0)
    summary = calibration_summary(payload)
    assert "logistic on" in summary and "| pooled |" in summary


@pytest.mark.slow  # a training run: about 10 s on two cores
def test_a_calibration_manifest_takes_the_place_of_the_validation_people(
    phantom_manifest, calibration_manifest, tmp_path
):
    config = dataclasses.replace(
        TINY, val_fraction=0.4, calibration_manifest=str(calibration_manifest)
    )
    info = load_checkpoint(train(config, phantom_manifest, tmp_path, progress=False)).info
    source = info["calibration"]["source"]
    assert source["kind"] == "manifest" and source["manifest"] == str(calibration_manifest)
    assert (
        source["manifest_sha256"] == hashlib.sha256(calibration_manifest.read_bytes()).hexdigest()
    )
    calibration_people = {r.person_id for r in read_cohort(calibration_manifest)[0]}
    assert source["people"] == len(calibration_people) == 6
    assert set(Pairs.from_json(info["calibration"]["pairs"]).people) == calibration_people
    assert info["training"]["calibration_manifest"] == str(calibration_manifest)


def test_without_validation_people_or_a_manifest_nothing_is_calibrated(tmp_path):
    people = people_to_calibrate_on(
        None, [], trained_on_sha256="0" * 64, trained_people=frozenset({"PH7-00000"})
    )
    assert people is None
    checkpoint = tmp_path / "checkpoint.pt"  # never read: there is nothing to calibrate on
    said = calibrate_run(checkpoint, people)
    assert said.startswith("no calibration:") and "no validation people" in said
    assert not checkpoint.exists() and not sha256_path(checkpoint).exists()


def test_a_calibration_manifest_that_cannot_serve_is_refused_before_training(
    phantom_manifest, tmp_path
):
    command = ["train", "--manifest", str(phantom_manifest), "--preset", "smoke"]
    run = tmp_path / "run"
    for manifest, message in [
        (tmp_path / "missing.csv", "missing.csv"),
        (phantom_manifest, "never trained on"),  # the training cohort itself, without a test split
    ]:
        with pytest.raises(SystemExit, match=message):
            main([*command, "--out", str(run), "--calibration-manifest", str(manifest)])
        assert not (run / "checkpoint.pt").exists()


def test_a_manifest_calibrates_only_people_never_trained_on(phantom_manifest):
    records, sha256 = read_cohort(phantom_manifest)
    trained = frozenset(sorted({r.person_id for r in records})[:7])
    kept, source = manifest_calibration_records(phantom_manifest, trained_people=trained)
    assert {r.person_id for r in kept} == {r.person_id for r in records} - trained
    assert source == {
        "kind": "manifest",
        "manifest": str(phantom_manifest),
        "manifest_sha256": sha256,
    }
    # the cohort the network trained on: only a test split was left out, and it has none
    with pytest.raises(ValueError, match="never trained on"):
        manifest_calibration_records(phantom_manifest, trained_on_sha256=sha256)
