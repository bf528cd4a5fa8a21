"""One acquisition of one knee: a projection radiograph with everything that changes between exposures.

The picture is physics in miniature. Each bone part is an ellipsoid (or a cylinder for a shaft), so the
X-ray path length through it at a detector point has a closed form; cortical bone is the shell between
an outer and an inner surface, trabecular bone the inside, modulated by the knee's own texture. The
attenuation sum goes through Beer-Lambert with quantum noise, blur and scatter, then the detector's
processing (window, gamma, edge enhancement), collimation and burned-in markers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import fft, ndimage

from training.phantom.anatomy import KneeShape, KneeState, Landmarks

# Linear attenuation per mm, in arbitrary but consistent units.
MU_SOFT = 0.018
MU_CORTEX = 0.05
MU_TRABECULAR = 0.011
MU_METAL = 0.6

TEXTURE_SPACING_MM = 0.25
TEXTURE_EXTENT_MM = (230.0, 200.0)  # (y, x) extent, centred on the joint


@dataclass(frozen=True)
class Detector:
    name: str
    pixel_spacing_mm: float
    size_px: int  # square images


DETECTORS = (
    Detector("CR-A", 0.25, 640),
    Detector("DX-B", 0.30, 544),
    Detector("CR-C", 0.35, 464),
)


# Standard deviations of positioning between two exposures of the same knee. Positioning frames and
# protocols (fixed-flexion PA) keep most exposures close; some are taken without them (a ward, a
# mortuary) and vary several times more. Rotation is always clipped to +-10 degrees.
POSE_SPREAD = {
    "rotation_deg": 1.0,
    "translation_mm": 1.0,
    "magnification": 0.012,
    "flexion": 0.3,
    "axial_rotation": 0.3,
}
UNCONTROLLED_SHARE = 0.1
UNCONTROLLED_FACTOR = 4.0


@dataclass(frozen=True)
class Equipment:
    """A site's X-ray system and its image processing, kept until the site replaces it."""

    detector: Detector
    # (black level, white headroom): attenuation `black level` shows black, and `headroom` times the
    # image's 99.5th attenuation percentile shows white, as a CR reader's histogram analysis does.
    window: tuple[float, float]
    gamma: float
    edge_enhancement: float
    scatter: float
    label: str


def sample_equipment(rng: np.random.Generator) -> Equipment:
    return Equipment(
        detector=DETECTORS[int(rng.integers(len(DETECTORS)))],
        window=(float(rng.uniform(-0.1, 0.3)), float(rng.uniform(1.03, 1.25))),
        gamma=float(rng.uniform(0.7, 1.4)),
        edge_enhancement=float(rng.uniform(0.0, 0.8)),
        scatter=float(rng.uniform(0.03, 0.15)),
        label=str(rng.choice(["PA FIXED FLEXION", "AP STANDING", "PA WB", "KNEE AP"])),
    )


@dataclass(frozen=True)
class Acquisition:
    """Everything about one exposure that is not the patient."""

    equipment: Equipment
    rotation_deg: float
    translation_mm: tuple[float, float]  # (x, y) on the detector
    magnification: float
    flexion: float  # -1..1: beam angle relative to the tibial plateau
    axial_rotation: float  # -1..1: leg rotated about its own axis
    photons: float  # quanta per pixel in the open beam: sets noise
    blur_px: float
    window: tuple[float, float]  # the equipment's window, jittered per exposure
    gamma: float
    collimation_mm: tuple[float, float, float, float]  # left, right, top, bottom margins
    marker_corner: int  # 0..3

    @property
    def detector(self) -> Detector:
        return self.equipment.detector


def sample_acquisition(rng: np.random.Generator, equipment: Equipment) -> Acquisition:
    """One exposure on the given equipment: the patient's positioning and the exposure vary."""
    factor = UNCONTROLLED_FACTOR if rng.random() < UNCONTROLLED_SHARE else 1.0
    spread = {name: factor * sd for name, sd in POSE_SPREAD.items()}
    lo, hi = equipment.window
    return Acquisition(
        equipment=equipment,
        rotation_deg=float(np.clip(rng.normal(0.0, spread["rotation_deg"]), -10.0, 10.0)),
        translation_mm=tuple(float(v) for v in rng.normal(0.0, spread["translation_mm"], 2)),
        magnification=float(1.0 + np.clip(rng.normal(0.0, spread["magnification"]), -0.08, 0.08)),
        flexion=float(np.clip(rng.normal(0.0, spread["flexion"]), -1.0, 1.0)),
        axial_rotation=float(np.clip(rng.normal(0.0, spread["axial_rotation"]), -1.0, 1.0)),
        photons=float(np.exp(rng.uniform(np.log(400.0), np.log(4000.0)))),
        blur_px=float(rng.uniform(0.4, 1.4)),
        window=(lo + float(rng.normal(0.0, 0.05)), hi * float(np.exp(rng.normal(0.0, 0.02)))),
        gamma=equipment.gamma * float(np.exp(rng.normal(0.0, 0.04))),
        collimation_mm=tuple(float(v) for v in rng.uniform(0.0, 14.0, size=4)),
        marker_corner=int(rng.integers(4)),
    )


def trabecular_texture(seed: int) -> np.ndarray:
    """Band-pass noise stretched along the leg, squashed into plates: a knee's trabecular fingerprint.

    Two scales: the fine trabecular lattice (about 1.3 mm), and coarser density variations (about
    4 mm) that survive the down-sampling of a low-resolution model input. Returns a zero-mean,
    unit-variance field on a fixed grid of the anatomy frame.
    """
    rng = np.random.default_rng(seed)
    shape = tuple(int(extent / TEXTURE_SPACING_MM) for extent in TEXTURE_EXTENT_MM)
    spectrum = fft.rfft2(rng.standard_normal(shape).astype(np.float32))
    fy = fft.fftfreq(shape[0], d=TEXTURE_SPACING_MM)[:, None]
    fx = fft.rfftfreq(shape[1], d=TEXTURE_SPACING_MM)[None, :]
    # Trabeculae run mostly along the load axis: finer across the leg (x) than along it (y).
    radius = np.hypot(fx / 1.0, fy / 0.5)
    field = np.zeros(shape, dtype=np.float32)
    for centre, width, weight in ((0.75, 0.3, 0.8), (0.25, 0.1, 0.6)):
        band = np.exp(-0.5 * ((radius - centre) / width) ** 2).astype(np.float32)
        scale = fft.irfft2(spectrum * band, s=shape)
        field += weight * np.tanh(1.5 * scale / scale.std())
    return ((field - field.mean()) / field.std()).astype(np.float32)


def render(
    state: KneeState,
    mirrored: bool,
    texture: np.ndarray,
    acquisition: Acquisition,
    marker: str,
    caption: str,
    rng: np.random.Generator,
) -> np.ndarray:
    """The display image, float32 in [0, 1], bone bright."""
    x, y = _anatomy_coordinates(acquisition, mirrored)
    attenuation = _attenuation(state, acquisition, x, y, texture)
    image = _expose(attenuation, acquisition, rng)
    image = _collimate(image, acquisition)
    return _burn_in(image, acquisition, marker, caption)


def _anatomy_coordinates(acq: Acquisition, mirrored: bool) -> tuple[np.ndarray, np.ndarray]:
    """Where each detector pixel's ray crosses the anatomy frame (mm)."""
    n, spacing = acq.detector.size_px, acq.detector.pixel_spacing_mm
    centres = (np.arange(n, dtype=np.float32) - n / 2 + 0.5) * spacing
    u = centres[None, :] - acq.translation_mm[0]
    v = centres[:, None] - acq.translation_mm[1]
    theta = np.deg2rad(acq.rotation_deg)
    cos, sin = np.float32(np.cos(theta)), np.float32(np.sin(theta))
    x = (cos * u + sin * v) / acq.magnification
    y = (-sin * u + cos * v) / acq.magnification
    # The joint sits a little below the image centre in a knee radiograph.
    y = y + np.float32(4.0)
    return (-x if mirrored else x), y


def _ellipsoid(x, y, cx, cy, rx, ry, depth, power=2.0):
    """Path length through an ellipsoid (a superellipsoid for power > 2) centred at (cx, cy)."""
    q = np.abs((x - cx) / rx) ** power + np.abs((y - cy) / ry) ** power
    return 2.0 * depth * np.sqrt(np.clip(1.0 - q, 0.0, None))


def _cylinder(x, y, cx, half_width, depth, y_start, upward):
    """Path length through a shaft running from y_start up (or down) out of the picture."""
    along = (y_start - y) if upward else (y - y_start)
    fade = np.clip(along / 6.0 + 0.5, 0.0, 1.0)
    return 2.0 * depth * np.sqrt(np.clip(1.0 - ((x - cx) / half_width) ** 2, 0.0, None)) * fade


@dataclass(frozen=True)
class Blob:
    """An ellipsoidal bone part (a superellipsoid for power > 2) with a cortical shell."""

    cx: float
    cy: float
    rx: float
    ry: float
    depth: float
    cortex: float
    power: float = 2.0

    def paths(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        c = self.cortex
        outer = _ellipsoid(x, y, self.cx, self.cy, self.rx, self.ry, self.depth, self.power)
        inner = _ellipsoid(
            x, y, self.cx, self.cy, self.rx - c, self.ry - c, self.depth - c, self.power
        )
        return outer, inner


@dataclass(frozen=True)
class Shaft:
    """A long-bone shaft, a tube leaving the picture upward or downward from y_start."""

    cx: np.ndarray | float
    half_width: float
    depth: float
    cortex: float
    y_start: float
    upward: bool

    def paths(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        c = self.cortex
        outer = _cylinder(x, y, self.cx, self.half_width, self.depth, self.y_start, self.upward)
        inner = _cylinder(
            x, y, self.cx, self.half_width - c, self.depth - c, self.y_start, self.upward
        )
        return outer, inner


def _bone(parts: list[Blob | Shaft], x, y) -> tuple[np.ndarray, np.ndarray]:
    """Cortical and trabecular path lengths through the union of a bone's parts."""
    outers, inners = zip(*(part.paths(x, y) for part in parts), strict=True)
    outer = np.maximum.reduce(outers)
    inner = np.minimum(np.maximum.reduce(inners), outer)
    return outer - inner, inner


@dataclass(frozen=True)
class Condyles:
    """Where the femoral condyles sit in this exposure: the bone, osteophytes and implant share it."""

    medial_rx: float
    lateral_rx: float
    medial_cy: float
    lateral_cy: float

    @classmethod
    def of(cls, s: KneeShape, axial: float, gap: float) -> Condyles:
        """Their lowest points sit one joint space (plus any implant insert) above the plateau."""
        return cls(
            medial_rx=s.condyle_medial_rx * (1.0 + 0.05 * axial),
            lateral_rx=s.condyle_lateral_rx * (1.0 - 0.05 * axial),
            medial_cy=-s.joint_space_medial - gap - s.condyle_medial_ry,
            lateral_cy=-s.joint_space_lateral - gap - s.condyle_lateral_ry,
        )


def _attenuation(state: KneeState, acq: Acquisition, x, y, texture) -> np.ndarray:
    """The attenuation along each pixel's ray: soft tissue, cortical and trabecular bone, metal."""
    s: KneeShape = state.shape
    gap = 10.0 if state.implant else 0.0  # the polyethylene insert of a replacement
    condyles = Condyles.of(s, acq.axial_rotation, gap)
    femur_cortex, femur_inner = _femur(s, condyles, gap, x, y)
    tibia_cortex, tibia_inner = _tibia(s, acq.flexion, x, y)
    fibula_cortex, fibula_inner = _fibula(s, acq.axial_rotation, x, y)
    patella = _ellipsoid(
        x, y, s.patella_x, s.patella_y - 12.0 * acq.flexion, s.patella_rx, s.patella_ry, 11.0
    )
    osteophytes = _osteophytes(state, x, y, condyles.medial_cy, s)
    soft = _soft_tissue(s, x, y)
    density = _trabecular_density(state, texture, x, y)

    cortex = femur_cortex + tibia_cortex + fibula_cortex + osteophytes
    inner = femur_inner + tibia_inner + fibula_inner + 0.6 * patella
    attenuation = MU_SOFT * soft + MU_CORTEX * cortex + MU_TRABECULAR * density * inner
    if state.implant:
        attenuation = attenuation + MU_METAL * _implant(x, y, s, condyles)
    return attenuation.astype(np.float32)


def _femur(s: KneeShape, condyles: Condyles, gap: float, x, y) -> tuple[np.ndarray, np.ndarray]:
    """Cortical and trabecular paths through the femur: shaft, metaphysis, two condyles."""
    c_shaft, c_epi = s.cortex_shaft, s.cortex_epiphysis
    meta_cy = min(condyles.medial_cy, condyles.lateral_cy) - 9.0
    shaft_top = meta_cy - 14.0
    cortex, inner = _bone(
        [
            Shaft(
                s.femur_shaft_tilt * (y - shaft_top),
                s.femur_shaft_half_width,
                s.femur_shaft_half_width * 0.95,
                c_shaft,
                shaft_top,
                upward=True,
            ),
            Blob(
                0.0,
                meta_cy,
                s.femur_metaphysis_half_width + 1.0,
                26.0,
                s.condyle_depth * 0.78,
                c_shaft,
                power=2.4,
            ),
            Blob(
                s.condyle_medial_x,
                condyles.medial_cy,
                condyles.medial_rx,
                s.condyle_medial_ry,
                s.condyle_depth,
                c_epi,
            ),
            Blob(
                s.condyle_lateral_x,
                condyles.lateral_cy,
                condyles.lateral_rx,
                s.condyle_lateral_ry,
                s.condyle_depth,
                c_epi,
            ),
        ],
        x,
        y,
    )
    # The intercondylar notch: an arch of missing bone between the condyles.
    notch_x = 0.5 * (s.condyle_medial_x + s.condyle_lateral_x)
    notch_y = -s.joint_space_medial - gap + 3.0
    notch = _ellipsoid(x, y, notch_x, notch_y, 6.0, 10.0, 0.5) > 0
    return np.where(notch, 0.35 * cortex, cortex), np.where(notch, 0.35 * inner, inner)


def _tibia(s: KneeShape, flex: float, x, y) -> tuple[np.ndarray, np.ndarray]:
    """Cortical and trabecular paths through the tibia: a boxy plateau, spines, shaft."""
    c_shaft, c_epi = s.cortex_shaft, s.cortex_epiphysis
    # The plateau's apparent height depends on the beam angle.
    plateau_ry = s.plateau_height * (1.0 + 0.25 * flex)
    plateau_cy = plateau_ry
    shaft_start = plateau_cy + 28.0
    tx = s.plateau_offset_x
    return _bone(
        [
            Blob(tx, plateau_cy, s.plateau_half_width, plateau_ry, 27.0, c_epi, power=2.8),
            Blob(tx, plateau_cy + 12.0, 33.0, 26.0, 24.0, c_epi),
            Shaft(
                tx + s.tibia_shaft_tilt * (y - shaft_start),
                s.tibia_shaft_half_width,
                s.tibia_shaft_half_width,
                c_shaft,
                shaft_start,
                upward=False,
            ),
            *(
                Blob(tx + spine_x, 3.0, 3.5, s.tibial_spine_height + 3.0, 8.0, 1.0, power=1.5)
                for spine_x in (-4.5, 3.5)
            ),
        ],
        x,
        y,
    )


def _fibula(s: KneeShape, axial: float, x, y) -> tuple[np.ndarray, np.ndarray]:
    """Cortical and trabecular paths through the fibula's head and shaft."""
    # Its overlap with the tibia moves with the leg's axial rotation.
    head_x = s.fibula_head_x + 5.0 * axial
    return _bone(
        [
            Blob(
                head_x, s.fibula_head_y, s.fibula_head_rx, s.fibula_head_ry, 9.0, s.cortex_epiphysis
            ),
            Shaft(
                head_x + 1.5 + 0.03 * (y - s.fibula_head_y),
                s.fibula_shaft_half_width,
                s.fibula_shaft_half_width,
                1.5,
                s.fibula_head_y + 6.0,
                upward=False,
            ),
        ],
        x,
        y,
    )


def _soft_tissue(s: KneeShape, x, y) -> np.ndarray:
    """Path length through the leg's soft tissue, widening up the thigh."""
    half_width = s.soft_tissue_half_width + s.thigh_flare * np.clip(-y, 0.0, None)
    return 2.0 * 0.85 * half_width * np.sqrt(np.clip(1.0 - (x / half_width) ** 2, 0, None))


def _trabecular_density(state: KneeState, texture: np.ndarray, x, y) -> np.ndarray:
    """The knee's bone density at (x, y): its texture, lifelong landmarks and any sclerosis."""
    s = state.shape
    density = s.bone_density * (1.0 + 0.22 * _sample_texture(texture, x, y, state.texture_drift))
    density = density + _landmark_density(state.landmarks, state.years, x, y)
    # Subchondral sclerosis: denser bone just under the medial plateau as the joint wears.
    return density + state.sclerosis * np.exp(-(((y - 3.0) / 4.0) ** 2)) * (x < 8.0)


def _landmark_density(landmarks: Landmarks, years: float, x, y) -> np.ndarray:
    """Extra trabecular density from the knee's lifelong features; growth plate scars fade slowly."""
    extra = np.zeros_like(x)
    fade = max(0.0, 1.0 - 0.015 * years)
    for y0, amplitude, wavelength, phase, strength in landmarks.physeal_scars:
        line = y0 + amplitude * np.sin(2 * np.pi * x / wavelength + phase)
        extra += fade * strength * np.exp(-(((y - line) / 0.7) ** 2))
    for y0, half_length, strength in landmarks.harris_lines:
        extra += strength * np.exp(-(((y - y0) / 0.45) ** 2)) * (np.abs(x) < half_length)
    for cx, cy, rx, ry in landmarks.bone_islands:
        extra += 0.7 * np.sqrt(
            np.clip(1.0 - ((x - cx) / rx) ** 2 - ((y - cy) / ry) ** 2, 0.0, None)
        )
    return extra


def _sample_texture(texture: np.ndarray, x, y, drift: float) -> np.ndarray:
    """The knee's trabecular pattern at (x, y), partly remodelled: a second field fades in with time."""
    rows = (y + TEXTURE_EXTENT_MM[0] / 2) / TEXTURE_SPACING_MM
    cols = (x + TEXTURE_EXTENT_MM[1] / 2) / TEXTURE_SPACING_MM
    base, remodelled = texture[0], texture[1]
    field = np.sqrt(1.0 - drift) * base + np.sqrt(drift) * remodelled
    return ndimage.map_coordinates(field, [rows, cols], order=1, mode="mirror").astype(np.float32)


def _osteophytes(state: KneeState, x, y, med_cy, s: KneeShape) -> np.ndarray:
    """Bony spurs at the joint margins, mostly medial, growing with the disease."""
    size = state.osteophyte_mm
    if size <= 0.0:
        return np.zeros_like(x)
    femoral_edge = s.condyle_medial_x - s.condyle_medial_rx
    tibial_edge = s.plateau_offset_x - s.plateau_half_width
    spurs = [
        _ellipsoid(
            x,
            y,
            femoral_edge - 0.3 * size,
            med_cy + 0.7 * s.condyle_medial_ry,
            size,
            1.4 * size,
            4.0,
        ),
        _ellipsoid(x, y, tibial_edge - 0.4 * size, 2.0, 1.2 * size, 0.8 * size, 4.0),
        _ellipsoid(
            x,
            y,
            s.plateau_offset_x + s.plateau_half_width + 0.2 * size,
            2.5,
            0.5 * size,
            0.5 * size,
            3.0,
        ),
    ]
    return np.maximum.reduce(spurs)


def _implant(x, y, s: KneeShape, condyles: Condyles) -> np.ndarray:
    """A total knee replacement: a metal femoral shell over the condyles, a tibial tray with a stem."""
    shells = []
    for cx, cy, rx, ry in (
        (s.condyle_medial_x, condyles.medial_cy, condyles.medial_rx, s.condyle_medial_ry),
        (s.condyle_lateral_x, condyles.lateral_cy, condyles.lateral_rx, s.condyle_lateral_ry),
    ):
        outer = _ellipsoid(x, y, cx, cy, rx, ry, 25.0)
        inner = _ellipsoid(x, y, cx, cy, rx - 3.0, ry - 3.0, 22.0)
        shells.append((outer - inner) * (y > cy - 2.0))
    tray = (np.abs(x - s.plateau_offset_x) < s.plateau_half_width * 0.92) & (y > 1.0) & (y < 5.0)
    stem = (np.abs(x - s.plateau_offset_x) < 6.0) & (y >= 5.0) & (y < 45.0)
    return np.maximum.reduce(shells) + 30.0 * tray + 12.0 * stem


def _expose(attenuation: np.ndarray, acq: Acquisition, rng: np.random.Generator) -> np.ndarray:
    """Beer-Lambert, focal-spot blur, scatter, quantum noise, then the detector's display processing."""
    transmitted = np.exp(-attenuation)
    transmitted = ndimage.gaussian_filter(transmitted, acq.blur_px)
    transmitted = (
        1.0 - acq.equipment.scatter
    ) * transmitted + acq.equipment.scatter * ndimage.gaussian_filter(transmitted, 40.0)
    counts = rng.poisson(acq.photons * transmitted).astype(np.float32)
    measured = -np.log(np.maximum(counts, 0.5) / acq.photons)
    lo, headroom = acq.window
    # Histogram analysis ignores what no photon crossed (metal), as readers' auto-ranging does.
    sample = measured[::4, ::4][counts[::4, ::4] > 0]
    hi = headroom * float(np.quantile(sample, 0.995)) if sample.size else lo + 1.0
    image = np.clip((measured - lo) / (hi - lo), 0.0, 1.0) ** acq.gamma
    if acq.equipment.edge_enhancement > 0:
        image = image + acq.equipment.edge_enhancement * (
            image - ndimage.gaussian_filter(image, 6.0)
        )
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def _collimate(image: np.ndarray, acq: Acquisition) -> np.ndarray:
    """Outside the collimator's field the detector sees no beam, which displays white."""
    n, spacing = image.shape[0], acq.detector.pixel_spacing_mm
    left, right, top, bottom = (int(round(m / spacing)) for m in acq.collimation_mm)
    out = np.ones_like(image) * np.float32(0.97)
    out[top : n - bottom, left : n - right] = image[top : n - bottom, left : n - right]
    return out


def _burn_in(image: np.ndarray, acq: Acquisition, marker: str, caption: str) -> np.ndarray:
    """A lead laterality marker and the site's text, as burned into the pixels by the modality."""
    n, spacing = image.shape[0], acq.detector.pixel_spacing_mm
    overlay = Image.new("L", (n, n), 0)
    draw = ImageDraw.Draw(overlay)
    marker_size = int(round(9.0 / spacing))
    font = ImageFont.load_default(size=marker_size)
    text_font = ImageFont.load_default(size=max(8, int(round(3.5 / spacing))))
    margin = int(round(18.0 / spacing))
    right, bottom = acq.marker_corner % 2, acq.marker_corner // 2
    mx = n - margin - marker_size if right else margin
    my = n - margin - marker_size if bottom else margin
    draw.rectangle((mx - 3, my - 3, mx + marker_size, my + marker_size + 3), outline=255, width=2)
    draw.text((mx + marker_size // 6, my), marker, fill=255, font=font)
    # The text goes to the opposite edge from the marker.
    text_xy = (n // 2 if right else margin, margin // 3 if bottom else n - margin // 2)
    draw.text(text_xy, f"{acq.equipment.label}  {caption}", fill=230, font=text_font)
    burned = np.asarray(overlay, dtype=np.float32) / 255.0
    return np.maximum(image, burned)
