"""Readers of the cohorts a user brings (README.md, "Real cohorts") into `ImageRecord` lists.

Both readers are strict: a misread row silently changes who counts as the same person, or the time
since baseline, which is what the evaluation measures. Every error names the file, the line and
the column, so that a user with a 100,000-row file can fix it.
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
from collections.abc import Iterable
from pathlib import Path

from training.records import ImageRecord

_KNEE_REQUIRED = ("person_id", "side", "visit_months", "path", "kl_grade", "age", "sex")
_KNEE_COLUMNS = (
    "person_id",
    "side",
    "visit_months",
    "path",
    "dicom_path",
    "kl_grade",
    "age",
    "sex",
    "pixel_spacing_mm",
)
_SIDES = {"l": "L", "left": "L", "r": "R", "right": "R"}
_SEXES = {"m": "M", "male": "M", "1": "M", "f": "F", "female": "F", "2": "F"}  # OAI: 1=M, 2=F
_SPLITS = ("train", "test")

# The NIH header as csv cells: "OriginalImage[Width,Height]" is unquoted in the real file, so the
# comma splits it into two cells, and likewise the pixel spacing.
_CXR_HEADER = (
    "Image Index",
    "Finding Labels",
    "Follow-up #",
    "Patient ID",
    "Patient Age",
    "Patient Gender",
    "View Position",
    "OriginalImage[Width",
    "Height]",
    "OriginalImagePixelSpacing[x",
    "y]",
)
CHESTXRAY14_INDEX = "Data_Entry_2017.csv"
_CXR_SPLIT_LISTS = {"train": "train_val_list.txt", "test": "test_list.txt"}


class CohortFormatError(ValueError):
    """A cohort file that cannot be read as it stands, located as precisely as we can."""

    def __init__(
        self, file: Path, message: str, line: int | None = None, column: str | None = None
    ) -> None:
        where = str(file)
        if line is not None:
            where += f", line {line}"
        if column is not None:
            where += f", column {column!r}"
        super().__init__(f"{where}: {message}")
        self.file, self.line, self.column = file, line, column


class _Row:
    """One csv row by column name, parsing cells into errors that say where they are."""

    def __init__(self, file: Path, line: int, cells: dict[str, str]) -> None:
        self.file, self.line = file, line
        self.cells = {name: value.strip() for name, value in cells.items()}

    def error(self, column: str, message: str) -> CohortFormatError:
        return CohortFormatError(self.file, message, self.line, column)

    def text(self, column: str) -> str:
        """The stripped cell; "" for an optional column the file does not have."""
        return self.cells.get(column, "")

    def required(self, column: str) -> str:
        value = self.text(column)
        if not value:
            raise self.error(column, "empty, but a value is required")
        return value

    def number(self, column: str, required: bool = False) -> float | None:
        value = self.required(column) if required else self.text(column)
        if not value:
            return None
        try:
            number = float(value)
        except ValueError:
            raise self.error(column, f"not a number: {value!r}") from None
        if not math.isfinite(number):
            raise self.error(column, f"not a finite number: {value!r}")
        return number

    def integer(self, column: str) -> int | None:
        """Also accepts "2.0": tools that store a column with gaps as floats write that."""
        number = self.number(column)
        if number is None:
            return None
        if not number.is_integer():
            raise self.error(column, f"not a whole number: {self.text(column)!r}")
        return int(number)

    def choice(self, column: str, choices: dict[str, str], required: bool = False) -> str | None:
        value = self.required(column) if required else self.text(column)
        if not value:
            return None
        if value.lower() not in choices:
            raise self.error(column, f"{value!r} is not one of {sorted(set(choices))}")
        return choices[value.lower()]


def _absolute(path: Path) -> Path:
    """Absolute and without ".." parts, so the same file always gives the same record path."""
    return Path(os.path.normpath(path.absolute()))


def _csv_rows(file: Path) -> list[tuple[int, list[str]]]:
    """(line number, cells) of every csv row, the header included; blank rows skipped."""
    with file.open(newline="", encoding="utf-8-sig") as stream:
        reader = csv.reader(stream)
        return [(reader.line_num, cells) for cells in reader if any(c.strip() for c in cells)]


# --- knee (OAI-style manifest) -------------------------------------------------------------------


def read_cohort(cohort: Path) -> tuple[list[ImageRecord], str]:
    """A knee manifest file or the folder of a ChestX-ray14 release: its records, and the sha256
    of the file that lists them (what a checkpoint cites as its data)."""
    if cohort.is_dir():
        index, records = cohort / CHESTXRAY14_INDEX, read_chestxray14(cohort)
    else:
        index, records = cohort, read_knee_manifest(cohort)
    return records, hashlib.sha256(index.read_bytes()).hexdigest()


def read_knee_manifest(path: Path) -> list[ImageRecord]:
    """Read an OAI-style manifest: one row per image, image paths relative to its folder.

    Required columns: person_id, side, visit_months, path, kl_grade, age, sex (kl_grade, age and
    sex may be empty cells); optional: dicom_path, pixel_spacing_mm, split. Other columns are
    ignored. Every image (and DICOM twin) must exist, and no image may appear twice: a duplicated
    image would be its own perfect match in evaluation.
    """
    path = Path(path)
    folder = _absolute(path.parent)
    (header_line, header), *rows = _csv_rows(path) or [(1, [])]
    header = [name.strip() for name in header]
    _check_knee_header(path, header_line, header)

    records: list[ImageRecord] = []
    line_of_image: dict[Path, int] = {}
    for line, cells in rows:
        if len(cells) != len(header):
            raise CohortFormatError(
                path, f"{len(cells)} cells, but the header has {len(header)} columns", line
            )
        row = _Row(path, line, dict(zip(header, cells, strict=True)))
        record = _knee_record(row, folder)
        if record.path in line_of_image:
            raise row.error("path", f"same image as line {line_of_image[record.path]}")
        line_of_image[record.path] = line
        records.append(record)
    return records


def _check_knee_header(path: Path, line: int, header: list[str]) -> None:
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise CohortFormatError(path, f"repeated columns {repeated}", line)
    missing = [name for name in _KNEE_REQUIRED if name not in header]
    if missing:
        raise CohortFormatError(path, f"missing required columns {missing}", line)


def _knee_record(row: _Row, folder: Path) -> ImageRecord:
    dicom = row.text("dicom_path")
    return ImageRecord(
        person_id=row.required("person_id"),
        visit_months=row.number("visit_months", required=True),
        path=_existing_file(row, "path", folder / row.required("path")),
        body_part="KNEE",
        side=row.choice("side", _SIDES, required=True),
        dicom_path=_existing_file(row, "dicom_path", folder / dicom) if dicom else None,
        kl_grade=row.integer("kl_grade"),
        age=row.number("age"),
        sex=row.choice("sex", _SEXES),
        pixel_spacing_mm=row.number("pixel_spacing_mm"),
        split=row.choice("split", {split: split for split in _SPLITS}),
    )


def _existing_file(row: _Row, column: str, path: Path) -> Path:
    path = _absolute(path)  # an absolute cell stays as it is: joining drops the folder
    if not path.is_file():
        raise row.error(column, f"file not found: {path}")
    return path


def write_knee_manifest(records: Iterable[ImageRecord], path: Path) -> None:
    """Write knee records in the format `read_knee_manifest` reads back to equal records.

    Columns: person_id, side, visit_months, path, dicom_path, kl_grade, age, sex,
    pixel_spacing_mm, then split only if some record has one (so that it survives the round
    trip); None is an empty cell, paths are relative to the manifest's folder and numbers are
    written in full precision. Refuses records whose body part, side, sex or split the reader
    would not read back.
    """
    path = Path(path)
    folder = _absolute(path.parent)
    records = list(records)
    for record in records:
        _check_writable(record)
    columns = _KNEE_COLUMNS + (("split",) if any(r.split for r in records) else ())
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(columns)
        for record in records:
            writer.writerow(_knee_cells(record, folder)[: len(columns)])


def _check_writable(record: ImageRecord) -> None:
    problems = [
        f"{field}={value!r}"
        for field, value, allowed in (
            ("body_part", record.body_part, ("KNEE",)),
            ("side", record.side, ("L", "R")),
            ("sex", record.sex, ("M", "F", None)),
            ("split", record.split, (*_SPLITS, None)),
        )
        if value not in allowed
    ]
    if problems:
        raise ValueError(f"cannot write a knee manifest row for {record.path}: {problems}")


def _knee_cells(record: ImageRecord, folder: Path) -> list[str]:
    def relative(path: Path | None) -> str:
        return "" if path is None else Path(os.path.relpath(path, folder)).as_posix()

    def number(value: float | None) -> str:
        return "" if value is None else repr(float(value))  # repr: the shortest exact form

    return [
        record.person_id,
        record.side or "",
        number(record.visit_months),
        relative(record.path),
        relative(record.dicom_path),
        "" if record.kl_grade is None else str(record.kl_grade),
        number(record.age),
        record.sex or "",
        number(record.pixel_spacing_mm),
        record.split or "",
    ]


# --- chest (NIH ChestX-ray14) --------------------------------------------------------------------


def read_chestxray14(
    root: Path, images_dir: str = "images", require_files: bool = True
) -> list[ImageRecord]:
    """Read the NIH ChestX-ray14 release at root: Data_Entry_2017.csv and the two split lists.

    Images are looked up in root/images_dir and in every root/images*/images folder (the release
    unpacks into images_001/images ... images_012/images). With require_files=False an image that
    is not found gets the path root/images_dir/<Image Index>.

    The release has no study dates, only each image's Follow-up # and the patient's age in whole
    years, so visit_months = (age - age at the patient's lowest Follow-up #) * 12: the time since
    baseline that the evaluation groups by, at a resolution of a year, and negative where the
    recorded ages run against the follow-up order.
    """
    root = _absolute(Path(root))
    entries = root / CHESTXRAY14_INDEX
    splits = _read_split_lists(root)
    images = _find_images(root, images_dir)
    rows = _read_cxr_rows(entries)

    first_visit: dict[str, _Row] = {}
    for row in rows:
        patient = row.required("Patient ID")
        if patient not in first_visit or _follow_up(row) < _follow_up(first_visit[patient]):
            first_visit[patient] = row

    records = [_cxr_record(row, first_visit, splits, images, root / images_dir) for row in rows]
    missing = [row for row in rows if row.required("Image Index") not in images]
    if missing and require_files:
        raise missing[0].error(
            "Image Index",
            f"image not found under {root / images_dir} or {root}/images*/images "
            f"({len(missing)} of {len(rows)} images are missing)",
        )
    return records


def _read_cxr_rows(entries: Path) -> list[_Row]:
    """The data rows of Data_Entry_2017.csv, checking the header and refusing repeated images."""
    if not entries.is_file():
        raise CohortFormatError(entries, "file not found")
    (header_line, header), *rows = _csv_rows(entries) or [(1, [])]
    if tuple(_without_trailing_empty(header)) != _CXR_HEADER:
        raise CohortFormatError(
            entries, f"header is not the NIH one, expected {','.join(_CXR_HEADER)}", header_line
        )
    result: list[_Row] = []
    line_of_image: dict[str, int] = {}
    for line, cells in rows:
        cells = _without_trailing_empty(cells)
        if len(cells) != len(_CXR_HEADER):
            raise CohortFormatError(
                entries, f"{len(cells)} cells, the NIH format has {len(_CXR_HEADER)}", line
            )
        row = _Row(entries, line, dict(zip(_CXR_HEADER, cells, strict=True)))
        image = row.required("Image Index")
        if image in line_of_image:
            raise row.error("Image Index", f"same image as line {line_of_image[image]}")
        line_of_image[image] = line
        result.append(row)
    return result


def _without_trailing_empty(cells: list[str]) -> list[str]:
    """Drops the empty cells after the 11th: the real file ends every line with a comma."""
    cells = [cell.strip() for cell in cells]
    while len(cells) > len(_CXR_HEADER) and not cells[-1]:
        cells.pop()
    return cells


def _follow_up(row: _Row) -> int:
    follow_up = row.integer("Follow-up #")
    if follow_up is None:
        raise row.error("Follow-up #", "empty, but a value is required")
    return follow_up


def _patient_age(row: _Row) -> float:
    """Whole years; early releases wrote them as "058Y", which is accepted too."""
    text = row.required("Patient Age")
    years = text[:-1] if text[-1] in "Yy" else text
    if not (years.isascii() and years.isdigit()):
        raise row.error("Patient Age", f"not an age in whole years: {text!r}")
    return float(years)


def _cxr_record(
    row: _Row,
    first_visit: dict[str, _Row],
    splits: dict[str, str],
    images: dict[str, Path],
    default_folder: Path,
) -> ImageRecord:
    image = row.required("Image Index")
    patient = row.required("Patient ID")
    baseline_age = _patient_age(first_visit[patient])
    age = _patient_age(row)
    return ImageRecord(
        person_id=f"CXR-{patient}",
        visit_months=(age - baseline_age) * 12,
        path=images.get(image, default_folder / image),
        body_part="CHEST",
        age=age,
        sex=row.choice("Patient Gender", {"m": "M", "f": "F"}, required=True),
        pixel_spacing_mm=row.number("OriginalImagePixelSpacing[x"),
        split=splits.get(image),
    )


def _read_split_lists(root: Path) -> dict[str, str]:
    """Image name -> "train" or "test", from train_val_list.txt and test_list.txt."""
    split_of: dict[str, str] = {}
    for split, name in _CXR_SPLIT_LISTS.items():
        listing = root / name
        if not listing.is_file():
            raise CohortFormatError(listing, "file not found")
        for line, text in enumerate(listing.read_text(encoding="utf-8").splitlines(), start=1):
            image = text.strip()
            if image in split_of and split_of[image] != split:
                raise CohortFormatError(
                    listing, f"{image} is also in {_CXR_SPLIT_LISTS[split_of[image]]}", line
                )
            if image:
                split_of[image] = split
    return split_of


def _find_images(root: Path, images_dir: str) -> dict[str, Path]:
    """File name -> path for every file in the image folders, listed once up front."""
    folders = dict.fromkeys([root / images_dir, *sorted(root.glob("images*/images"))])
    found: dict[str, Path] = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        for entry in os.scandir(folder):
            if not entry.is_file():
                continue
            if entry.name in found:
                raise CohortFormatError(
                    Path(entry.path), f"the same image name is also at {found[entry.name]}"
                )
            found[entry.name] = Path(entry.path)
    return found
