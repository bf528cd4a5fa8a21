"""The verbal scale an LR is reported with, after the ENFSI guideline for evaluative reporting
(2015): the words depend only on the order of magnitude of the LR, the same either way round.

|log10 LR| in [0,1) weak, [1,2) moderate, [2,3) moderately strong, [3,4) strong, [4,6) very strong,
[6,inf) extremely strong; each band includes its lower edge, so LR 100 is "moderately strong".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SAME_PERSON = "same person"
DIFFERENT_PEOPLE = "different people"
NEITHER = "neither"

# (lowest |log10 LR| of the band, its words), from the strongest down.
_STRENGTHS = (
    (6.0, "extremely strong"),
    (4.0, "very strong"),
    (3.0, "strong"),
    (2.0, "moderately strong"),
    (1.0, "moderate"),
    (0.0, "weak"),
)


@dataclass(frozen=True)
class Verbal:
    strength: str  # "weak" .. "extremely strong", or "no support" at LR 1
    supports: str  # "same person", "different people" or "neither"
    # The phrase for "The findings provide ...": e.g. "moderate support for the same person rather
    # than different people".
    sentence_words: str


def verbal_scale(log10_lr: float) -> Verbal:
    value = float(log10_lr)
    if math.isnan(value):
        raise ValueError("an LR of NaN has no verbal equivalent")
    if value == 0.0:
        words = f"no support for either the {SAME_PERSON} or {DIFFERENT_PEOPLE}"
        return Verbal("no support", NEITHER, words)
    strength = next(words for lowest, words in _STRENGTHS if abs(value) >= lowest)
    if value > 0:
        supports, against = SAME_PERSON, DIFFERENT_PEOPLE
    else:
        supports, against = DIFFERENT_PEOPLE, SAME_PERSON
    words = f"{strength} support for {_the(supports)} rather than {_the(against)}"
    return Verbal(strength, supports, words)


def _the(proposition: str) -> str:
    return f"the {proposition}" if proposition == SAME_PERSON else proposition
