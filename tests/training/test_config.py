"""Presets, config files and command-line options, in that order of precedence."""

from __future__ import annotations

import argparse

import pytest

from training.config import (
    PRESETS,
    ConfigError,
    add_config_options,
    overrides_from,
    resolve_config,
)


def test_the_paper_preset_is_the_papers_setup():
    paper = PRESETS["paper"]
    assert (paper.input_size, paper.people_per_batch, paper.images_per_person) == (256, 32, 4)
    assert paper.batch_size == 128
    assert (paper.lr, paper.weight_decay, paper.epochs) == (1e-4, 1e-4, 100)
    assert (paper.loss, paper.triplets, paper.margin, paper.beta) == (
        "adatriplet-am",
        "semihard",
        0.25,
        0.0,
    )
    assert {"paper", "cpu", "smoke"} <= set(PRESETS)


def test_file_overrides_preset_and_command_line_overrides_file(tmp_path):
    config_file = tmp_path / "run.toml"
    config_file.write_text('epochs = 7\nlr = 0.001\nloss = "triplet"\namp = false\n')
    parser = argparse.ArgumentParser()
    add_config_options(parser)
    args = parser.parse_args(["--epochs", "9", "--people-per-batch", "8", "--amp"])
    config = resolve_config("cpu", config_file, overrides_from(args))
    assert config.epochs == 9 and config.people_per_batch == 8 and config.amp is True
    assert config.lr == 0.001 and config.loss == "triplet"
    assert config.input_size == PRESETS["cpu"].input_size


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("epoch = 3\n", "unknown option 'epoch'"),
        ('epochs = "3"\n', "epochs = '3' is not a"),
        ("amp = 1\n", "amp = 1 is not a"),
        ("epochs = \n", "run.toml"),
    ],
)
def test_a_bad_config_file_is_refused_with_its_name(tmp_path, text, message):
    config_file = tmp_path / "run.toml"
    config_file.write_text(text)
    with pytest.raises(ConfigError, match=message):
        resolve_config("smoke", config_file)


def test_an_unknown_preset_is_refused():
    with pytest.raises(ConfigError, match="choose one of paper, cpu, smoke"):
        resolve_config("fast")


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("pooling", "max"),
        ("neck", "mlp"),
        ("last_stride", 4),
        ("lr_schedule", "step"),
        ("augmentation", "heavy"),
        ("loss", "focal"),
    ],
)
def test_an_option_naming_nothing_known_is_refused_with_the_choices(option, value):
    with pytest.raises(ConfigError, match=f"{option} = {value!r} must be one of"):
        resolve_config("smoke", overrides={option: value})


def test_the_architecture_options_reach_the_network():
    config = resolve_config("smoke", overrides={"pooling": "gem", "neck": "bn", "last_stride": 1})
    assert (config.architecture.pooling, config.architecture.neck) == ("gem", "bn")
    assert config.architecture.last_stride == 1
    assert config.architecture.embedding_dim == config.embedding_dim
