"""The cohort readers, on small files of exactly the formats users bring (README.md, "Real
cohorts")."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from training.cohorts import (
    CohortFormatError,
    read_chestxray14,
    read_knee_manifest,
    write_knee_manifest,
)
from training.records import ImageRecord


def _png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (4, 4), color=128).save(path)
    return path


# --- knee ----------------------------------------------------------------------------------------

KNEE_HEADER = "person_id,side,visit_months,path,kl_grade,age,sex"


def _knee_dir(tmp_path: Path) -> Path:
    for name in ("a.png", "b.png", "c.png", "d.png"):
        _png(tmp_path / "img" / name)
    return tmp_path


def _manifest(folder: Path, *lines: str) -> Path:
    path = folder / "manifest.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_knee_manifest_reads_every_accepted_spelling(tmp_path: Path) -> None:
    folder = _knee_dir(tmp_path)
    _png(tmp_path / "elsewhere" / "e.png")
    (tmp_path / "img" / "a.dcm").write_bytes(b"DICM")
    path = _manifest(
        folder,
        KNEE_HEADER + ",dicom_path,pixel_spacing_mm,split,notes",
        "9000099,left,0,img/a.png,2,61.5,male,img/a.dcm,0.14,train,first",
        "9000099, R ,12.0,./img/b.png,,,F,,,TEST,",
        f"9000100,RIGHT,24,{tmp_path / 'elsewhere' / 'e.png'},2.0,70,1,,,,",
        "9000101,l,96,img/c.png,0,,2,,,,",
        "",
        "9000102,r,48,img/d.png,4,55,,,0.2,,",
    )
    records = read_knee_manifest(path)
    img = tmp_path / "img"
    assert records == [
        ImageRecord(
            "9000099", 0.0, img / "a.png", "KNEE", "L", img / "a.dcm", 2, 61.5, "M", 0.14, "train"
        ),
        ImageRecord("9000099", 12.0, img / "b.png", "KNEE", "R", sex="F", split="test"),
        ImageRecord(
            "9000100", 24.0, tmp_path / "elsewhere" / "e.png", "KNEE", "R", None, 2, 70.0, "M"
        ),
        ImageRecord("9000101", 96.0, img / "c.png", "KNEE", "L", kl_grade=0, sex="F"),
        ImageRecord("9000102", 48.0, img / "d.png", "KNEE", "R", None, 4, 55.0, None, 0.2),
    ]
    assert all(r.path.is_absolute() for r in records)


def test_knee_manifest_relative_to_the_manifest_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _png(tmp_path / "cohort" / "img" / "a.png")
    _manifest(tmp_path / "cohort", KNEE_HEADER, "1,L,0,img/a.png,,,")
    monkeypatch.chdir(tmp_path)
    (record,) = read_knee_manifest(Path("cohort/manifest.csv"))
    assert record.path == tmp_path / "cohort" / "img" / "a.png"


def _knee_records(folder: Path) -> list[ImageRecord]:
    img = folder / "img"
    dicom = folder / "dicom" / "a.dcm"
    dicom.parent.mkdir(parents=True)
    dicom.write_bytes(b"DICM")  # only its existence is checked
    outside = _png(folder.parent / "outside" / "x.png")
    return [
        ImageRecord("9000099", 0.0, _png(img / "a.png"), "KNEE", "L", dicom, 3, 61.0, "M", 0.143),
        ImageRecord("9000099", 12.5, _png(img / "b.png"), "KNEE", "R", None, None, None, None),
        ImageRecord("P,2", 1 / 3, _png(img / "c.png"), "KNEE", "R", None, 0, 45.25, "F", 1e-3),
        ImageRecord("9000100", 96.0, outside, "KNEE", "L", None, 4, 70.0, "F"),
    ]


def test_write_knee_manifest_round_trips_exactly(tmp_path: Path) -> None:
    records = _knee_records(tmp_path / "cohort")
    path = tmp_path / "cohort" / "manifest.csv"
    write_knee_manifest(records, path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert (
        lines[0] == "person_id,side,visit_months,path,dicom_path,kl_grade,age,sex,pixel_spacing_mm"
    )
    assert lines[1] == "9000099,L,0.0,img/a.png,dicom/a.dcm,3,61.0,M,0.143"
    assert lines[2] == "9000099,R,12.5,img/b.png,,,,,"
    assert lines[3] == '"P,2",R,0.3333333333333333,img/c.png,,0,45.25,F,0.001'
    assert lines[4] == "9000100,L,96.0,../outside/x.png,,4,70.0,F,"
    assert read_knee_manifest(path) == records


def test_write_knee_manifest_keeps_a_split_in_a_last_column(tmp_path: Path) -> None:
    records = _knee_records(tmp_path / "cohort")
    records[1] = ImageRecord("9000099", 12.5, records[1].path, "KNEE", "R", split="test")
    path = tmp_path / "cohort" / "manifest.csv"
    write_knee_manifest(records, path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].endswith(",pixel_spacing_mm,split")
    assert lines[2] == "9000099,R,12.5,img/b.png,,,,,,test"
    assert read_knee_manifest(path) == records


@pytest.mark.parametrize(
    "record",
    [
        ImageRecord("1", 0.0, Path("/x.png"), "KNEE", None),
        ImageRecord("1", 0.0, Path("/x.png"), "CHEST", "L"),
        ImageRecord("1", 0.0, Path("/x.png"), "KNEE", "L", sex="U"),
    ],
)
def test_write_knee_manifest_refuses_what_cannot_be_read_back(
    tmp_path: Path, record: ImageRecord
) -> None:
    with pytest.raises(ValueError, match="cannot write a knee manifest row"):
        write_knee_manifest([record], tmp_path / "manifest.csv")


@pytest.mark.parametrize(
    ("lines", "line", "column", "message"),
    [
        (["person_id,side,visit_months,path,kl_grade,age"], 1, None, "missing required columns"),
        ([KNEE_HEADER + ",side", "1,L,0,img/a.png,,,,L"], 1, None, "repeated columns ['side']"),
        ([KNEE_HEADER, "1,L,twelve,img/a.png,,,"], 2, "visit_months", "not a number: 'twelve'"),
        ([KNEE_HEADER, "1,L,,img/a.png,,,"], 2, "visit_months", "a value is required"),
        ([KNEE_HEADER, "1,L,0,img/a.png,,,", "1,L,12,img/b.png,2.5,,"], 3, "kl_grade", "whole"),
        ([KNEE_HEADER, "1,L,0,img/a.png,II,,"], 2, "kl_grade", "not a number: 'II'"),
        ([KNEE_HEADER, "1,L,0,img/a.png,,sixty,"], 2, "age", "not a number"),
        ([KNEE_HEADER, "1,L,0,img/a.png,,nan,"], 2, "age", "not a finite number"),
        ([KNEE_HEADER + ",pixel_spacing_mm", "1,L,0,img/a.png,,,,0,1"], 2, None, "9 cells"),
        ([KNEE_HEADER + ",pixel_spacing_mm", "1,L,0,img/a.png,,,,x"], 2, "pixel_spacing_mm", ""),
        ([KNEE_HEADER, "1,both,0,img/a.png,,,"], 2, "side", "'both' is not one of"),
        ([KNEE_HEADER, "1,,0,img/a.png,,,"], 2, "side", "a value is required"),
        ([KNEE_HEADER, "1,L,0,img/a.png,,,U"], 2, "sex", "'U' is not one of"),
        ([KNEE_HEADER, ",L,0,img/a.png,,,"], 2, "person_id", "a value is required"),
        ([KNEE_HEADER, "1,L,0,,,,"], 2, "path", "a value is required"),
        ([KNEE_HEADER, "1,L,0,img/a.png,,,", "1,R,0,img/nope.png,,,"], 3, "path", "not found"),
        ([KNEE_HEADER + ",dicom_path", "1,L,0,img/a.png,,,,a.dcm"], 2, "dicom_path", "not found"),
        ([KNEE_HEADER + ",split", "1,L,0,img/a.png,,,,val"], 2, "split", "'val' is not one of"),
        (
            [KNEE_HEADER, "1,L,0,img/a.png,,,", "2,R,0,img/b.png,,,", "1,R,0,img/../img/a.png,,,"],
            4,
            "path",
            "same image as line 2",
        ),
        ([], 1, None, "missing required columns"),
    ],
)
def test_knee_manifest_errors_say_where(
    tmp_path: Path, lines: list[str], line: int, column: str | None, message: str
) -> None:
    path = _manifest(_knee_dir(tmp_path), *lines)
    with pytest.raises(CohortFormatError, match="manifest.csv") as caught:
        read_knee_manifest(path)
    error = caught.value
    assert (error.file, error.line, error.column) == (path, line, column)
    assert message in str(error)
    assert isinstance(error, ValueError)


# --- chest (ChestX-ray14) ------------------------------------------------------------------------

CXR_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
)
# Patient 3's rows are out of order, and the recorded age drops at follow-up 2, as ages can.
CXR_ROWS = (
    "00000001_000.png,Cardiomegaly,0,1,58,M,PA,2682,2749,0.143,0.143",
    "00000001_001.png,Cardiomegaly|Emphysema,1,1,58,M,PA,2894,2729,0.143,0.143",
    "00000001_002.png,Cardiomegaly|Effusion,2,1,60,M,PA,2500,2048,0.168,0.168",
    "00000002_000.png,No Finding,0,2,81,F,PA,2500,2048,0.171,0.171",
    "00000003_001.png,Hernia,1,3,76,F,AP,2500,2048,0.168,0.168",
    "00000003_000.png,Hernia,0,3,74,F,PA,2582,2991,0.143,0.143",
    "00000003_002.png,Hernia|Infiltration,2,3,73,F,PA,2048,2500,0.139,0.139",
)
TRAIN_VAL = ("00000001_000.png", "00000001_001.png", "00000001_002.png", "00000003_001.png")
TEST = ("00000002_000.png", "00000003_000.png")  # 00000003_002.png is in neither list


def _cxr_root(
    root: Path,
    rows: tuple[str, ...] = CXR_ROWS,
    header: str = CXR_HEADER,
    folders: tuple[str, ...] = ("images_001/images", "images_002/images"),
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "Data_Entry_2017.csv").write_text("\n".join((header, *rows)) + "\n", encoding="utf-8")
    (root / "train_val_list.txt").write_text("\n".join(TRAIN_VAL) + "\n", encoding="utf-8")
    (root / "test_list.txt").write_text("\n".join(TEST) + "\n", encoding="utf-8")
    for i, row in enumerate(rows):
        _png(root / folders[i % len(folders)] / row.split(",")[0])
    return root


def _expected_cxr(images: dict[str, Path]) -> list[ImageRecord]:
    def record(
        name: str, patient: str, months: float, age: float, sex: str, spacing: float
    ) -> ImageRecord:
        split = "train" if name in TRAIN_VAL else "test" if name in TEST else None
        return ImageRecord(
            f"CXR-{patient}",
            months,
            images[name],
            "CHEST",
            None,
            None,
            None,
            age,
            sex,
            spacing,
            split,
        )

    return [
        record("00000001_000.png", "1", 0.0, 58.0, "M", 0.143),
        record("00000001_001.png", "1", 0.0, 58.0, "M", 0.143),
        record("00000001_002.png", "1", 24.0, 60.0, "M", 0.168),
        record("00000002_000.png", "2", 0.0, 81.0, "F", 0.171),
        record("00000003_001.png", "3", 24.0, 76.0, "F", 0.168),
        record("00000003_000.png", "3", 0.0, 74.0, "F", 0.143),
        record("00000003_002.png", "3", -12.0, 73.0, "F", 0.139),
    ]


def _images_in(root: Path) -> dict[str, Path]:
    return {path.name: path for path in root.rglob("*.png")}


def test_chestxray14_reads_the_release_layout(tmp_path: Path) -> None:
    root = _cxr_root(tmp_path / "nih")
    records = read_chestxray14(root)
    assert records == _expected_cxr(_images_in(root))
    assert {r.path.parent.parent.name for r in records} == {"images_001", "images_002"}


def test_chestxray14_accepts_the_trailing_empty_column(tmp_path: Path) -> None:
    root = _cxr_root(tmp_path, rows=tuple(r + "," for r in CXR_ROWS), header=CXR_HEADER + ",")
    assert read_chestxray14(root) == _expected_cxr(_images_in(root))


def test_chestxray14_header_may_be_quoted(tmp_path: Path) -> None:
    root = _cxr_root(tmp_path, header='"' + CXR_HEADER.replace(",", '","') + '"')
    assert read_chestxray14(root) == _expected_cxr(_images_in(root))


def test_chestxray14_reads_images_from_one_folder(tmp_path: Path) -> None:
    root = _cxr_root(tmp_path / "flat", folders=("images",))
    assert read_chestxray14(root) == _expected_cxr(_images_in(root))
    root = _cxr_root(tmp_path / "custom", folders=("pngs",))
    assert read_chestxray14(root, images_dir="pngs") == _expected_cxr(_images_in(root))


def test_chestxray14_accepts_ages_written_with_a_unit(tmp_path: Path) -> None:
    rows = ("00000001_000.png,No Finding,0,1,058Y,M,PA,2682,2749,0.143,0.143",)
    (record,) = read_chestxray14(_cxr_root(tmp_path, rows=rows))
    assert record.age == 58.0


def test_chestxray14_missing_images(tmp_path: Path) -> None:
    root = _cxr_root(tmp_path)
    next(root.rglob("00000002_000.png")).unlink()
    with pytest.raises(CohortFormatError, match=r"1 of 7 images are missing") as caught:
        read_chestxray14(root)
    assert (caught.value.line, caught.value.column) == (5, "Image Index")

    images = _images_in(root) | {"00000002_000.png": root / "images" / "00000002_000.png"}
    assert read_chestxray14(root, require_files=False) == _expected_cxr(images)


def _replace_row(index: int, new: str) -> tuple[str, ...]:
    rows = list(CXR_ROWS)
    rows[index] = new
    return tuple(rows)


@pytest.mark.parametrize(
    ("rows", "header", "line", "column", "message"),
    [
        (CXR_ROWS, CXR_HEADER.replace("Gender", "Sex"), 1, None, "header is not the NIH one"),
        (
            _replace_row(2, "00000001_002.png,Effusion,2,1,60,M,PA,2500,2048,0.168"),
            CXR_HEADER,
            4,
            None,
            "10 cells",
        ),
        (
            _replace_row(1, "00000001_001.png,Emphysema,one,1,58,M,PA,2894,2729,0.143,0.143"),
            CXR_HEADER,
            3,
            "Follow-up #",
            "not a number: 'one'",
        ),
        (
            _replace_row(3, "00000002_000.png,No Finding,0,2,81.5,F,PA,2500,2048,0.171,0.171"),
            CXR_HEADER,
            5,
            "Patient Age",
            "not an age in whole years: '81.5'",
        ),
        (
            _replace_row(3, "00000002_000.png,No Finding,0,2,81,X,PA,2500,2048,0.171,0.171"),
            CXR_HEADER,
            5,
            "Patient Gender",
            "'X' is not one of",
        ),
        (
            _replace_row(3, "00000002_000.png,No Finding,0,2,81,F,PA,2500,2048,abc,0.171"),
            CXR_HEADER,
            5,
            "OriginalImagePixelSpacing[x",
            "not a number: 'abc'",
        ),
        (
            _replace_row(3, "00000002_000.png,No Finding,0,,81,F,PA,2500,2048,0.171,0.171"),
            CXR_HEADER,
            5,
            "Patient ID",
            "a value is required",
        ),
        (
            (*CXR_ROWS, "00000001_001.png,Emphysema,1,1,58,M,PA,2894,2729,0.143,0.143"),
            CXR_HEADER,
            9,
            "Image Index",
            "same image as line 3",
        ),
    ],
)
def test_chestxray14_entry_errors_say_where(
    tmp_path: Path,
    rows: tuple[str, ...],
    header: str,
    line: int,
    column: str | None,
    message: str,
) -> None:
    root = _cxr_root(tmp_path, rows=rows, header=header)
    with pytest.raises(CohortFormatError, match="Data_Entry_2017.csv") as caught:
        read_chestxray14(root)
    assert (caught.value.line, caught.value.column) == (line, column)
    assert message in str(caught.value)


def test_chestxray14_needs_the_entries_and_both_split_lists(tmp_path: Path) -> None:
    for name in ("Data_Entry_2017.csv", "train_val_list.txt", "test_list.txt"):
        root = _cxr_root(tmp_path / name)
        (root / name).unlink()
        with pytest.raises(CohortFormatError, match="file not found") as caught:
            read_chestxray14(root)
        assert caught.value.file == root / name


def test_chestxray14_refuses_an_image_in_both_splits(tmp_path: Path) -> None:
    root = _cxr_root(tmp_path)
    with (root / "test_list.txt").open("a", encoding="utf-8") as listing:
        listing.write("00000001_002.png\n")
    with pytest.raises(CohortFormatError, match="also in train_val_list.txt") as caught:
        read_chestxray14(root)
    assert (caught.value.file, caught.value.line) == (root / "test_list.txt", 3)


def test_chestxray14_refuses_one_image_name_in_two_folders(tmp_path: Path) -> None:
    root = _cxr_root(tmp_path)
    _png(root / "images_003" / "images" / "00000002_000.png")
    with pytest.raises(CohortFormatError, match="the same image name is also at"):
        read_chestxray14(root)
