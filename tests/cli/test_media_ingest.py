"""`radmatch ingest --dicomdir` and `--dicom-folder`: a hospital's CD and a folder tree of DICOM
files into the gallery, run as an admin runs it (a subprocess on a migrated database), and what it
refuses, skips and leaves behind."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from sqlalchemy import create_engine, func, select

from app.dicom.media import NOT_DICOM, dicomdir_media, folder_media
from app.storage.database import upgrade
from app.storage.tables import Image, Person
from tests.support.dicom_peers import dcmmkdir, write_media
from tests.support.images import ct_image, keyed_pixels, phantom_dicom, structured_report
from tests.support.servers import REPO, service_env

SIDE = 96


@dataclass(frozen=True)
class Radiograph:
    person: str  # PatientID
    acquired: date
    side: str
    issuer: str | None = None  # IssuerOfPatientID, where the file names one
    study_date_only: bool = False  # no AcquisitionDate or ContentDate: dated by its StudyDate

    @property
    def key(self) -> str:
        return f"{self.person}-{self.acquired.isoformat()}-{self.side}"

    def data(self) -> bytes:
        pixels = keyed_pixels(self.key, (SIDE, SIDE), 65536)
        raw = phantom_dicom(
            pixels, self.person, acquired=self.acquired, side=self.side, uid_key=self.key
        )
        if self.issuer is None and not self.study_date_only:
            return raw
        ds = pydicom.dcmread(BytesIO(raw))
        if self.issuer is not None:
            ds.IssuerOfPatientID = self.issuer
        if self.study_date_only:
            del ds.AcquisitionDate, ds.ContentDate
        out = BytesIO()
        ds.save_as(out, enforce_file_format=True)
        return out.getvalue()

    def external_ref(self, issuer: str) -> str:
        return f"{self.issuer or issuer}:{self.person}"


# Three people, two visits each, on distinct dates and sides; one of them registered by another
# hospital, and one image dated only by its study.
VISITS = (
    Radiograph("P1", date(2018, 3, 1), "R"),
    Radiograph("P1", date(2020, 6, 15), "L"),
    Radiograph("P2", date(2019, 1, 10), "L"),
    Radiograph("P2", date(2021, 11, 2), "L", study_date_only=True),
    Radiograph("P3", date(2017, 5, 20), "R", issuer="HOSPITAL_B"),
    Radiograph("P3", date(2022, 2, 28), "R", issuer="HOSPITAL_B"),
)
ISSUER = "CD_CLINIC"


@dataclass
class Admin:
    """Runs `radmatch` as an admin would, with a data directory of its own, from a working
    directory, home and temporary directory that are empty, to see nothing is written there."""

    env: dict[str, str]
    data_dir: Path
    database_url: str
    elsewhere: tuple[Path, ...]

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "cli", *args]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args),
            env=self.env,
            cwd=self.elsewhere[0],
            capture_output=True,
            text=True,
            timeout=600,
        )

    def gallery(self) -> dict[str, set[tuple[date, str, str]]]:
        """Each person's images: (acquisition date, side, filename)."""
        engine = create_engine(self.database_url)
        with engine.connect() as connection:
            rows = connection.execute(
                select(Person.external_ref, Image.acquisition_date, Image.side, Image.filename)
                .join(Image, Image.person_id == Person.id)
                .where(Image.deleted_at.is_(None))
            ).all()
        engine.dispose()
        people: dict[str, set[tuple[date, str, str]]] = {}
        for ref, acquired, side, filename in rows:
            people.setdefault(ref, set()).add((acquired, side, filename))
        return people

    def written_elsewhere(self) -> list[Path]:
        return [path for folder in self.elsewhere for path in folder.rglob("*")]


@pytest.fixture
def admin(tmp_path, database_url, checkpoint) -> Admin:
    upgrade(database_url)
    elsewhere = tuple(tmp_path / name for name in ("cwd", "home", "tmp"))
    for folder in elsewhere:
        folder.mkdir()
    env = service_env(tmp_path / "data", database_url, checkpoint)
    env.update(
        HOME=str(elsewhere[1]),
        TMPDIR=str(elsewhere[2]),
        PYTHONPATH=str(REPO),
        RADMATCH_DICOM_ISSUER="NOT_THIS_ONE",
    )
    for variable in ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "TORCH_HOME", "MPLCONFIGDIR"):
        env.pop(variable, None)
    return Admin(env, tmp_path / "data", database_url, elsewhere)


def expected_gallery(names: list[str]) -> dict[str, set[tuple[date, str, str]]]:
    people: dict[str, set[tuple[date, str, str]]] = {}
    for visit, name in zip(VISITS, names, strict=True):
        people.setdefault(visit.external_ref(ISSUER), set()).add((visit.acquired, visit.side, name))
    return people


def write_cd(root: Path) -> list[Path]:
    """A CD as a hospital burns it: upper-case 8.3 names, a DICOMDIR written by dcmtk, the six
    radiographs, then a CT slice and a report, and a text file the DICOMDIR does not list."""
    objects = [visit.data() for visit in VISITS] + [ct_image("P1"), structured_report("P2")]
    files = write_media(root, objects)
    made = dcmmkdir(root, files)
    assert made.returncode == 0, made.stderr
    (root / "README.TXT").write_text("Open the viewer on this disc to see the images.\n")
    return files


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_a_cd_is_imported_by_its_dicomdir_once(admin, tmp_path):
    cd = tmp_path / "cd"
    files = write_cd(cd)
    names = [path.relative_to(cd).as_posix() for path in files]

    first = admin.run("ingest", "--dicomdir", str(cd), "--issuer", ISSUER)

    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0] == (
        "3 people and 6 images added; 0 images were already stored; 2 files refused, 0 skipped"
    )
    assert lines[1] == "refused:"
    assert lines[2].startswith(f"  {names[6]}: CT Image Storage (modality CT) is not a projection")
    assert lines[3].startswith(f"  {names[7]}: Basic Text SR Storage (modality SR) is not a")
    assert lines[4] == "completed: all 8 files read (the files listed above are left out)"
    assert admin.gallery() == expected_gallery(names[:6])

    again = admin.run("ingest", "--dicomdir", str(cd / "DICOMDIR"), "--issuer", ISSUER)

    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[0] == (
        "0 people and 0 images added; 6 images were already stored; 2 files refused, 0 skipped"
    )
    assert admin.gallery() == expected_gallery(names[:6])
    assert admin.written_elsewhere() == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_full_store_stops_the_run_and_a_rerun_resumes(admin, tmp_path):
    """A refusal the admin can resolve (here a store that cannot take files) ends the run with
    the reason and a non-zero status; the same command then completes it."""
    cd = tmp_path / "cd"
    files = write_cd(cd)
    admin.data_dir.mkdir()
    (admin.data_dir / "originals").write_text("in the way of the store")

    stopped = admin.run("ingest", "--dicomdir", str(cd), "--issuer", ISSUER)

    assert stopped.returncode == 1
    first = files[0].relative_to(cd).as_posix()
    assert f"radmatch ingest: stopped at {first}: the original could not be stored" in (
        stopped.stderr
    )
    assert "it resumes where it stopped" in stopped.stderr
    assert stopped.stdout.splitlines()[0].startswith("0 people and 0 images added;")
    assert admin.gallery() == {}

    (admin.data_dir / "originals").unlink()
    resumed = admin.run("ingest", "--dicomdir", str(cd), "--issuer", ISSUER)

    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.splitlines()[0] == (
        "3 people and 6 images added; 0 images were already stored; 2 files refused, 0 skipped"
    )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_folder_tree_with_any_names_gives_the_same_people(admin, tmp_path):
    folder = tmp_path / "export"
    names = [
        "Patient One/2018 knee/image.dcm",
        "Patient One/later/0002",
        "p2/a/b/c/x",
        "p2/ünïcode name.DCM",
        "third/IM1",
        "third/IM2.bin",
    ]
    for visit, name in zip(VISITS, names, strict=True):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(visit.data())
    (folder / "notes.txt").write_text("PatientID P1, two visits\n")
    outside = tmp_path / "outside.dcm"
    outside.write_bytes(Radiograph("P9", date(2019, 9, 9), "R").data())
    (folder / "third" / "link.dcm").symlink_to(outside)

    result = admin.run("ingest", "--dicom-folder", str(folder), "--issuer", ISSUER)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (
        "3 people and 6 images added; 0 images were already stored; 0 files refused, 2 skipped"
    )
    assert lines[1:4] == [
        "skipped:",
        f"  notes.txt: {NOT_DICOM}",
        "  third/link.dcm: a symbolic link, not followed",
    ]
    assert admin.gallery() == expected_gallery(names)
    assert admin.written_elsewhere() == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_killed_ingest_resumes_with_every_file_in_once(admin, tmp_path):
    folder = tmp_path / "big"
    radiographs = [
        Radiograph(f"R{person:02d}", date(2010 + visit, 1 + person, 1), "LR"[visit % 2])
        for person in range(10)
        for visit in range(4)
    ]
    for index, radiograph in enumerate(radiographs):
        path = folder / radiograph.person / f"{index:03d}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(radiograph.data())
    # Each image waits this long for company in the embedding batcher: the run takes seconds.
    env = {**admin.env, "RADMATCH_EMBED_WAIT_MS": "150"}
    command = admin.command("ingest", "--dicom-folder", str(folder), "--issuer", ISSUER)
    process = subprocess.Popen(
        command, env=env, cwd=admin.elsewhere[0], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    engine = create_engine(admin.database_url)
    try:
        deadline = time.monotonic() + 300
        while images_in(engine) < 5:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.communicate()
        killed_at = images_in(engine)
        assert 5 <= killed_at < len(radiographs)

        rerun = admin.run("ingest", "--dicom-folder", str(folder), "--issuer", ISSUER)

        assert rerun.returncode == 0, rerun.stderr
        assert rerun.stdout.splitlines()[0].endswith(
            f" people and {len(radiographs) - killed_at} images added; {killed_at} images were "
            "already stored; 0 files refused, 0 skipped"
        )
        with engine.connect() as connection:
            rows = connection.execute(select(Image.sop_instance_uid, Image.sha256)).all()
    finally:
        engine.dispose()
    assert len(rows) == len({uid for uid, _ in rows}) == len(radiographs)
    originals = admin.data_dir / "originals"
    stored = {path.name for path in originals.rglob("*") if path.is_file()}
    assert stored == {sha256 for _, sha256 in rows}  # no .pending marker, no orphan original
    assert admin.written_elsewhere() == []


def images_in(engine) -> int:
    with engine.connect() as connection:
        return connection.scalar(select(func.count(Image.id)))


def test_a_dicomdir_record_outside_the_media_root_is_refused_for_that_record(tmp_path):
    secret = tmp_path / "SECRET"
    secret.mkdir()
    (secret / "IM000000").write_bytes(VISITS[0].data())
    cd = tmp_path / "cd"
    files = write_cd(cd)
    (cd / "DICOM" / "LINK").symlink_to(secret / "IM000000")
    index = pydicom.dcmread(cd / "DICOMDIR")
    referencing = [r for r in index.DirectoryRecordSequence if "ReferencedFileID" in r]
    replaced = {"/".join(r.ReferencedFileID) for r in referencing[:2]}
    with pytest.warns(UserWarning, match="Invalid value for VR CS: '..'"):
        referencing[0].ReferencedFileID = ["..", "SECRET", "IM000000"]
    referencing[1].ReferencedFileID = ["DICOM", "LINK"]
    index.save_as(cd / "DICOMDIR")

    media = dicomdir_media(cd)

    escaping, link, *inside = media.files
    assert (escaping.name, escaping.path) == ("../SECRET/IM000000", None)
    assert escaping.refused == "the DICOMDIR record points outside the media root"
    assert (link.name, link.path) == ("DICOM/LINK", None)
    assert link.refused == "the DICOMDIR record points outside the media root (a link)"
    rest = [path.resolve() for path in files if path.relative_to(cd).as_posix() not in replaced]
    assert sorted(file.path for file in inside) == rest


def test_a_cd_mounted_without_rock_ridge_is_read_in_lower_case(tmp_path):
    cd = tmp_path / "cd"
    files = write_cd(cd)
    mounted = tmp_path / "mounted"
    for path in [cd / "DICOMDIR", *files]:
        relative = path.relative_to(cd).as_posix().lower()
        version = ";1" if path.name == "IM000003" else ""
        (mounted / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, mounted / (relative + version))

    media = dicomdir_media(mounted)

    found = {file.name: file.path for file in media.files}
    assert sorted(found) == [f"DICOM/IM{i:06d}" for i in range(8)]
    assert all(file.refused is None for file in media.files)
    assert found["DICOM/IM000003"] == (mounted / "dicom" / "im000003;1").resolve()


def test_a_folder_walk_reads_nothing_outside_its_root(tmp_path):
    folder = tmp_path / "media"
    (folder / "inside").mkdir(parents=True)
    (folder / "inside" / "a.dcm").write_bytes(VISITS[0].data())
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "b.dcm").write_bytes(VISITS[1].data())
    (folder / "jump").symlink_to(tmp_path / "elsewhere")
    os.mkfifo(folder / "pipe")

    media = folder_media(folder)

    assert [(f.name, f.path is not None, f.skipped) for f in media.files] == [
        ("jump", False, "a symbolic link, not followed"),
        ("pipe", False, "not a regular file (a pipe, socket or device)"),
        ("inside/a.dcm", True, None),
    ]
