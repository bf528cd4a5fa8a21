"""decode_image on real files: every file bundled inside the installed pydicom package, DICOM
files written with pydicom in each encoding we accept, and PNG/JPEG/TIFF files made with Pillow."""

from __future__ import annotations

import contextlib
import struct
import time
import zlib
from collections.abc import Callable
from datetime import date
from fnmatch import fnmatch
from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest
from PIL import Image, ImageFile
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.sequence import Sequence
from pydicom.uid import (
    MPEG2MPML,
    UID,
    BasicTextSRStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
    RTPlanStorage,
    generate_uid,
)

from model.decode import decode_image, sniff_format
from model.image import (
    CorruptImage,
    DecodedImage,
    DecodeError,
    DecodeLimits,
    ImageTooLarge,
    ImageTooSmall,
    MultiFrameImage,
    NotAnImage,
    UnsupportedFormat,
)
from tests.support.images import (
    dicom_bytes,
    j2k_claims,
    jpeg_bytes,
    png_bytes,
    png_declaring,
    saved,
    with_patched_frame,
    with_private_zeros,
)

# The pixel pipeline is what these tests are about, so pydicom's tiny samples may pass.
ANY_SIZE = DecodeLimits(min_side=1)
BT601 = np.array([0.299, 0.587, 0.114])


def assert_unit_image(image: DecodedImage, shape: tuple[int, int]) -> None:
    assert image.pixels.dtype == np.float32
    assert image.pixels.shape == shape
    assert np.isfinite(image.pixels).all()
    assert image.pixels.min() >= 0 and image.pixels.max() <= 1
    assert (image.metadata.height, image.metadata.width) == shape


# --- every file bundled with pydicom --------------------------------------------------------------

# pydicom.data.get_testdata_files() also searches external data sources and downloads
# pydicom-data's online files whose names match, so it is not used: these are exactly the files it
# finds in its first, local step, globbed from the same directory inside the installed package.
BUNDLED_ROOT = Path(pydicom.data.DATA_ROOT) / "test_files"
BUNDLED = sorted(
    path.relative_to(BUNDLED_ROOT).as_posix()
    for path in BUNDLED_ROOT.rglob("*")
    if path.is_file() and path.suffix != ".py"
)
DECODES = None  # expectation: decodes to an image
# First matching pattern wins. A file added by a newer pydicom needs an entry here.
BUNDLED_EXPECTATIONS: tuple[tuple[str, type[DecodeError] | None], ...] = (
    ("dicomdirtests/TINY_ALPHA/PT*", NotAnImage),  # CT headers without pixel data
    ("*DICOMDIR*", NotAnImage),
    ("dicomdirtests/*/*/*", DECODES),  # 16x16 CT, MR and MONOCHROME1 CR thumbnails
    ("*README*", UnsupportedFormat),
    ("*.json", UnsupportedFormat),
    ("*.dump", UnsupportedFormat),
    ("*.icc", UnsupportedFormat),
    ("*.gz", UnsupportedFormat),
    ("no_meta.dcm", UnsupportedFormat),  # a stray leading byte: no longer recognisably DICOM
    ("JPEG-lossy.dcm", UnsupportedFormat),  # 12-bit JPEG Extended needs the GPL decoder
    ("JPGExtended.dcm", UnsupportedFormat),
    ("SC_rgb_rle_32bit.dcm", UnsupportedFormat),
    ("examples_palette.dcm", UnsupportedFormat),
    ("*2frame.dcm", MultiFrameImage),
    ("examples_ybr_color.dcm", MultiFrameImage),
    ("MR_truncated.dcm", CorruptImage),
    ("JPEG2000-embedded-sequence-delimiter.dcm", CorruptImage),
    ("meta_missing_tsyntax.dcm", CorruptImage),  # pixel data but no Rows, Columns, ...
    ("nested_priv_SQ.dcm", CorruptImage),
    ("rt*.dcm", NotAnImage),  # plans, structure sets and dose grids
    ("badVR.dcm", NotAnImage),  # an RT dose
    ("liver*.dcm", NotAnImage),  # segmentations
    ("reportsi*.dcm", NotAnImage),
    ("test-SR.dcm", NotAnImage),
    ("waveform_ecg.dcm", NotAnImage),
    ("ExplVR_*NoMeta.dcm", NotAnImage),  # preamble-less RT Ion Plans
    ("UN_sequence.dcm", NotAnImage),
    ("empty_charset_LEI.dcm", NotAnImage),
    ("no_meta_group_length.dcm", NotAnImage),
    ("priv_SQ.dcm", NotAnImage),
    ("*.dcm", DECODES),
)


def bundled_expectation(name: str) -> type[DecodeError] | None:
    for pattern, expected in BUNDLED_EXPECTATIONS:
        if fnmatch(name, pattern):
            return expected
    pytest.fail(f"no expectation for pydicom's {name}; add one to BUNDLED_EXPECTATIONS")


def test_every_bundled_expectation_is_used() -> None:
    assert len(BUNDLED) > 100
    for pattern, _ in BUNDLED_EXPECTATIONS:
        assert any(fnmatch(name, pattern) for name in BUNDLED), pattern


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom's remarks on its odd samples
@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_file(name: str) -> None:
    path = BUNDLED_ROOT / name
    expected = bundled_expectation(name)
    if expected is DECODES:
        image = decode_image(path.read_bytes(), ANY_SIZE)
        assert_matches_pydicom(image, pydicom.dcmread(path, force=True))
    else:
        with pytest.raises(expected):
            decode_image(path.read_bytes(), ANY_SIZE)


def assert_matches_pydicom(image: DecodedImage, ds: Dataset) -> None:
    """Compare with pydicom's own pixel pipeline."""
    stored = ds.pixel_array
    assert_unit_image(image, stored.shape[:2])
    if ds.SamplesPerPixel == 3:
        expected = (stored @ BT601) / (2**ds.BitsStored - 1)
        np.testing.assert_allclose(image.pixels, expected, atol=1e-5)
        return
    # Bone bright: brightness never falls as the modality value (attenuation) rises, and never
    # rises for MONOCHROME1, where high stored values are displayed dark.
    modality = apply_modality_lut(stored, ds).ravel()
    brightness = image.pixels.ravel()[np.argsort(modality, kind="stable")]
    steps = np.diff(brightness.astype(np.float64))
    if ds.PhotometricInterpretation == "MONOCHROME1":
        assert (steps <= 1e-6).all()
    else:
        assert (steps >= -1e-6).all()
    if "WindowCenter" in ds:
        # pydicom windows into the stored range; ours is that, rescaled to [0, 1] (and inverted).
        windowed = apply_voi_lut(apply_modality_lut(stored, ds), ds).ravel()
        assert_affine(image.pixels.ravel(), windowed, ds.PhotometricInterpretation == "MONOCHROME1")


def assert_affine(ours: np.ndarray, reference: np.ndarray, inverted: bool) -> None:
    if np.ptp(reference) == 0:
        assert np.ptp(ours) == 0
        return
    slope, intercept = np.polyfit(reference, ours, 1)
    assert (slope < 0) == inverted
    np.testing.assert_allclose(ours, slope * reference + intercept, atol=1e-4)


def test_bundled_monochrome1_is_inverted() -> None:
    path = BUNDLED_ROOT / "dicomdirtests/77654033/CR1/6154"
    ds = pydicom.dcmread(path)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    image = decode_image(path.read_bytes(), ANY_SIZE)
    # The standard window with outputs 0..1, by hand: the stored values are all inside it.
    modality = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    center, width = float(ds.WindowCenter), float(ds.WindowWidth)
    windowed = np.clip((modality - (center - 0.5)) / (width - 1) + 0.5, 0, 1)
    np.testing.assert_allclose(image.pixels, 1 - windowed, atol=1e-6)


def test_bundled_thumbnail_is_too_small_at_default_limits() -> None:
    with pytest.raises(ImageTooSmall):
        decode_image((BUNDLED_ROOT / "dicomdirtests/77654033/CR1/6154").read_bytes())
    # 64 pixels a side is exactly the default minimum.
    assert decode_image((BUNDLED_ROOT / "MR_small.dcm").read_bytes()).pixels.shape == (64, 64)


def test_bundled_metadata() -> None:
    image = decode_image((BUNDLED_ROOT / "CT_small.dcm").read_bytes())
    meta = image.metadata
    assert meta.format == "dicom"
    assert (meta.width, meta.height, meta.bits_stored) == (128, 128, 16)
    assert meta.sop_instance_uid == "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322"
    assert meta.modality == "CT"
    assert meta.acquisition_date == date(1997, 4, 30)
    assert (meta.patient_id, meta.patient_sex, meta.patient_age_years) == ("1CT1", "O", 0.0)
    assert meta.pixel_spacing_mm == (0.661468, 0.661468)
    assert meta.photometric_interpretation == "MONOCHROME2"
    assert meta.transfer_syntax_uid == ExplicitVRLittleEndian
    assert meta.body_part is meta.laterality is meta.view_position is None


def test_dicom_wins_over_a_tiff_header_in_its_preamble() -> None:
    data = (BUNDLED_ROOT / "CT_small.dcm").read_bytes()
    assert data.startswith(b"II*\x00")
    assert sniff_format(data) == "dicom"


# --- DICOM written with pydicom -------------------------------------------------------------------


def ramp(low: int, high: int, dtype: type, shape: tuple[int, int] = (64, 96)) -> np.ndarray:
    """Every value from low to high (both ends included), row by row."""
    values = np.round(np.linspace(low, high, shape[0] * shape[1]))
    return values.reshape(shape).astype(dtype)


def stored_range(bits_stored: int, signed: bool) -> tuple[int, int]:
    if signed:
        return -(2 ** (bits_stored - 1)), 2 ** (bits_stored - 1) - 1
    return 0, 2**bits_stored - 1


def spanning_window(low: int, high: int) -> dict[str, float]:
    """The LINEAR window (PS3.3 C.11.2.1.2.1) that maps low..high exactly onto 0..1."""
    return {"WindowCenter": (low + high) / 2 + 0.5, "WindowWidth": high - low + 1}


ENCODINGS = [
    pytest.param(8, 8, False, ExplicitVRLittleEndian, id="u8-explicit-le"),
    pytest.param(8, 8, False, ImplicitVRLittleEndian, id="u8-implicit-le"),
    pytest.param(8, 8, True, ExplicitVRLittleEndian, id="s8-explicit-le"),
    pytest.param(16, 12, False, ExplicitVRLittleEndian, id="u12-explicit-le"),
    pytest.param(16, 12, True, ImplicitVRLittleEndian, id="s12-implicit-le"),
    pytest.param(16, 12, True, ExplicitVRBigEndian, id="s12-explicit-be"),
    pytest.param(16, 16, False, ExplicitVRBigEndian, id="u16-explicit-be"),
    pytest.param(16, 16, True, ExplicitVRLittleEndian, id="s16-explicit-le"),
    pytest.param(16, 16, False, ImplicitVRLittleEndian, id="u16-implicit-le"),
    pytest.param(16, 16, False, DeflatedExplicitVRLittleEndian, id="u16-deflated"),
]


@pytest.mark.parametrize(("allocated", "bits", "signed", "syntax"), ENCODINGS)
@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_native_encodings_with_window(
    allocated: int, bits: int, signed: bool, syntax: UID, photometric: str
) -> None:
    low, high = stored_range(bits, signed)
    stored = ramp(low, high, np.dtype(f"{'i' if signed else 'u'}{allocated // 8}"))
    data = dicom_bytes(
        stored, syntax, photometric=photometric, bits_stored=bits, **spanning_window(low, high)
    )
    image = decode_image(data)
    assert_unit_image(image, stored.shape)
    expected = (stored.astype(np.float64) - low) / (high - low)
    if photometric == "MONOCHROME1":
        expected = 1 - expected
    np.testing.assert_allclose(image.pixels, expected, atol=1e-6)
    assert image.metadata.bits_stored == bits
    assert image.metadata.transfer_syntax_uid == syntax


@pytest.mark.parametrize(("allocated", "bits", "signed", "syntax"), ENCODINGS)
def test_native_encodings_without_window_use_percentiles(
    allocated: int, bits: int, signed: bool, syntax: UID
) -> None:
    low, high = stored_range(bits, signed)
    stored = ramp(low, high, np.dtype(f"{'i' if signed else 'u'}{allocated // 8}"))
    image = decode_image(dicom_bytes(stored, syntax, bits_stored=bits))
    p_low, p_high = np.percentile(stored.astype(np.float64), [0.5, 99.5])
    expected = np.clip((stored - p_low) / (p_high - p_low), 0, 1)
    np.testing.assert_allclose(image.pixels, expected, atol=1e-5)


def test_unused_high_bits_are_masked() -> None:
    values = ramp(0, 4095, np.uint16)
    noisy = values | np.uint16(0xA000)  # garbage above BitsStored 12
    image = decode_image(dicom_bytes(noisy, bits_stored=12, **spanning_window(0, 4095)))
    np.testing.assert_allclose(image.pixels, values / 4095, atol=1e-6)


def test_signed_12_bit_values_are_sign_extended() -> None:
    values = ramp(-2048, 2047, np.int16)
    raw = (values.astype(np.int32) & 0x0FFF).astype(np.uint16).view(np.int16)  # no sign bits
    image = decode_image(dicom_bytes(raw, bits_stored=12, **spanning_window(-2048, 2047)))
    np.testing.assert_allclose(image.pixels, (values + 2048) / 4095, atol=1e-6)


def test_rescale_then_window_in_modality_units() -> None:
    stored = ramp(0, 4095, np.uint16)
    data = dicom_bytes(
        stored,
        bits_stored=12,
        RescaleSlope=0.5,
        RescaleIntercept=-1024,
        WindowCenter=40,
        WindowWidth=400,
    )
    hounsfield = stored * 0.5 - 1024
    expected = np.clip((hounsfield - 39.5) / 399 + 0.5, 0, 1)
    np.testing.assert_allclose(decode_image(data).pixels, expected, atol=1e-6)


def test_first_of_several_windows_is_used() -> None:
    stored = ramp(0, 4095, np.uint16)
    data = dicom_bytes(stored, bits_stored=12, WindowCenter=[1000, 3000], WindowWidth=[501, 100])
    expected = np.clip((stored - 999.5) / 500 + 0.5, 0, 1)
    np.testing.assert_allclose(decode_image(data).pixels, expected, atol=1e-6)


@pytest.mark.parametrize(
    ("function", "formula"),
    [
        ("LINEAR_EXACT", lambda x, c, w: np.clip((x - c) / w + 0.5, 0, 1)),
        ("SIGMOID", lambda x, c, w: 1 / (1 + np.exp(-4 * (x - c) / w))),
        ("SOMETHING_ELSE", lambda x, c, w: np.clip((x - (c - 0.5)) / (w - 1) + 0.5, 0, 1)),
    ],
)
def test_voi_lut_functions(function: str, formula) -> None:
    stored = ramp(0, 4095, np.uint16)
    data = dicom_bytes(
        stored, bits_stored=12, WindowCenter=2000, WindowWidth=1000, VOILUTFunction=function
    )
    expected = formula(stored.astype(np.float64), 2000, 1000)
    np.testing.assert_allclose(decode_image(data).pixels, expected, atol=1e-5)


def test_unusable_window_falls_back_to_percentiles() -> None:
    stored = ramp(0, 4095, np.uint16)
    without = decode_image(dicom_bytes(stored, bits_stored=12)).pixels
    zero_width = decode_image(
        dicom_bytes(stored, bits_stored=12, WindowCenter=2000, WindowWidth=0)
    ).pixels
    np.testing.assert_array_equal(zero_width, without)


def lut_item(first_mapped: int, table: np.ndarray, bits: int, as_bytes: bool) -> Dataset:
    item = Dataset()
    item.LUTDescriptor = [len(table), first_mapped, bits]
    item.LUTData = table.astype("<u2").tobytes() if as_bytes else [int(v) for v in table]
    item["LUTData"].VR = "OW" if as_bytes else "US"
    return item


@pytest.mark.parametrize("as_bytes", [False, True], ids=["US", "OW"])
def test_voi_lut_sequence(as_bytes: bool) -> None:
    stored = ramp(0, 4095, np.uint16)
    table = np.round(np.sqrt(np.arange(3000) / 2999) * 4095)  # maps 100..3099; outside is clamped
    data = dicom_bytes(
        stored,
        bits_stored=12,
        VOILUTSequence=Sequence([lut_item(100, table, 12, as_bytes)]),
        WindowCenter=2000,  # a VOI LUT takes precedence over the window
        WindowWidth=10,
    )
    expected = table[np.clip(stored.astype(int) - 100, 0, 2999)] / 4095
    np.testing.assert_allclose(decode_image(data).pixels, expected, atol=1e-6)


def test_modality_lut_sequence() -> None:
    stored = ramp(0, 1023, np.uint16)
    table = np.arange(1024) * 4  # a 12-bit output scale
    data = dicom_bytes(
        stored,
        bits_stored=10,
        ModalityLUTSequence=Sequence([lut_item(0, table, 12, as_bytes=False)]),
        **spanning_window(0, 4092),
    )
    np.testing.assert_allclose(decode_image(data).pixels, stored * 4 / 4092, atol=1e-6)


@pytest.mark.parametrize(
    ("syntax", "dtype", "bits"),
    [
        (RLELossless, np.uint16, 16),
        (RLELossless, np.int16, 12),
        (RLELossless, np.uint8, 8),
        (JPEG2000Lossless, np.uint16, 12),
        (JPEG2000Lossless, np.uint16, 16),
        (JPEGLSLossless, np.uint16, 16),
        (JPEGLSLossless, np.uint8, 8),
    ],
    ids=lambda v: getattr(v, "name", str(v)),
)
def test_lossless_compression_decodes_like_native(syntax: UID, dtype: type, bits: int) -> None:
    low, high = stored_range(bits, np.dtype(dtype).kind == "i")
    rng = np.random.default_rng(bits)
    stored = np.clip(ramp(low, high, np.int64) + rng.integers(-50, 50, (64, 96)), low, high)
    stored = stored.astype(dtype)
    window = spanning_window(low, high)
    native = decode_image(dicom_bytes(stored, bits_stored=bits, **window))
    compressed = decode_image(dicom_bytes(stored, syntax, bits_stored=bits, **window))
    np.testing.assert_array_equal(compressed.pixels, native.pixels)
    assert compressed.metadata.transfer_syntax_uid == syntax


def jpeg_baseline_dicom(pixels: np.ndarray) -> bytes:
    """An 8-bit greyscale JPEG made by Pillow, in a DICOM whose window is value / 255."""
    ds = pydicom.dcmread(BytesIO(dicom_bytes(pixels, WindowCenter=128, WindowWidth=256)))
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([jpeg_bytes(pixels)])
    return saved(ds)


def test_jpeg_baseline_dicom() -> None:
    pixels = ramp(0, 255, np.uint8, (96, 128))
    image = decode_image(jpeg_baseline_dicom(pixels))
    reference = np.asarray(Image.open(BytesIO(jpeg_bytes(pixels))), dtype=np.float64) / 255
    np.testing.assert_allclose(image.pixels, reference, atol=1e-6)
    assert image.metadata.transfer_syntax_uid == JPEGBaseline8Bit


def test_rgb_dicom_becomes_luminance() -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (64, 80, 3)).astype(np.uint8)
    image = decode_image(dicom_bytes(rgb, photometric="RGB"))
    np.testing.assert_allclose(image.pixels, (rgb @ BT601) / 255, atol=1e-5)


def test_dicom_without_preamble() -> None:
    stored = ramp(0, 4095, np.uint16)
    window = spanning_window(0, 4095)
    bare = dicom_bytes(stored, ImplicitVRLittleEndian, bits_stored=12, preamble=False, **window)
    assert bare[128:132] != b"DICM"
    image = decode_image(bare)
    np.testing.assert_allclose(image.pixels, stored / 4095, atol=1e-6)
    assert image.metadata.transfer_syntax_uid == ImplicitVRLittleEndian


def test_png_and_dicom_twins_decode_alike() -> None:
    """The phantom cohort's convention: a 16-bit PNG of round(y * 65535) and DICOM twins whose
    window (centre 32768, width 65536) maps the stored range linearly."""
    display = ramp(0, 65535, np.uint16, (80, 96))
    png = png_bytes(display)
    window = {"WindowCenter": 32768, "WindowWidth": 65536}
    twins = [
        dicom_bytes(display, **window),
        dicom_bytes(65535 - display, JPEG2000Lossless, photometric="MONOCHROME1", **window),
        dicom_bytes(
            (display.astype(np.int32) - 32768).astype(np.int16),
            RLELossless,
            RescaleIntercept=32768,
            **window,
        ),
    ]
    expected = decode_image(png).pixels
    for twin in twins:
        np.testing.assert_allclose(decode_image(twin).pixels, expected, atol=1e-4)


def test_dicom_metadata() -> None:
    data = dicom_bytes(
        ramp(0, 255, np.uint8),
        SOPInstanceUID="1.2.3.4",
        BodyPartExamined="KNEE",
        ImageLaterality="R",
        Laterality="L",
        ViewPosition="PA",
        AcquisitionDate="20210315",
        StudyDate="20210314",
        PatientID="P-17",
        PatientSex="F",
        PatientAge="065Y",
        ImagerPixelSpacing=[0.15, 0.148],
    )
    meta = decode_image(data).metadata
    assert meta.sop_instance_uid == "1.2.3.4"
    assert (meta.modality, meta.body_part, meta.view_position) == ("DX", "KNEE", "PA")
    assert meta.laterality == "R"
    assert meta.acquisition_date == date(2021, 3, 15)
    assert (meta.patient_id, meta.patient_sex, meta.patient_age_years) == ("P-17", "F", 65.0)
    assert meta.pixel_spacing_mm == (0.15, 0.148)
    assert (meta.width, meta.height, meta.bits_stored) == (96, 64, 8)


@pytest.mark.parametrize(
    ("age", "years"),
    [("065Y", 65.0), ("006M", 0.5), ("026W", 26 * 7 / 365.25), ("003D", 3 / 365.25), ("", None)],
)
def test_patient_age(age: str, years: float | None) -> None:
    meta = decode_image(dicom_bytes(ramp(0, 255, np.uint8), PatientAge=age)).metadata
    assert meta.patient_age_years == pytest.approx(years)


@pytest.mark.parametrize(
    ("elements", "side"),
    [
        ({"ImageLaterality": "L"}, "L"),
        ({"Laterality": "R"}, "R"),
        ({"ImageLaterality": "U", "Laterality": "L"}, "L"),
        ({"ImageLaterality": "B"}, None),
        ({}, None),
    ],
)
def test_laterality(elements: dict[str, str], side: str | None) -> None:
    assert decode_image(dicom_bytes(ramp(0, 255, np.uint8), **elements)).metadata.laterality == side


@pytest.mark.parametrize(
    ("elements", "day"),
    [
        ({"ContentDate": "20200102", "StudyDate": "20190101"}, date(2020, 1, 2)),
        ({"StudyDate": "20190101"}, date(2019, 1, 1)),
        ({"AcquisitionDate": "20191332", "StudyDate": "20190101"}, date(2019, 1, 1)),
        ({"AcquisitionDate": "2019"}, None),
    ],
)
@pytest.mark.filterwarnings("ignore:Invalid value for VR DA")  # invalid on purpose
def test_acquisition_date(elements: dict[str, str], day: date | None) -> None:
    assert (
        decode_image(dicom_bytes(ramp(0, 255, np.uint8), **elements)).metadata.acquisition_date
        == day
    )


def test_pixel_spacing_prefers_pixel_spacing() -> None:
    data = dicom_bytes(
        ramp(0, 255, np.uint8), PixelSpacing=[0.2, 0.1], ImagerPixelSpacing=[0.3, 0.3]
    )
    assert decode_image(data).metadata.pixel_spacing_mm == (0.2, 0.1)


# --- DICOM refusals -------------------------------------------------------------------------------


def non_image_bytes(sop_class: UID, modality: str) -> bytes:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.Modality = modality
    ds.PatientID = "P-1"
    return saved(ds)


@pytest.mark.parametrize(
    ("sop_class", "modality", "named"),
    [(BasicTextSRStorage, "SR", "Basic Text SR"), (RTPlanStorage, "RTPLAN", "RT Plan")],
)
def test_objects_without_pixels_are_not_images(sop_class: UID, modality: str, named: str) -> None:
    with pytest.raises(NotAnImage, match=named):
        decode_image(non_image_bytes(sop_class, modality))


def test_multi_frame_is_refused() -> None:
    frames = np.zeros((3 * 64, 64), np.uint16)  # three 64x64 frames, one after the other
    with pytest.raises(MultiFrameImage, match="3 frames"):
        decode_image(dicom_bytes(frames, NumberOfFrames=3, Rows=64))


def test_truncated_pixel_data_is_corrupt() -> None:
    data = dicom_bytes(ramp(0, 4095, np.uint16, (128, 128)), bits_stored=12)
    with pytest.raises(CorruptImage, match="truncated"):
        decode_image(data[: len(data) - 1000])


def test_huge_claimed_size_is_refused_before_decoding() -> None:
    data = dicom_bytes(np.zeros((64, 64), np.uint16), Rows=60000, Columns=60000)
    start = time.perf_counter()
    with pytest.raises(ImageTooLarge, match="60000x60000"):
        decode_image(data)
    assert time.perf_counter() - start < 1


def test_small_dicom_is_refused() -> None:
    with pytest.raises(ImageTooSmall, match="10x10"):
        decode_image(dicom_bytes(np.zeros((10, 10), np.uint16)))


def test_undecodable_transfer_syntax_is_named() -> None:
    data = dicom_bytes(np.zeros((64, 64), np.uint8))
    ds = pydicom.dcmread(BytesIO(data))
    ds.file_meta.TransferSyntaxUID = MPEG2MPML
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + bytes(100)])
    with pytest.raises(UnsupportedFormat, match="MPEG2"):
        decode_image(saved(ds))


def jpeg_ls_claims(side: int) -> Callable[[bytearray], None]:
    def patch(frame: bytearray) -> None:
        struct.pack_into(">HH", frame, frame.index(b"\xff\xf7") + 5, side, side)

    return patch


def jpeg_precision(bits: int) -> Callable[[bytearray], None]:
    def patch(frame: bytearray) -> None:
        frame[frame.index(b"\xff\xc0") + 4] = bits

    return patch


@pytest.mark.parametrize(
    ("syntax", "patch", "complaint"),
    [
        (JPEG2000Lossless, j2k_claims(60000), "60000x60000"),
        (JPEGLSLossless, jpeg_ls_claims(60000), "60000x60000"),
        (JPEGLSLossless, jpeg_ls_claims(65), "65x65"),
        (JPEGBaseline8Bit, jpeg_precision(241), "241-bit"),
    ],
    ids=["j2k-bomb", "jpeg-ls-bomb", "jpeg-ls-mismatch", "jpeg-precision"],
)
def test_codestream_header_must_agree_with_dicom_header(
    syntax: UID, patch: Callable[[bytearray], None], complaint: str
) -> None:
    """Codecs size their output from the codestream, and some crash on impossible headers."""
    if syntax == JPEGBaseline8Bit:
        data = jpeg_baseline_dicom(ramp(0, 255, np.uint8))
    else:
        data = dicom_bytes(ramp(0, 4095, np.uint16), syntax, bits_stored=12)
    start = time.perf_counter()
    with pytest.raises(CorruptImage, match=complaint):
        decode_image(with_patched_frame(data, patch))
    assert time.perf_counter() - start < 1


def zero_second_half(frame: bytearray) -> None:
    # Zeroes rather than a cut: CharLS spends seconds on some truncated JPEG-LS streams.
    frame[len(frame) // 2 :] = bytes(len(frame) - len(frame) // 2)


@pytest.mark.parametrize(
    "syntax", [RLELossless, JPEG2000Lossless, JPEGLSLossless, JPEGBaseline8Bit], ids=str
)
def test_damaged_codestream_is_corrupt(syntax: UID) -> None:
    if syntax == JPEGBaseline8Bit:
        data = jpeg_baseline_dicom(ramp(0, 255, np.uint8))
    else:
        data = dicom_bytes(ramp(0, 4095, np.uint16), syntax, bits_stored=12)
    with pytest.raises(CorruptImage, match="cannot decode"):
        decode_image(with_patched_frame(data, zero_second_half))


def test_zero_rescale_slope_is_corrupt() -> None:
    with pytest.raises(CorruptImage, match="RescaleSlope"):
        decode_image(dicom_bytes(ramp(0, 255, np.uint8), RescaleSlope=0, RescaleIntercept=0))


def test_deflate_bomb_is_refused() -> None:
    # 8 MiB of zeros in a private element deflates to a few kilobytes.
    small = np.zeros((64, 64), np.uint8)
    data = dicom_bytes(small, DeflatedExplicitVRLittleEndian)
    bomb = with_private_zeros(data, 8 << 20)
    assert len(bomb) < 100_000
    limits = DecodeLimits(max_pixels=64 * 64)
    with pytest.raises(ImageTooLarge, match="deflated"):
        decode_image(bomb, limits)
    assert decode_image(data, limits).pixels.shape == (64, 64)


# --- PNG, JPEG, TIFF ------------------------------------------------------------------------------


def tiff_bytes(pixels: np.ndarray, **options: object) -> bytes:
    out = BytesIO()
    Image.fromarray(pixels).save(out, "TIFF", **options)
    return out.getvalue()


def test_png_8_bit() -> None:
    pixels = ramp(0, 255, np.uint8)
    image = decode_image(png_bytes(pixels))
    assert_unit_image(image, pixels.shape)
    np.testing.assert_allclose(image.pixels, pixels / 255, atol=1e-7)
    meta = image.metadata
    assert (meta.format, meta.width, meta.height, meta.bits_stored) == ("png", 96, 64, 8)
    assert meta.pixel_spacing_mm is meta.patient_id is meta.acquisition_date is None


def test_png_16_bit() -> None:
    pixels = ramp(0, 65535, np.uint16)
    image = decode_image(png_bytes(pixels))
    np.testing.assert_allclose(image.pixels, pixels / 65535, atol=1e-7)
    assert image.metadata.bits_stored == 16


RGB = np.random.default_rng(2).integers(0, 256, (64, 80, 3)).astype(np.uint8)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P"])
def test_colour_png_becomes_luminance(mode: str) -> None:
    source = np.asarray(Image.fromarray(RGB).convert(mode).convert("RGB"))  # what the file holds
    image = decode_image(png_bytes(RGB, mode))
    np.testing.assert_allclose(image.pixels, (source @ BT601) / 255, atol=1e-5)


def test_grey_alpha_png_drops_alpha() -> None:
    grey = ramp(0, 255, np.uint8)
    image = decode_image(png_bytes(np.dstack([grey, np.full_like(grey, 7)]), "LA"))
    np.testing.assert_allclose(image.pixels, grey / 255, atol=1e-7)


def test_jpeg() -> None:
    pixels = ramp(0, 255, np.uint8)
    data = jpeg_bytes(pixels)
    image = decode_image(data)
    reference = np.asarray(Image.open(BytesIO(data)), dtype=np.float64) / 255
    np.testing.assert_allclose(image.pixels, reference, atol=1e-6)
    assert (image.metadata.format, image.metadata.bits_stored) == ("jpeg", 8)


def test_colour_jpeg() -> None:
    data = jpeg_bytes(RGB)
    reference = np.asarray(Image.open(BytesIO(data)), dtype=np.float64) @ BT601 / 255
    np.testing.assert_allclose(decode_image(data).pixels, reference, atol=1e-5)


def test_exif_orientation_is_applied() -> None:
    pixels = ramp(0, 255, np.uint8, (64, 96))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display turns it 90 degrees clockwise
    image = decode_image(jpeg_bytes(pixels, exif=exif, quality=100))
    assert image.pixels.shape == (96, 64)
    np.testing.assert_allclose(image.pixels, np.rot90(pixels, -1) / 255, atol=3 / 255)


@pytest.mark.parametrize(
    ("pixels", "scale", "bits"),
    [
        (ramp(0, 255, np.uint8), 255, 8),
        (ramp(0, 65535, np.uint16), 65535, 16),
        (ramp(0, 65535, np.int32), 65535, 16),
    ],
    ids=["8-bit", "16-bit", "32-bit-int"],
)
def test_grey_tiff(pixels: np.ndarray, scale: int, bits: int) -> None:
    image = decode_image(tiff_bytes(pixels, compression="tiff_lzw"))
    np.testing.assert_allclose(image.pixels, pixels / scale, atol=1e-7)
    assert (image.metadata.format, image.metadata.bits_stored) == ("tiff", bits)


def test_rgb_tiff() -> None:
    image = decode_image(tiff_bytes(RGB))
    np.testing.assert_allclose(image.pixels, (RGB @ BT601) / 255, atol=1e-5)


def test_float_tiff_is_clipped() -> None:
    pixels = np.linspace(-0.5, 1.5, 64 * 96, dtype=np.float32).reshape(64, 96)
    image = decode_image(tiff_bytes(pixels))
    np.testing.assert_allclose(image.pixels, np.clip(pixels, 0, 1))


def test_32_bit_tiff_beyond_16_bits_is_refused() -> None:
    with pytest.raises(UnsupportedFormat, match="16-bit"):
        decode_image(tiff_bytes(ramp(0, 70000, np.int32)))


# --- raster refusals ------------------------------------------------------------------------------


def png_claiming(width: int, height: int) -> bytes:
    """A valid PNG header claiming width x height 8-bit grey pixels, with a token IDAT."""
    return png_declaring(width, height, zlib.compress(bytes(width + 1)))


@pytest.mark.parametrize("side", [100_000, 8_000])  # beyond Pillow's own guard, and only ours
def test_png_decompression_bomb_is_refused_from_the_header(side: int) -> None:
    start = time.perf_counter()
    with pytest.raises(ImageTooLarge):
        decode_image(png_claiming(side, side))
    assert time.perf_counter() - start < 1


def test_truncated_images_are_corrupt() -> None:
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    noise = np.random.default_rng(3).integers(0, 65536, (128, 128)).astype(np.uint16)
    for data in (png_bytes(noise), jpeg_bytes((noise >> 8).astype(np.uint8)), tiff_bytes(noise)):
        with pytest.raises(CorruptImage):
            decode_image(data[: len(data) * 2 // 3])


def test_png_with_bad_checksum_is_corrupt() -> None:
    data = bytearray(png_bytes(ramp(0, 255, np.uint8)))
    idat = data.index(b"IDAT")
    data[idat + 10] ^= 0xFF
    with pytest.raises(CorruptImage):
        decode_image(bytes(data))


def test_small_png_is_refused() -> None:
    with pytest.raises(ImageTooSmall, match="10x10"):
        decode_image(png_bytes(np.zeros((10, 10), np.uint8)))


def test_animated_png_is_multi_frame() -> None:
    frames = [Image.fromarray(np.full((64, 64), v, np.uint8)) for v in (0, 128)]
    out = BytesIO()
    frames[0].save(out, "PNG", save_all=True, append_images=frames[1:])
    with pytest.raises(MultiFrameImage, match="2 frames"):
        decode_image(out.getvalue())


def test_multi_page_tiff_is_multi_frame() -> None:
    pages = [Image.fromarray(np.full((64, 64), v, np.uint8)) for v in (0, 128, 255)]
    out = BytesIO()
    pages[0].save(out, "TIFF", save_all=True, append_images=pages[1:])
    with pytest.raises(MultiFrameImage, match="3 frames"):
        decode_image(out.getvalue())


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (b"", "empty"),
        (np.random.default_rng(4).bytes(4096), "unrecognised"),
        (b"Patient notes: left femur, healed fracture.\n" * 20, "unrecognised"),
        (b"GIF89a" + bytes(100), "GIF"),
        (b"PK\x03\x04" + bytes(100), "ZIP"),
    ],
    ids=["empty", "random", "text", "gif", "zip"],
)
def test_unrecognised_bytes(data: bytes, named: str) -> None:
    with pytest.raises(UnsupportedFormat, match=named) as refusal:
        decode_image(data)
    assert "DICOM, PNG, JPEG or TIFF" in str(refusal.value)


# --- robustness -----------------------------------------------------------------------------------


def fuzz_seeds() -> list[bytes]:
    stored = ramp(0, 4095, np.uint16)
    return [
        png_bytes(stored),
        jpeg_bytes((stored >> 4).astype(np.uint8)),
        tiff_bytes(stored, compression="tiff_lzw"),
        dicom_bytes(stored, bits_stored=12, WindowCenter=2048, WindowWidth=4096),
        dicom_bytes(stored, DeflatedExplicitVRLittleEndian, bits_stored=12),
        dicom_bytes(stored, RLELossless, bits_stored=12),
        dicom_bytes(stored, JPEG2000Lossless, bits_stored=12),
        dicom_bytes(stored, JPEGLSLossless, bits_stored=12),
    ]


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("seed_index", range(8))
def test_damaged_files_raise_only_decode_errors(seed_index: int) -> None:
    original = fuzz_seeds()[seed_index]
    rng = np.random.default_rng(seed_index)
    for _ in range(40):
        data = bytearray(original)
        if rng.random() < 0.3:
            data = data[: rng.integers(1, len(data))]
        for position in rng.integers(0, len(data), rng.integers(1, 8)):
            data[position] = rng.integers(0, 256)
        with contextlib.suppress(DecodeError):
            decode_image(bytes(data))
