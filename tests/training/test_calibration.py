"""Score-to-LR calibration on synthetic pairs whose truth is known: the measures, the curves and
their bands, the ELUB caps, saving and reloading, the verbal scale and cross-validation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from training.calibration.calibration import (
    MIN_PAIRS_PER_BAND,
    Calibration,
    band_label,
    year_bands,
)
from training.calibration.fit import fit_calibration
from training.calibration.metrics import cllr, cllr_min, eer, elub, misleading_rates
from training.calibration.pairs import Pairs, scored_pairs
from training.calibration.validation import cross_validated, person_folds, report_on, validate
from training.calibration.verbal import verbal_scale

LABELS = ("0-2 years", "2-4 years", "4-7 years", "7 years and more")


def pairs_of(
    same_scores: np.ndarray,
    different_scores: np.ndarray,
    same_years: np.ndarray | float = np.nan,
    different_years: np.ndarray | float = np.nan,
) -> Pairs:
    """One pair per score, two images each: person S<i> twice for a same-person pair, A<i> and B<i>
    for a different-person pair."""
    n_same, n_different = len(same_scores), len(different_scores)
    people = [f"S{i}" for i in range(n_same) for _ in range(2)]
    people += [f"{side}{i}" for i in range(n_different) for side in "AB"]
    first = np.arange(0, 2 * (n_same + n_different), 2, dtype=np.int64)
    years = np.concatenate(
        [np.broadcast_to(same_years, n_same), np.broadcast_to(different_years, n_different)]
    )
    return Pairs(
        tuple(f"image{i}" for i in range(len(people))),
        tuple(people),
        first,
        first + 1,
        np.concatenate([same_scores, different_scores]).astype(np.float64),
        years.astype(np.float64),
    )


def cohort(people: int, images: int, signal: float, seed: int = 0) -> Pairs:
    """Scored pairs of random embeddings: a centre per person times `signal` plus noise (signal 0:
    one person's images are no more alike than anyone's), 18 months between a person's visits."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(people, 16))
    embeddings = signal * np.repeat(centres, images, axis=0) + rng.normal(
        size=(people * images, 16)
    )
    names = np.repeat([f"P{i:04d}" for i in range(people)], images).tolist()
    months = np.tile(np.arange(images) * 18.0, people)
    image_ids = [f"{name}/{i}" for i, name in enumerate(names)]
    return scored_pairs(image_ids, names, months, embeddings, max_different=5000, seed=seed)


def banded(seed: int = 0) -> Pairs:
    """Same-person similarity falls with the years between the images; different-person scores
    do not depend on them. 200 same and 600 different pairs at 1 year and at 8 years."""
    rng = np.random.default_rng(seed)
    short = pairs_of(rng.normal(0.8, 0.07, 200), rng.normal(0.2, 0.1, 600), 1.0, 1.0)
    long = pairs_of(rng.normal(0.55, 0.12, 200), rng.normal(0.2, 0.1, 600), 8.0, 8.0)
    return joined(short, long)


def joined(a: Pairs, b: Pairs) -> Pairs:
    offset = len(a.images)
    return Pairs(
        a.images + tuple(f"b/{image}" for image in b.images),
        a.people + tuple(f"b/{person}" for person in b.people),
        np.concatenate([a.first, b.first + offset]),
        np.concatenate([a.second, b.second + offset]),
        np.concatenate([a.similarity, b.similarity]),
        np.concatenate([a.years, b.years]),
    )


def round_tripped(calibration: Calibration) -> Calibration:
    return Calibration.from_json(json.loads(json.dumps(calibration.as_json(), allow_nan=False)))


# --- measures ---


def test_lr_one_everywhere_costs_one_bit_and_perfect_lrs_cost_nothing():
    same = np.array([True] * 5 + [False] * 7)
    assert cllr(np.zeros(12), same) == pytest.approx(1.0, abs=1e-15)
    assert cllr(np.where(same, np.inf, -np.inf), same) == 0.0
    assert cllr(np.where(same, -np.inf, np.inf), same) == np.inf
    assert math.isnan(cllr(np.zeros(3), np.ones(3, dtype=bool)))


def test_cllr_min_is_the_cost_after_the_best_monotone_map():
    # Perfectly ordered scores: PAV gives +-inf LRs and no cost, whatever the scale.
    same = np.array([False, False, True, True])
    assert cllr_min(np.array([-5.0, -4.0, 7.0, 9.0]), same) == 0.0
    # Reversed scores: the best monotone map is flat at the prior-free LR 1.
    assert cllr_min(np.array([3.0, 2.0, -1.0, -2.0]), same) == pytest.approx(1.0, abs=1e-15)


def test_eer_on_scores():
    same = np.array([True, True, False, False])
    assert eer(np.array([0.9, 0.8, 0.1, 0.2]), same) == 0.0
    assert eer(np.array([0.1, 0.2, 0.9, 0.8]), same) == 1.0
    assert eer(np.array([0.9, 0.2, 0.8, 0.1]), same) == pytest.approx(0.5)


def test_misleading_rates_count_lrs_pointing_the_wrong_way():
    same = np.array([True, True, True, True, False, False])
    rates = misleading_rates(np.array([-1.0, 0.0, 2.0, 3.0, 0.5, -2.0]), same)
    assert rates == {"same_person_below_1": 0.25, "different_people_above_1": 0.5}


def test_elub_of_lrs_that_say_nothing_is_zero():
    same = np.array([True] * 50 + [False] * 50)
    assert elub(np.zeros(100), same) == (0.0, 0.0)


def test_elub_of_perfect_lrs_stops_where_the_pair_counts_do():
    # One misleading LR each side: 99 different pairs support no more than about LR 100, and 9
    # same-person pairs no less than about 1/10.
    same = np.array([True] * 9 + [False] * 99)
    low, high = elub(np.where(same, 8.0, -8.0), same)
    assert -1.0 <= low < -0.8 and 1.8 < high <= 2.0


# --- calibration ---


def test_uninformative_scores_give_lr_about_one():
    rng = np.random.default_rng(1)
    pairs = pairs_of(rng.normal(0.3, 0.2, 4000), rng.normal(0.3, 0.2, 4000))
    calibration = fit_calibration(pairs)
    log10_lrs = calibration.assess(pairs.similarity, pairs.years).log10_lr
    assert cllr(log10_lrs, pairs.same) == pytest.approx(1.0, abs=0.05)
    assert max(abs(bound) for bound in calibration.pooled.elub) <= 0.3


def test_scores_that_speak_the_wrong_way_give_a_flat_curve_at_lr_one():
    rng = np.random.default_rng(2)
    pairs = pairs_of(rng.normal(0.2, 0.1, 300), rng.normal(0.6, 0.1, 300))
    curve = fit_calibration(pairs).pooled
    assert curve.parameters == {"intercept": 0.0, "slope": 0.0}
    assert curve.elub == (0.0, 0.0)
    assert np.all(curve.log10_lr(np.linspace(-1, 1, 11)) == 0.0)


def test_separated_scores_give_strong_lrs_either_way():
    rng = np.random.default_rng(3)
    pairs = pairs_of(rng.normal(0.8, 0.08, 500), rng.normal(0.2, 0.1, 2000))
    for method in ("logistic", "kde"):
        calibration = fit_calibration(pairs, method)
        log10_lrs = calibration.assess(pairs.similarity, pairs.years).log10_lr
        assert cllr(log10_lrs, pairs.same) < 0.2, method
        assert calibration.pooled.elub[0] < -1.5 and calibration.pooled.elub[1] > 2.0


def test_logistic_lr_rises_with_similarity_in_every_band_and_pooled():
    calibration = fit_calibration(banded())
    assert [band.label for band in calibration.bands] == ["0-2 years", "7 years and more"]
    similarity = np.linspace(-1, 1, 2001)
    for years in (np.nan, 1.0, 3.0, 8.0):
        assessed = calibration.assess(similarity, np.full_like(similarity, years))
        assert np.all(np.diff(assessed.log10_lr) >= 0), years
    for curve in (calibration.pooled, *calibration.bands):
        assert curve.parameters["slope"] > 0
        assert np.all(np.diff(curve.log10_lr(similarity)) > 0)


@pytest.mark.parametrize("method", ["logistic", "kde"])
def test_every_lr_lies_within_its_curves_elub_and_bounded_says_where_it_was_capped(method):
    calibration = fit_calibration(banded(), method)
    rng = np.random.default_rng(4)
    similarity = rng.uniform(-1, 1, 5000)
    years = rng.choice([np.nan, 0.5, 3.0, 5.0, 12.0], 5000)
    assessed = calibration.assess(similarity, years)
    raw = np.empty_like(similarity)
    for index in np.unique(assessed.curve):
        curve = calibration.curve_of(int(index))
        chosen = assessed.curve == index
        low, high = curve.elub
        assert np.all((low <= assessed.log10_lr[chosen]) & (assessed.log10_lr[chosen] <= high))
        raw[chosen] = curve.log10_lr(similarity[chosen])
    assert np.array_equal(assessed.bounded, assessed.log10_lr != raw)
    assert 0 < np.count_nonzero(assessed.bounded) < len(similarity)


@pytest.mark.parametrize("method", ["logistic", "kde"])
def test_a_saved_calibration_gives_identical_lrs(method):
    calibration = fit_calibration(banded(), method)
    reloaded = round_tripped(calibration)
    assert reloaded == calibration
    similarity = np.random.default_rng(5).uniform(-1, 1, 3000)
    years = np.resize([np.nan, 1.0, 3.0, 8.0], 3000)
    before, after = calibration.assess(similarity, years), reloaded.assess(similarity, years)
    assert np.array_equal(before.log10_lr, after.log10_lr)
    assert np.array_equal(before.bounded, after.bounded)
    assert np.array_equal(before.curve, after.curve)


def test_pairs_survive_json_exactly():
    pairs = cohort(people=20, images=3, signal=1.0)
    pairs = pairs.subset(np.arange(len(pairs)) % 7 != 0)
    years = pairs.years.copy()
    years[::5] = np.nan
    pairs = Pairs(pairs.images, pairs.people, pairs.first, pairs.second, pairs.similarity, years)
    reloaded = Pairs.from_json(json.loads(json.dumps(pairs.as_json(), allow_nan=False)))
    assert reloaded.images == pairs.images and reloaded.people == pairs.people
    for name in ("first", "second", "similarity"):
        assert getattr(reloaded, name).dtype == getattr(pairs, name).dtype
        assert np.array_equal(getattr(reloaded, name), getattr(pairs, name)), name
    assert np.array_equal(reloaded.years, pairs.years, equal_nan=True)
    assert np.array_equal(reloaded.same, pairs.same)


def test_scored_pairs_keep_every_same_person_pair_and_sample_the_rest():
    pairs = cohort(people=150, images=3, signal=1.0)
    assert np.count_nonzero(pairs.same) == 150 * 3
    assert np.count_nonzero(~pairs.same) == 5000  # of 150*3*449/2 - 450
    assert np.all(pairs.first < pairs.second)
    assert len(set(zip(pairs.first.tolist(), pairs.second.tolist(), strict=True))) == len(pairs)
    assert set(np.unique(pairs.years[pairs.same])) == {1.5, 3.0}
    assert np.all((pairs.similarity >= -1) & (pairs.similarity <= 1))


def test_a_longer_interval_gives_less_support_to_a_high_similarity():
    # At long intervals same-person pairs seldom score as high as at short ones, so a high score
    # is less telling there; a middling score, typical of a same-person pair years apart but
    # low for one a year apart, speaks more for the same person in the long band.
    calibration = fit_calibration(banded())
    similarity, years = np.array([0.85, 0.85, 0.6, 0.6]), np.array([1.0, 8.0, 1.0, 8.0])
    assessed = calibration.assess(similarity, years)
    labels = [calibration.curve_of(int(i)).label for i in assessed.curve]
    assert labels == ["0-2 years", "7 years and more"] * 2
    short, long = calibration.curve_of(0), calibration.curve_of(1)
    assert long.log10_lr(0.85) < short.log10_lr(0.85) - 0.5
    assert assessed.log10_lr[1] < assessed.log10_lr[0] - 0.2  # both capped, the long band lower
    assert assessed.log10_lr[3] > assessed.log10_lr[2] + 1.0


def test_a_missing_date_and_an_unfitted_band_use_the_pooled_curve():
    calibration = fit_calibration(banded())
    assessed = calibration.assess(np.full(3, 0.7), np.array([np.nan, 3.0, 5.0]))
    assert np.array_equal(assessed.curve, [-1, -1, -1])
    pooled = np.clip(calibration.pooled.log10_lr(0.7), *calibration.pooled.elub)
    assert np.all(assessed.log10_lr == pooled)


def test_a_band_is_fitted_from_min_pairs_per_band_of_each_kind():
    rng = np.random.default_rng(6)

    def band_of(same_pairs: int, different_pairs: int) -> Pairs:
        scores = rng.normal(0.7, 0.1, same_pairs), rng.normal(0.3, 0.1, different_pairs)
        return pairs_of(*scores, 3.0, 3.0)

    base = pairs_of(rng.normal(0.7, 0.1, 100), rng.normal(0.3, 0.1, 100), 1.0, 1.0)
    labels = [band.label for band in fit_calibration(joined(base, band_of(30, 30))).bands]
    assert labels == ["0-2 years", "2-4 years"]
    for short_of_one in (
        band_of(MIN_PAIRS_PER_BAND - 1, 100),
        band_of(100, MIN_PAIRS_PER_BAND - 1),
    ):
        calibration = fit_calibration(joined(base, short_of_one))
        assert [band.label for band in calibration.bands] == ["0-2 years"]
        assert calibration.assess(np.array([0.7]), np.array([3.0])).curve[0] == -1


def test_band_labels():
    assert tuple(band_label(low, high) for low, high in year_bands()) == LABELS
    assert fit_calibration(banded()).pooled.label == "pooled"


# --- verbal scale ---


@pytest.mark.parametrize(
    ("log10_lr", "strength"),
    [
        (1e-12, "weak"),
        (math.nextafter(1.0, 0.0), "weak"),
        (1.0, "moderate"),
        (math.nextafter(2.0, 0.0), "moderate"),
        (2.0, "moderately strong"),
        (math.nextafter(3.0, 0.0), "moderately strong"),
        (3.0, "strong"),
        (math.nextafter(4.0, 0.0), "strong"),
        (4.0, "very strong"),
        (5.0, "very strong"),
        (math.nextafter(6.0, 0.0), "very strong"),
        (6.0, "extremely strong"),
        (math.inf, "extremely strong"),
    ],
)
def test_verbal_scale_is_symmetric_with_half_open_bands(log10_lr, strength):
    towards_same, towards_different = verbal_scale(log10_lr), verbal_scale(-log10_lr)
    assert towards_same.strength == towards_different.strength == strength
    assert (towards_same.supports, towards_different.supports) == (
        "same person",
        "different people",
    )
    assert towards_same.sentence_words.startswith(f"{strength} support for the same person")


@pytest.mark.parametrize(
    ("lr", "strength"),
    [(10, "moderate"), (100, "moderately strong"), (1000, "strong"), (1e4, "very strong")]
    + [(1e6, "extremely strong")],
)
def test_verbal_scale_at_the_round_lrs(lr, strength):
    assert verbal_scale(math.log10(lr)).strength == strength
    assert verbal_scale(math.log10(1 / lr)).strength == strength
    assert verbal_scale(math.log10(1 / lr)).supports == "different people"


def test_lr_one_supports_neither():
    for zero in (0.0, -0.0):
        verbal = verbal_scale(zero)
        assert (verbal.strength, verbal.supports) == ("no support", "neither")
    with pytest.raises(ValueError):
        verbal_scale(math.nan)


# --- validation ---


def test_cross_validation_never_fits_on_a_held_out_person():
    pairs = cohort(people=60, images=3, signal=1.0)
    first_fold, second_fold = person_folds(pairs, folds=5, seed=0)
    people = np.asarray(pairs.people)
    for fold in range(5):
        held_out = (first_fold == fold) & (second_fold == fold)
        fitted_on = (first_fold != fold) & (second_fold != fold)
        held_people = set(people[pairs.first[held_out]]) | set(people[pairs.second[held_out]])
        fit_people = set(people[pairs.first[fitted_on]]) | set(people[pairs.second[fitted_on]])
        assert held_people and not held_people & fit_people
    assert np.all(first_fold[pairs.same] == second_fold[pairs.same])
    fold_of = dict(zip(people[pairs.first], first_fold, strict=True))
    fold_of |= dict(zip(people[pairs.second], second_fold, strict=True))
    assert len(fold_of) == 60 and sorted(np.bincount(list(fold_of.values()))) == [12] * 5


def test_validate_measures_the_cross_validated_lrs():
    pairs = cohort(people=60, images=3, signal=1.0)
    log10_lrs, assessed = cross_validated(pairs, folds=3)
    assert np.array_equal(np.isfinite(log10_lrs), assessed)
    assert np.all(assessed[pairs.same])
    report = validate(pairs, folds=3)
    assert report["cllr"] == cllr(log10_lrs[assessed], pairs.same[assessed])
    with pytest.raises(ValueError, match="folds"):
        validate(pairs, folds=61)


def test_validation_of_uninformative_scores_costs_about_one_bit():
    report = validate(cohort(people=400, images=3, signal=0.0))
    assert report["cllr"] == pytest.approx(1.0, abs=0.05)
    assert max(abs(bound) for bound in report["elub"]) <= 0.3
    assert report["eer"] == pytest.approx(0.5, abs=0.05)


@pytest.mark.parametrize("method", ["logistic", "kde"])
def test_validation_of_separated_scores(method):
    pairs = cohort(people=200, images=3, signal=1.5)
    report = validate(pairs, method=method, folds=4)
    assert report["cllr"] < 0.2 and report["cllr_min"] <= report["cllr"]
    assert report["cllr_cal"] == pytest.approx(report["cllr"] - report["cllr_min"])
    assert (report["method"], report["folds"]) == (method, 4)
    assert report["same_pairs"] == np.count_nonzero(pairs.same)
    assert report["different_pairs"] + report["cross_fold_pairs"] == np.count_nonzero(~pairs.same)
    assert report["different_pairs"] > 1000  # about a quarter of 5000 pairs
    assert tuple(report["bands"]) == LABELS
    assert report["bands"]["0-2 years"]["same_pairs"] == 200 * 2  # 1.5 years apart
    assert report["bands"]["2-4 years"]["same_pairs"] == 200  # 3 years apart
    json.dumps(report, allow_nan=False)


def test_report_on_an_external_cohort():
    rng = np.random.default_rng(7)
    same = rng.random(400) < 0.3
    scores = np.where(same, rng.normal(0.8, 0.1, 400), rng.normal(0.3, 0.1, 400))
    years = rng.choice([np.nan, 1.0, 5.0], 400)
    report = report_on(4 * (scores - 0.55), same, scores, years)
    known = ~np.isnan(years)
    counts = sum(band["same_pairs"] + band["different_pairs"] for band in report["bands"].values())
    assert counts == np.count_nonzero(known)
    assert report["same_pairs"] + report["different_pairs"] == 400
    empty = report["bands"]["2-4 years"]
    assert empty["cllr"] is None and empty["elub"] is None and empty["same_pairs"] == 0
    assert set(report) - {"bands"} == set(empty)
    json.dumps(report, allow_nan=False)
    nothing = report_on(np.zeros(0), np.zeros(0, dtype=bool), np.zeros(0), np.zeros(0))
    assert nothing["cllr"] is None and nothing["same_pairs"] == nothing["different_pairs"] == 0
