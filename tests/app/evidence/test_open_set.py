"""The open-set answer's arithmetic and decisions."""

from __future__ import annotations

import math

import pytest

from app.evidence.open_set import (
    CANDIDATE_SUPPORTED,
    PROBABLY_NOT_IN_GALLERY,
    Prior,
    open_set,
)


@pytest.mark.parametrize("prior", [0.05, 0.5, 0.9])
def test_with_every_likelihood_ratio_one_the_posterior_is_the_prior(prior):
    answer = open_set(Prior(prior, "request"), [0.0, 0.0, 0.0], 40, beyond_log10_lr=0.0)
    assert answer.people_beyond_candidates == 37
    assert math.isclose(answer.p_in_gallery, prior, rel_tol=1e-12)
    assert math.isclose(answer.p_top_candidate, prior / 40, rel_tol=1e-12)


def test_the_formula_counts_people_beyond_the_candidates_with_their_bound():
    answer = open_set(Prior(0.5, "default"), [3.0, 1.0], 10, beyond_log10_lr=-1.0)
    total = 1000 + 10 + 8 * 0.1
    expected = (0.5 / 10) * total / (0.5 + (0.5 / 10) * total)
    assert math.isclose(answer.p_in_gallery, expected, rel_tol=1e-12)
    assert math.isclose(answer.p_top_candidate, (0.05 * 1000) / (0.5 + 0.05 * total))


def test_strong_evidence_for_the_first_candidate_supports_it():
    answer = open_set(Prior(0.5, "default"), [4.0, -2.0], 10, beyond_log10_lr=-2.0)
    assert answer.p_top_candidate >= CANDIDATE_SUPPORTED
    assert answer.decision == "candidate supported"


def test_evidence_against_everyone_says_probably_not_in_the_gallery():
    answer = open_set(Prior(0.5, "default"), [-2.0, -2.5], 100, beyond_log10_lr=-2.0)
    assert answer.p_in_gallery <= PROBABLY_NOT_IN_GALLERY
    assert answer.decision == "probably not in the gallery"


def test_evidence_spread_over_several_people_is_inconclusive():
    # The person is probably there, but no one candidate carries it.
    answer = open_set(Prior(0.5, "default"), [2.0, 2.0, 2.0], 10, beyond_log10_lr=0.0)
    assert answer.p_in_gallery > PROBABLY_NOT_IN_GALLERY
    assert answer.p_top_candidate < CANDIDATE_SUPPORTED
    assert answer.decision == "inconclusive"


def test_an_empty_gallery():
    answer = open_set(Prior(0.5, "default"), [], 0, beyond_log10_lr=None)
    assert answer.p_in_gallery == 0.0 and answer.p_top_candidate is None
    assert answer.decision == "probably not in the gallery"


def test_the_answer_states_the_prior_and_never_identifies():
    answer = open_set(Prior(0.3, "case"), [1.0], 5, beyond_log10_lr=0.5)
    assert "0.30 (case)" in answer.statement
    assert "examiner's conclusion" in answer.statement
    assert answer.thresholds == {
        "candidate_supported": CANDIDATE_SUPPORTED,
        "probably_not_in_gallery": PROBABLY_NOT_IN_GALLERY,
    }
