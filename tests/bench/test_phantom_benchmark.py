"""The phantom benchmark's kept run records: reused only for the run they describe, so a benchmark
spread over several sittings never mixes in a run of another recipe or cohort."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import pytest

from bench.phantom_benchmark import recorded_report
from training.config import resolve_config

COHORTS = {"train_sha256": "a" * 64, "test_sha256": "b" * 64}


@pytest.fixture
def record(tmp_path):
    config = resolve_config("cpu", overrides={"loss": "triplet", "seed": 1})
    path = tmp_path / "cpu-triplet-seed1.json"
    report = {"intervals": {}, "run": {"config": asdict(config), "cohorts": COHORTS}}
    path.write_text(json.dumps(report))
    return path, config


def test_a_record_is_reused_for_the_run_it_describes(record):
    path, config = record
    assert recorded_report(path, config, COHORTS)["run"]["cohorts"] == COHORTS


def test_options_that_do_not_change_what_is_learned_keep_the_record(record):
    path, config = record
    assert recorded_report(path, replace(config, workers=3, device="cpu"), COHORTS) is not None


@pytest.mark.parametrize(
    "change", [{"epochs": 60}, {"loss": "adatriplet-am"}, {"classification_weight": 0.0}]
)
def test_another_recipe_or_length_trains_again(record, change):
    path, config = record
    assert recorded_report(path, replace(config, **change), COHORTS) is None


def test_another_cohort_trains_again(record):
    path, config = record
    assert recorded_report(path, config, COHORTS | {"test_sha256": "c" * 64}) is None


def test_no_record_trains(tmp_path, record):
    _, config = record
    assert recorded_report(tmp_path / "absent.json", config, COHORTS) is None
