"""Who a phantom person is, and how their knees change between visits.

Coordinates are millimetres in the frame of a right knee seen in an AP/PA projection: x across the
knee, y down the leg, origin on the medial tibial plateau's joint line. A left knee is the mirror image
(x -> -x) of a slightly different right knee, because real people are not symmetric.

Identity lives in many small numbers (bone widths, condyle shapes and asymmetry, where the fibula sits,
density, soft tissue) and in a trabecular texture. Population spreads are narrow on purpose: two
people's knees look alike at a glance, and tell apart only in the detail, as real knees do.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

VISIT_MONTHS = (0, 12, 24, 36, 48, 72, 96)


@dataclass(frozen=True)
class KneeShape:
    """Shape and material of one knee at baseline, in mm (see module docstring for the frame)."""

    femur_shaft_half_width: float
    femur_shaft_tilt: float  # x shift per mm of height: the anatomical valgus of the femoral shaft
    femur_metaphysis_half_width: float
    condyle_medial_x: float
    condyle_medial_rx: float
    condyle_medial_ry: float
    condyle_lateral_x: float
    condyle_lateral_rx: float
    condyle_lateral_ry: float
    condyle_depth: float
    plateau_half_width: float
    plateau_height: float
    plateau_offset_x: float
    tibial_spine_height: float
    tibia_shaft_half_width: float
    tibia_shaft_tilt: float
    fibula_head_x: float
    fibula_head_y: float
    fibula_head_rx: float
    fibula_head_ry: float
    fibula_shaft_half_width: float
    patella_x: float
    patella_y: float
    patella_rx: float
    patella_ry: float
    cortex_shaft: float
    cortex_epiphysis: float
    bone_density: float
    soft_tissue_half_width: float
    thigh_flare: float
    joint_space_medial: float
    joint_space_lateral: float


# (mean, standard deviation) of each shape parameter in the population.
POPULATION: dict[str, tuple[float, float]] = {
    "femur_shaft_half_width": (14.0, 1.0),
    "femur_shaft_tilt": (0.09, 0.02),
    "femur_metaphysis_half_width": (31.0, 1.6),
    "condyle_medial_x": (-19.5, 1.3),
    "condyle_medial_rx": (18.5, 1.2),
    "condyle_medial_ry": (14.0, 1.0),
    "condyle_lateral_x": (19.0, 1.3),
    "condyle_lateral_rx": (17.0, 1.2),
    "condyle_lateral_ry": (13.0, 1.0),
    "condyle_depth": (32.0, 2.0),
    "plateau_half_width": (38.0, 1.8),
    "plateau_height": (13.0, 1.0),
    "plateau_offset_x": (0.5, 1.0),
    "tibial_spine_height": (5.0, 0.8),
    "tibia_shaft_half_width": (15.0, 1.0),
    "tibia_shaft_tilt": (-0.02, 0.015),
    "fibula_head_x": (33.0, 2.0),
    "fibula_head_y": (19.0, 2.5),
    "fibula_head_rx": (9.5, 0.9),
    "fibula_head_ry": (11.0, 1.0),
    "fibula_shaft_half_width": (6.0, 0.6),
    "patella_x": (2.0, 2.0),
    "patella_y": (-30.0, 3.0),
    "patella_rx": (22.0, 1.6),
    "patella_ry": (25.0, 1.8),
    "cortex_shaft": (3.6, 0.4),
    "cortex_epiphysis": (1.3, 0.2),
    "bone_density": (1.0, 0.08),
    "soft_tissue_half_width": (58.0, 6.0),
    "thigh_flare": (0.28, 0.06),
    "joint_space_medial": (5.0, 0.6),
    "joint_space_lateral": (6.0, 0.6),
}

# Relative spread between a person's left and right knee: real bilateral asymmetry is a few percent.
SIDE_ASYMMETRY = 0.02


@dataclass(frozen=True)
class Landmarks:
    """What forensic examiners match on besides shape: features that persist for decades.

    Physeal scars (the closed growth plates, a dense wavy line across each metaphysis), Harris
    growth-arrest lines (thin transverse lines left by childhood illness), and bone islands (small
    sclerotic foci). All in the knee's anatomy frame (mm).
    """

    physeal_scars: tuple[
        tuple[float, float, float, float, float], ...
    ]  # y, amplitude, wavelength, phase, strength
    harris_lines: tuple[tuple[float, float, float], ...]  # y, half length, strength
    bone_islands: tuple[tuple[float, float, float, float], ...]  # x, y, rx, ry


def sample_landmarks(rng: np.random.Generator) -> Landmarks:
    scars = tuple(
        (
            float(rng.normal(y, 2.5)),
            float(rng.uniform(0.5, 2.5)),
            float(rng.uniform(18.0, 40.0)),
            float(rng.uniform(0.0, 2 * np.pi)),
            float(rng.uniform(0.3, 0.9)),
        )
        for y in (-33.0, 22.0)  # distal femoral and proximal tibial growth plates
    )
    harris = tuple(
        (
            float(rng.choice([-1.0, 1.0]) * rng.uniform(40.0, 70.0)),
            float(rng.uniform(6.0, 12.0)),
            float(rng.uniform(0.3, 0.8)),
        )
        for _ in range(int(rng.integers(0, 4)))
    )
    islands = []
    for _ in range(int(rng.integers(0, 4))):
        in_femur = rng.random() < 0.5
        islands.append(
            (
                float(rng.uniform(-25.0, 25.0)),
                float(rng.uniform(-40.0, -10.0) if in_femur else rng.uniform(6.0, 40.0)),
                float(rng.uniform(1.0, 3.5)),
                float(rng.uniform(1.0, 3.5)),
            )
        )
    return Landmarks(scars, harris, tuple(islands))


@dataclass(frozen=True)
class Person:
    person_id: str
    sex: str  # "M" or "F"
    baseline_age: float
    shapes: dict[str, KneeShape]  # by side, "R" and "L"
    texture_seeds: dict[str, int]  # by side; the trabecular pattern is the knee's fingerprint
    landmarks: dict[str, Landmarks]  # by side
    oa_onset_years: dict[str, float]  # years after baseline when osteoarthritis starts (may be < 0)
    oa_rate: dict[str, float]  # how fast it progresses once started
    remodelling_rate: float  # how fast the trabecular pattern drifts
    density_loss_per_year: float
    weight_change_per_year: float  # relative change of soft-tissue width
    equipment_change_years: float  # when the site replaces its X-ray system
    replacement: tuple[str, int] | None  # (side, visit month) of a total knee replacement
    missed_visits: frozenset[int]


def sample_person(person_id: str, rng: np.random.Generator) -> Person:
    sex = "F" if rng.random() < 0.58 else "M"
    size = 1.06 if sex == "M" else 1.0
    base = {name: rng.normal(mean, sd) for name, (mean, sd) in POPULATION.items()}
    for name in (
        "femur_shaft_half_width",
        "femur_metaphysis_half_width",
        "condyle_medial_rx",
        "condyle_lateral_rx",
        "plateau_half_width",
        "tibia_shaft_half_width",
        "patella_rx",
        "patella_ry",
    ):
        base[name] *= size

    shapes = {}
    for side in ("R", "L"):
        asymmetric = {
            name: value + rng.normal(0.0, SIDE_ASYMMETRY * max(abs(value), POPULATION[name][1]))
            for name, value in base.items()
        }
        shapes[side] = KneeShape(**asymmetric)

    oa_onset = {side: rng.normal(4.0, 4.0) for side in ("R", "L")}
    oa_rate = {side: rng.gamma(2.0, 0.25) for side in ("R", "L")}
    replacement = None
    if rng.random() < 0.07:
        side = max(oa_rate, key=lambda s: oa_rate[s] / (1.0 + max(oa_onset[s], 0.0)))
        replacement = (side, int(rng.choice([36, 48, 72, 96])))
    follow_ups = [m for m in VISIT_MONTHS[1:] if rng.random() < 0.12]
    return Person(
        person_id=person_id,
        sex=sex,
        baseline_age=float(rng.uniform(45.0, 79.0)),
        shapes=shapes,
        texture_seeds={side: int(rng.integers(2**62)) for side in ("R", "L")},
        landmarks={side: sample_landmarks(rng) for side in ("R", "L")},
        oa_onset_years=oa_onset,
        oa_rate=oa_rate,
        remodelling_rate=float(rng.uniform(0.05, 0.12)),
        density_loss_per_year=float(rng.uniform(0.004, 0.012) * (1.5 if sex == "F" else 1.0)),
        weight_change_per_year=float(rng.normal(0.0, 0.035)),
        equipment_change_years=float(rng.exponential(4.0)),
        replacement=replacement,
        missed_visits=frozenset(follow_ups),
    )


@dataclass(frozen=True)
class KneeState:
    """One knee at one visit: its shape after the years, and the disease signs to draw."""

    shape: KneeShape
    landmarks: Landmarks
    years: float
    kl_grade: int | None  # None once the knee is replaced: there is no joint left to grade
    osteophyte_mm: float
    sclerosis: float  # extra subchondral density, 0 to about 0.6
    texture_drift: float  # share of the trabecular pattern remodelled since baseline, 0 to 1
    implant: bool


def knee_at_visit(person: Person, side: str, months: int) -> KneeState:
    years = months / 12.0
    shape = person.shapes[side]
    disease_years = max(0.0, years - person.oa_onset_years[side])
    progression = person.oa_rate[side] * disease_years  # 0 healthy, about 1 severe

    medial_loss = min(0.85, 0.45 * progression)
    lateral_loss = min(0.5, 0.12 * progression)
    osteophyte_mm = min(6.0, 2.2 * progression)
    sclerosis = min(0.6, 0.25 * max(0.0, progression - 0.6))
    implant = (
        person.replacement is not None
        and person.replacement[0] == side
        and (months >= person.replacement[1])
    )

    tissue = 1.0 + person.weight_change_per_year * years
    shape = replace(
        shape,
        joint_space_medial=shape.joint_space_medial * (1.0 - medial_loss),
        joint_space_lateral=shape.joint_space_lateral * (1.0 - lateral_loss),
        bone_density=shape.bone_density * (1.0 - person.density_loss_per_year * years),
        soft_tissue_half_width=shape.soft_tissue_half_width * tissue,
    )
    return KneeState(
        shape=shape,
        landmarks=person.landmarks[side],
        years=years,
        kl_grade=None if implant else kellgren_lawrence(medial_loss, osteophyte_mm, sclerosis),
        osteophyte_mm=0.0 if implant else osteophyte_mm,
        sclerosis=0.0 if implant else sclerosis,
        texture_drift=min(0.85, person.remodelling_rate * years * (1.0 + progression)),
        implant=implant,
    )


def kellgren_lawrence(narrowing: float, osteophyte_mm: float, sclerosis: float) -> int:
    """The grade a reader would give: osteophytes first, then narrowing, then deformity and sclerosis."""
    if narrowing > 0.6 and sclerosis > 0.1:
        return 4
    if narrowing > 0.3:
        return 3
    if osteophyte_mm > 1.5:
        return 2
    if osteophyte_mm > 0.5:
        return 1
    return 0
