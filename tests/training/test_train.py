"""Training end to end on a small phantom cohort: `radmatch train` then `radmatch evaluate`,
resuming after an interruption, every selectable loss, and the recipe's options."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest
import torch
from PIL import Image

from cli import main
from model.checkpoint import load_checkpoint
from training.config import PRESETS, ConfigError
from training.losses import LOSSES
from training.train import scheduled_lr, train

SMOKE = PRESETS["smoke"]


def test_train_then_evaluate_from_the_command_line(phantom_manifest, tmp_path, capsys):
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--manifest",
                str(phantom_manifest),
                "--preset",
                "smoke",
                "--out",
                str(run),
                "--flip-tta",
            ]
        )  # fmt: skip
        == 0
    )
    checkpoint = load_checkpoint(run / "checkpoint.pt")
    info = checkpoint.info
    assert info["training"]["loss"] == "adatriplet-am" and info["training"]["world_size"] == 1
    assert info["manifest_sha256"] == hashlib.sha256(phantom_manifest.read_bytes()).hexdigest()
    history = torch.load(run / "last.pt", weights_only=True)["state"]["history"]
    assert [epoch["epoch"] for epoch in history] == [1, 2]
    # the checkpoint is the epoch of best validation mAP, with the history up to it
    best = max(history, key=lambda e: e["val_mAP"])
    assert info["metrics"] == {"epoch": best["epoch"], "val_mAP": best["val_mAP"]}
    assert info["history"] == history[: best["epoch"]]
    for epoch in history:
        assert 0 <= epoch["val_mAP"] <= 1 and epoch["loss"] >= 0
        assert epoch["margin"] >= 0 and -1 <= epoch["beta"] <= 1
    # AutoMargin moved the margins away from their epoch-0 values after the first epoch
    assert (history[0]["margin"], history[0]["beta"]) != (0.25, 0.0)
    assert checkpoint.preprocessing.input_size == SMOKE.input_size
    assert checkpoint.preprocessing.flip_tta and not SMOKE.flip_tta  # the option reached it

    capsys.readouterr()  # training's own output
    out = tmp_path / "evaluation"
    args = [
        "evaluate",
        "--checkpoint",
        str(run / "checkpoint.pt"),
        "--manifest",
        str(phantom_manifest),
    ]
    assert main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| CMC top-1 |" in printed and "| EER |" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["intervals"]) == ["12", "24", "36", "48", "72", "96", "all"]
    for interval in metrics["intervals"].values():
        assert set(interval) >= {"mAP", "mAP@R", "cmc"}
        assert set(interval["cmc"]) == {"1", "5", "10"}
        assert all(
            0 <= v <= 1 for v in (interval["mAP"], interval["mAP@R"], *interval["cmc"].values())
        )
    verification = metrics["verification"]
    assert set(verification["tpr_at_fpr"]) == {"0.01", "0.001"} and 0 <= verification["eer"] <= 1
    assert (out / "metrics.md").read_text() == printed
    with Image.open(out / "evaluation.png") as figure:
        assert figure.format == "PNG"


def test_a_resumed_run_ends_exactly_where_an_uninterrupted_one_does(phantom_manifest, tmp_path):
    config = dataclasses.replace(SMOKE, epochs=2, max_steps_per_epoch=2)
    # also: two loader processes draw exactly what the main process alone draws
    whole = train(
        dataclasses.replace(config, workers=2), phantom_manifest, tmp_path / "whole", progress=False
    )
    interrupted = tmp_path / "interrupted"
    train(dataclasses.replace(config, epochs=1), phantom_manifest, interrupted, progress=False)
    resumed = train(config, phantom_manifest, interrupted, progress=False)
    state = (
        load_checkpoint(whole).info,
        torch.load(tmp_path / "whole" / "last.pt", weights_only=True),
    )
    again = load_checkpoint(resumed).info, torch.load(interrupted / "last.pt", weights_only=True)
    assert _untimed(state[1]["state"]) == _untimed(again[1]["state"])
    weights, resumed_weights = state[1]["objective"], again[1]["objective"]
    assert weights.keys() == resumed_weights.keys()
    for name, value in weights.items():  # tensors, and the loss's margins (extra state)
        same = (
            torch.equal(value, resumed_weights[name])
            if torch.is_tensor(value)
            else value == resumed_weights[name]
        )
        assert same, name

    with pytest.raises(ConfigError, match="other lr"):
        train(dataclasses.replace(config, lr=1.0), phantom_manifest, interrupted, progress=False)


@pytest.mark.parametrize("loss", [name for name in LOSSES if name != "adatriplet-am"])
def test_every_loss_trains(phantom_manifest, tmp_path, loss):
    config = dataclasses.replace(
        SMOKE, loss=loss, epochs=1, max_steps_per_epoch=2, val_fraction=0.0
    )
    checkpoint = load_checkpoint(train(config, phantom_manifest, tmp_path, progress=False))
    assert checkpoint.info["training"]["loss"] == loss
    assert torch.isfinite(torch.tensor(checkpoint.info["history"][0]["loss"]))


def test_the_recipe_options_train_and_the_architecture_reaches_the_checkpoint(
    phantom_manifest, tmp_path
):
    config = dataclasses.replace(
        SMOKE,
        epochs=2,
        max_steps_per_epoch=2,
        pooling="gem",
        neck="bn",
        last_stride=1,
        classification_weight=1.0,
        augmentation="radiograph",
        lr_schedule="cosine",
        warmup_epochs=1,
    )
    checkpoint = load_checkpoint(train(config, phantom_manifest, tmp_path, progress=False))
    assert checkpoint.embedder.architecture == config.architecture
    history = torch.load(tmp_path / "last.pt", weights_only=True)["state"]["history"]
    # each epoch's last step (the midpoint of step 2 of 2): warming up, then decaying
    assert history[0]["lr"] == pytest.approx(config.lr * 0.75)
    assert history[1]["lr"] == pytest.approx(scheduled_lr(config, 1.75))
    assert all(torch.isfinite(torch.tensor(epoch["loss"])) for epoch in history)


def test_the_learning_rate_warms_up_then_stays_or_decays_to_zero():
    cosine = dataclasses.replace(SMOKE, lr=1.0, epochs=10, warmup_epochs=2, lr_schedule="cosine")
    rates = [scheduled_lr(cosine, epochs) for epochs in (0.0, 1.0, 2.0, 6.0, 10.0)]
    assert rates == pytest.approx([0.0, 0.5, 1.0, 0.5, 0.0])
    constant = dataclasses.replace(cosine, lr_schedule="constant")
    assert scheduled_lr(constant, 1.0) == 0.5 and scheduled_lr(constant, 9.9) == 1.0
    assert scheduled_lr(dataclasses.replace(constant, warmup_epochs=0), 0.0) == 1.0


def _untimed(state: dict) -> dict:
    """The run state without wall-clock times: history, margins, best epoch."""
    return state | {
        "history": [{k: v for k, v in e.items() if k != "seconds"} for e in state["history"]]
    }
