"""The four calibration figures, and the empirical cross-entropy they plot."""

from __future__ import annotations

import numpy as np
from PIL import Image

from training.calibration.metrics import cllr
from training.calibration.plots import PRIOR_LOG10_ODDS, empirical_cross_entropy, write_plots


def _scored_pairs(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    same = np.r_[np.ones(200, dtype=bool), np.zeros(3000, dtype=bool)]
    scores = np.where(same, rng.normal(0.6, 0.15, same.size), rng.normal(0.1, 0.2, same.size))
    return 6.0 * (scores - 0.35), same, scores


def test_write_plots_writes_four_pngs(tmp_path):
    log10_lrs, same, scores = _scored_pairs()
    written = write_plots(tmp_path / "figures", log10_lrs, same, scores)
    assert set(written) == {"tippett", "ece", "pav", "scores"}
    for name, path in written.items():
        assert path == tmp_path / "figures" / f"{name}.png"
        assert path.stat().st_size > 10_000  # axes, curves and labels, not an empty canvas
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size[0] >= 400


def test_empirical_cross_entropy_at_even_odds_is_cllr():
    log10_lrs, same, _ = _scored_pairs(1)
    even = np.flatnonzero(np.isclose(PRIOR_LOG10_ODDS, 0.0))
    ece = empirical_cross_entropy(log10_lrs, same)
    assert len(even) == 1 and np.isclose(ece[even[0]], cllr(log10_lrs, same))
    neutral = empirical_cross_entropy(np.zeros_like(log10_lrs), same)
    assert np.isclose(neutral[even], 1.0)  # LR = 1 at even odds leaves one bit
    assert np.all(neutral >= ece)  # these LRs are informative at every prior
    # infinite LRs on the right side cost nothing, on the wrong side infinitely much
    assert empirical_cross_entropy(np.where(same, np.inf, -np.inf), same).max() == 0.0
    assert np.all(np.isinf(empirical_cross_entropy(np.where(same, -np.inf, np.inf), same)))
