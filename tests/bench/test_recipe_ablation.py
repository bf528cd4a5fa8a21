"""The recipe ablation's row: each seed's own figures beside the mean and spread over the seeds."""

from __future__ import annotations

import pytest

from bench.recipe_ablation import variant_row


def report(top1_all: float, top1_8y: float, map_all: float) -> dict:
    return {
        "intervals": {
            "all": {"cmc": {"1": top1_all}, "mAP": map_all},
            "96": {"cmc": {"1": top1_8y}, "mAP": 0.0},
        },
        "run": {"seed": 0, "training_minutes": 8.0, "seconds_per_epoch": 10.0},
    }


def test_a_row_keeps_each_seeds_figures_and_their_mean_and_spread():
    row = variant_row("variant", 42, [report(0.70, 0.40, 0.60), report(0.66, 0.44, 0.64)])
    assert [run["top1_all"] for run in row["runs"]] == pytest.approx([70.0, 66.0])
    assert [run["top1_8y"] for run in row["runs"]] == pytest.approx([40.0, 44.0])
    assert [run["mAP_all"] for run in row["runs"]] == pytest.approx([60.0, 64.0])
    assert row["top1_all"] == pytest.approx([68.0, 2.8284271])
    assert row["top1_8y"] == pytest.approx([42.0, 2.8284271])
    assert row["mAP_all"] == pytest.approx([62.0, 2.8284271])
