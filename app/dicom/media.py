"""Radiographs from removable media and folders: the objects a CD or DVD's DICOMDIR indexes, or
every file of a folder tree whatever its name, each through `receive` into the gallery (people by
PatientID under an issuer). A rerun is cheap and adds only what is missing: `receive` recognises a
stored object by its header and hash before anything is decoded.

Nothing outside the media root is read: a DICOMDIR record whose file ID climbs out of the root, or
reaches a file outside it through a symbolic link, is refused on its own; a folder walk does not
follow symbolic links. The DICOMDIR's record sequence is read with pydicom directly rather than
through `pydicom.fileset.FileSet`, which gives up on the whole disc at one such record, leaves out
missing files without saying which, and makes a staging directory in TMPDIR."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import MediaStorageDirectoryStorage
from sqlalchemy import func, select
from tqdm import tqdm

from app.core.metrics import Metrics
from app.dicom.arrival import Arrival, Destination
from app.dicom.intake import receive
from app.dicom.objects import OUT_OF_RESOURCES, Refused
from app.serving.matcher import Matcher
from app.storage.records import Records
from app.storage.tables import Image

VIA_DICOMDIR = "dicomdir"
VIA_FOLDER = "dicom-folder"
# PS3.10 names the index of a file-set DICOMDIR; a CD mounted without Rock Ridge shows it in lower
# case, or with the ISO 9660 version suffix.
DICOMDIR_NAMES = ("DICOMDIR", "DICOMDIR.", "DICOMDIR;1")
# The images table's filename column.
FILENAME_CHARS = 255
PREAMBLE_BYTES = 128
NOT_DICOM = "not DICOM: no DICM prefix, and it does not parse as a DICOM dataset"


class MediaError(Exception):
    """The media cannot be read at all: no DICOMDIR, or one that is not a readable index."""


@dataclass(frozen=True)
class MediaFile:
    """One file the media lists. `name` is its path relative to the media root, printable;
    `refused` or `skipped` says why it is not read (a DICOMDIR record that escapes the root, a
    missing file; a symbolic link, the DICOMDIR itself)."""

    name: str
    path: Path | None
    refused: str | None = None
    skipped: str | None = None


@dataclass(frozen=True)
class Media:
    root: Path
    via: str  # VIA_DICOMDIR or VIA_FOLDER
    files: tuple[MediaFile, ...]


@dataclass
class MediaSummary:
    """What a run did. `stopped` is set when a refusal the sender cannot fix (no active model, a
    full disk) ended it early: running it again later resumes."""

    people_added: int = 0
    images_added: int = 0
    already_stored: int = 0
    refused: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    stopped: str | None = None


# --- listing -------------------------------------------------------------------------------------


def dicomdir_media(path: Path) -> Media:
    """The files a DICOMDIR (or the folder holding one) references, in its record order."""
    dicomdir = _find_dicomdir(Path(path))
    root = dicomdir.parent.resolve()
    try:
        index = pydicom.dcmread(dicomdir, force=False)
        is_dicomdir = index.file_meta.get("MediaStorageSOPClassUID") == MediaStorageDirectoryStorage
        records = list(index.get("DirectoryRecordSequence") or []) if is_dicomdir else []
    except Exception as error:  # pydicom reports a damaged file in many ways
        raise MediaError(f"{dicomdir} is not a readable DICOMDIR: {error}") from None
    if not is_dicomdir:
        raise MediaError(f"{dicomdir} is not a DICOMDIR (Media Storage Directory Storage)")
    files: dict[str, MediaFile] = {}
    listings: dict[Path, list[Path]] = {}
    for record in records:
        components = _file_id(record)
        if components is None:
            continue
        name = _printable("/".join(components))
        if name not in files:
            files[name] = _referenced_file(root, components, name, listings)
    return Media(root=root, via=VIA_DICOMDIR, files=tuple(files.values()))


def folder_media(path: Path) -> Media:
    """Every file under the folder, in sorted order, without following symbolic links."""
    root = Path(path).resolve()
    if not root.is_dir():
        raise MediaError(f"{path} is not a folder")
    return Media(root=root, via=VIA_FOLDER, files=tuple(_walk(root)))


def _find_dicomdir(path: Path) -> Path:
    if path.is_file():
        return path
    if path.is_dir():
        for entry in sorted(path.iterdir()):
            if entry.name.upper() in DICOMDIR_NAMES and entry.is_file():
                return entry
        raise MediaError(f"{path} holds no DICOMDIR; use --dicom-folder for a folder of files")
    raise MediaError(f"{path} does not exist")


def _file_id(record: Dataset) -> list[str] | None:
    """The record's Referenced File ID as path components, or None for a record that references
    no file (patient, study, series) or that a writer marked unused."""
    # (0004,1410), retired: older writers marked a deleted record 0x0000 instead of removing it.
    if record.get("RecordInUseFlag") == 0:
        return None
    value = record.get("ReferencedFileID")
    if not value:
        return None
    parts = [value] if isinstance(value, str) else list(value)
    return [str(part).strip() for part in parts]


def _referenced_file(
    root: Path, components: list[str], name: str, listings: dict[Path, list[Path]]
) -> MediaFile:
    if any(part in ("", ".", "..") or "/" in part or "\0" in part for part in components):
        return MediaFile(name, None, refused="the DICOMDIR record points outside the media root")
    found = _locate(root, components, listings)
    if found is None:
        return MediaFile(name, None, refused="listed in the DICOMDIR, but not on the media")
    real = found.resolve()
    if not real.is_relative_to(root):
        return MediaFile(
            name, None, refused="the DICOMDIR record points outside the media root (a link)"
        )
    return MediaFile(name, real)


def _locate(root: Path, components: list[str], listings: dict[Path, list[Path]]) -> Path | None:
    """The file a File ID names, matching each component as written or as a CD mounted without
    Rock Ridge shows it (lower case, or with the ISO 9660 ";1" version). `listings` keeps the
    folders listed so far, so that a disc of thousands of files is listed once."""
    current = root
    for part in components:
        exact = current / part
        if exact.exists():
            current = exact
            continue
        if current not in listings:
            try:
                listings[current] = sorted(current.iterdir()) if current.is_dir() else []
            except OSError:
                listings[current] = []
        wanted = part.upper()
        match = next((e for e in listings[current] if _iso_name(e.name) == wanted), None)
        if match is None:
            return None
        current = match
    return current if current.is_file() else None


def _iso_name(name: str) -> str:
    return name.split(";")[0].rstrip(".").upper()


def _walk(root: Path) -> Iterator[MediaFile]:
    # Folders that cannot be listed, reported where the walk comes across them.
    unreadable: list[MediaFile] = []

    def note(error: OSError) -> None:
        where = Path(error.filename or root)
        name = _printable(where.relative_to(root).as_posix()) if where != root else "."
        unreadable.append(MediaFile(name, None, refused=f"cannot be read: {error.strerror}"))

    for folder, subfolders, filenames in os.walk(root, onerror=note, followlinks=False):
        subfolders.sort()
        here = Path(folder)
        for sub in subfolders:
            if (here / sub).is_symlink():
                yield _listed(root, here / sub)
        for filename in sorted(filenames):
            yield _listed(root, here / filename)
        yield from unreadable
        unreadable.clear()
    yield from unreadable


def _listed(root: Path, path: Path) -> MediaFile:
    name = _printable(path.relative_to(root).as_posix())
    try:
        mode = path.lstat().st_mode
    except OSError as error:
        return MediaFile(name, None, refused=f"cannot be read: {error.strerror}")
    if stat.S_ISLNK(mode):
        return MediaFile(name, None, skipped="a symbolic link, not followed")
    if not stat.S_ISREG(mode):
        return MediaFile(name, None, skipped="not a regular file (a pipe, socket or device)")
    if path.name.upper() in DICOMDIR_NAMES:
        return MediaFile(name, None, skipped="the media's index (DICOMDIR), not an object")
    return MediaFile(name, path)


def _printable(name: str) -> str:
    """A name for the summary and the image row: undecodable bytes and control characters
    replaced, so that every listed file is one line and any database can store it."""
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return "".join(c if c.isprintable() else "\ufffd" for c in text)


# --- ingest --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Run:
    records: Records
    matcher: Matcher
    metrics: Metrics
    destination: Destination
    arrival: Arrival
    max_bytes: int
    sniff: bool  # a folder holds any files: read as DICOM only what looks like DICOM


def ingest_media(
    *,
    records: Records,
    matcher: Matcher,
    metrics: Metrics,
    media: Media,
    issuer: str,
    max_bytes: int,
    by: dict[str, str] | None = None,
    progress: bool = True,
) -> MediaSummary:
    """Each of the media's files into the gallery, in order; files over `max_bytes` are refused
    unread. People added are those whose first image this run added (also where an interrupted
    run created their row). `by`: who, from the command line."""
    matcher.require_serving()  # before the first file can create its person
    with records.sessions() as session:
        newest_before = session.scalar(select(func.max(Image.id))) or 0
    run = _Run(
        records=records,
        matcher=matcher,
        metrics=metrics,
        destination=Destination(issuer=issuer),
        arrival=Arrival(media.via, str(media.root), by=by),
        max_bytes=max_bytes,
        sniff=media.via == VIA_FOLDER,
    )
    summary = MediaSummary()
    new_people: set[int] = set()
    for file in tqdm(media.files, desc="ingest", unit="file", disable=None if progress else True):
        person_id = _take(run, file, summary)
        if person_id is not None:
            new_people.add(person_id)
        if summary.stopped is not None:
            break
    with records.sessions() as session:
        first_seen = session.scalars(
            select(Image.person_id)
            .where(Image.person_id.in_(select(Image.person_id).where(Image.id > newest_before)))
            .group_by(Image.person_id)
            .having(func.min(Image.id) > newest_before)
        )
        summary.people_added = len(new_people.intersection(first_seen))
    return summary


def _take(run: _Run, file: MediaFile, summary: MediaSummary) -> int | None:
    """One file into the gallery, noted in the summary; the person of an image it added."""
    if file.path is None:
        if file.refused is not None:
            summary.refused.append((file.name, file.refused))
        else:
            summary.skipped.append((file.name, file.skipped))
        return None
    try:
        size = file.path.stat().st_size
        data = file.path.read_bytes() if size <= run.max_bytes else None
    except OSError as error:
        summary.refused.append((file.name, f"cannot be read: {error.strerror or error}"))
        return None
    if data is None:
        limit = f"the limit of {run.max_bytes:,} bytes (RADMATCH_MAX_UPLOAD_BYTES)"
        summary.refused.append((file.name, f"{size:,} bytes, over {limit}"))
        return None
    if run.sniff and not _is_dicom(data):
        summary.skipped.append((file.name, NOT_DICOM))
        return None
    try:
        received = receive(
            records=run.records,
            matcher=run.matcher,
            metrics=run.metrics,
            data=data,
            destination=run.destination,
            arrival=run.arrival,
            filename=file.name[-FILENAME_CHARS:],
        )
    except Refused as refusal:
        if refusal.status == OUT_OF_RESOURCES:
            summary.stopped = f"{file.name}: {refusal.reason}"
        else:
            summary.refused.append((file.name, refusal.reason))
        return None
    if not received.stored:
        summary.already_stored += 1
        return None
    summary.images_added += 1
    return received.person_id


def _is_dicom(data: bytes) -> bool:
    """A DICOM file by its "DICM" prefix, or a dataset without one (older media) by a parse that
    finds a SOP class in it."""
    if data[PREAMBLE_BYTES : PREAMBLE_BYTES + 4] == b"DICM":
        return True
    try:
        dataset = pydicom.dcmread(BytesIO(data), force=True, stop_before_pixels=True)
    except Exception:  # whatever the bytes are, they are not a dataset pydicom can read
        return False
    return "SOPClassUID" in dataset
