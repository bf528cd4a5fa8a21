"""The DICOM software on the other end of radmatch's DICOM interfaces, run for real: Debian's
Orthanc 1.10.1 with its DICOMweb plugin 1.7 (a PACS that stores and answers C-STORE, QIDO-RS,
WADO-RS and STOW-RS, and sends by C-STORE and STOW-RS when told to over its REST API), and the
dcmtk 3.6.7 command-line tools storescu, echoscu and dcmmkdir.

What the dcmtk tools were seen to do (against pynetdicom and Orthanc SCPs):

- storescu and echoscu exit with 0 on success, C-STORE warning statuses (0xB...) included. They
  log nothing unless something fails or `-v`/`-d` is given, and log to stderr (stdout holds
  only storescu's progress dots, "XMIT: ..").
- Association rejected (e.g. a called AE title the peer does not know): exit code 1, stderr
  "F: Association Rejected:", "F: Result: Rejected Permanent, Source: Service User",
  "F: Reason: Called AE Title Not Recognized".
- Nobody listening: exit code 1, stderr "F: Association Request Failed: 0006:031c TCP
  Initialization Error: Connection refused".
- No presentation context accepted for a file's SOP class: exit code 1, stderr "E: No
  presentation context for: (SRt) 1.2.840.10008.5.1.4.1.1.88.11" and "E: Store SCU Failed:
  0006:0208 DIMSE No valid Presentation Context ID"; the files after it are not sent.
- A C-STORE answered with a failure status: nothing printed without `-v`; the exit code is the
  status's high byte (0xA700 -> 167, 0xA900 -> 169, 0xC000 -> 192; 1 for 0x01xx statuses).
  With `-v` (which `storescu` here always passes): "I: Received Store Response (Refused:
  OutOfResources)", "(Error: CannotUnderstand)", "(Error: DataSetDoesNotMatchSOPClass)"; with
  `-d` the exact value: "DIMSE Status                  : 0xa700: Refused: Out of resources".
  storescu stops at the first failed file unless given `-nh` (`--no-halt`), and with `-nh` it
  exits with 0 however many were refused: read the "Received Store Response" lines then.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.servers import free_port, terminate

ORTHANC = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
TOOL_TIMEOUT_S = 60


@dataclass
class Orthanc:
    """An Orthanc process whose configuration, storage, index and log lie in `folder`.

    Only 127.0.0.1 may reach it, without credentials, on free HTTP and DICOM ports; it accepts
    any calling and called AE title and any storage SOP class it knows, and keeps its modalities
    and DICOMweb servers in memory (what `add_modality` and `add_dicomweb_server` set is gone
    once it stops)."""

    folder: Path
    aet: str = "ORTHANC"
    http_port: int = field(default_factory=free_port)
    dicom_port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    @property
    def log(self) -> Path:
        return self.folder / "orthanc.log"

    def configuration(self) -> dict:
        storage = str(self.folder / "storage")
        return {
            # Unique, so that waiting for it to start can tell it from another one on that port.
            "Name": str(self.folder),
            "StorageDirectory": storage,
            "IndexDirectory": storage,
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.aet,
            # Local only, so no credentials: since 1.5.8 Orthanc asks for them by default
            # exactly when remote access is allowed; said outright so that nothing depends on it.
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": False,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "Plugins": [DICOMWEB_PLUGIN],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            # Test data only: the log may name patients, and a test's store needs no fsync and
            # no jobs that outlive the process.
            "DeidentifyLogs": False,
            "SyncStorageArea": False,
            "SaveJobs": False,
        }

    def start(self) -> Orthanc:
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "orthanc.json"
        config.write_text(json.dumps(self.configuration(), indent=2))
        with open(self.log, "ab") as log:
            # Orthanc logs to stderr unless told otherwise: one file holds all it says.
            self.process = subprocess.Popen(
                [ORTHANC, str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.folder,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"Orthanc exited:\n{self.log_tail()}")
            try:
                system = httpx.get(f"{self.url}/system", timeout=1)
                if system.status_code == 200 and system.json()["Name"] == str(self.folder):
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"Orthanc did not answer within 30 s:\n{self.log_tail()}")

    def stop(self) -> None:
        terminate(self.process, timeout=10)

    def __enter__(self) -> Orthanc:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return "(no log)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kwargs)

    def call(self, method: str, path: str, **kwargs) -> httpx.Response:
        """One REST call, raising unless it succeeded with Orthanc's answer and what it logged
        meanwhile: its answer to a failed C-STORE or STOW-RS is a bare HTTP 500, and only the
        log names the cause."""
        logged = self.log.stat().st_size if self.log.exists() else 0
        with self.client() as client:
            response = client.request(method, path, **kwargs)
        if not response.is_success:
            with open(self.log, "rb") as log:
                log.seek(logged)
                meanwhile = log.read().decode(errors="replace")
            raise AssertionError(
                f"Orthanc answered {method} {path} with {response.status_code}: "
                f"{response.text}\nOrthanc logged meanwhile:\n{meanwhile}"
            )
        return response

    def upload(self, data: bytes) -> dict:
        """Stores one DICOM file; Orthanc's answer: ID (the instance), ParentPatient,
        ParentStudy, ParentSeries, Path, and Status ("Success", or "AlreadyStored" the second
        time)."""
        return self.call(
            "POST", "/instances", content=data, headers={"Content-Type": "application/dicom"}
        ).json()

    def add_modality(self, name: str, aet: str, host: str, port: int) -> None:
        """A DICOM peer Orthanc can send to by C-STORE under `name`."""
        self.call("PUT", f"/modalities/{name}", json={"AET": aet, "Host": host, "Port": port})

    def add_dicomweb_server(
        self,
        name: str,
        url: str,
        headers: dict[str, str] | None = None,
        *,
        chunked: bool | None = None,
    ) -> None:
        """A DICOMweb server Orthanc can send to by STOW-RS under `name`: `url` is its root (the
        plugin posts to url + "/studies"), `headers` go with every request (an API key, say).
        Orthanc sends a STOW-RS body in chunked transfer encoding, without Content-Length,
        unless `chunked` is False."""
        body: dict[str, object] = {"Url": url}
        if headers:
            body["HttpHeaders"] = headers
        if chunked is not None:
            body["ChunkedTransfers"] = chunked
        self.call("PUT", f"/dicom-web/servers/{name}", json=body)

    def store_to_modality(self, name: str, resources: list[str]) -> dict:
        """C-STOREs these resources (Orthanc IDs of instances, series, studies or patients) to a
        modality in one association, calling as `aet`, returning when done: Orthanc's answer
        (InstancesCount, FailedInstancesCount, LocalAet, RemoteAet, ParentResources).

        Raises at the first failure with Orthanc's HTTP 500, whose "Details" names the cause:
        'C-STORE SCU to AET "RADMATCH" has failed with DIMSE status 0xA700' (a refused
        instance), 'Cannot transcode from 1.2.840.10008.1.2.1 to one of [ ]' (the peer accepted
        no presentation context for the SOP class), 'DicomAssociation - connecting to AET "X":
        DUL Association Rejected', '... TCP Initialization Error: Connection refused'."""
        body = {"Resources": resources, "Synchronous": True}
        return self.call("POST", f"/modalities/{name}/store", json=body).json()

    def stow_to_server(self, name: str, resources: list[str]) -> dict:
        """STOW-RS of these resources to a DICOMweb server in one multipart/related request
        (Accept: application/dicom+json), returning when done: Orthanc's answer
        ({"InstancesCount": "1", "NetworkSizeMB": "0"}, counts as strings).

        The plugin (1.7) counts it a success only when the server answers 2xx with a JSON
        body holding a ReferencedSOPSequence (0008,1199) and no FailedSOPSequence (0008,1198);
        anything else (4xx, 202 with failures, {}) makes it answer a bare HTTP 500 "Error
        encountered within the plugin engine", raised here with the cause from its log
        ("received HTTP status 409 (Conflict)", "contains 1 items in its Failed SOP Sequence",
        "Unable to parse STOW-RS JSON response"). A failure takes half a second, the job's
        polling interval."""
        body = {"Resources": resources, "Synchronous": True}
        return self.call("POST", f"/dicom-web/servers/{name}/stow", json=body).json()

    def studies(self) -> list[str]:
        return self.call("GET", "/studies").json()

    def instances(self) -> list[str]:
        return self.call("GET", "/instances").json()

    def instance_tags(self, instance: str) -> dict[str, str]:
        """An instance's tags by keyword (PatientID, SOPInstanceUID, ...)."""
        return self.call("GET", f"/instances/{instance}/simplified-tags").json()


# --- dcmtk -------------------------------------------------------------------------------------


def storescu(
    port: int,
    files: Sequence[Path],
    *,
    calling_aet: str,
    called_aet: str = "RADMATCH",
    host: str = "127.0.0.1",
    extra: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    """C-STOREs `files` in one association, verbosely (see the module's docstring for what it
    prints and returns). storescu proposes each file's own transfer syntax and the uncompressed
    ones for its SOP class."""
    command = ["storescu", "-v", "-aet", calling_aet, "-aec", called_aet, *extra, host, str(port)]
    return run_tool([*command, *map(str, files)])


def echoscu(
    port: int, *, calling_aet: str, called_aet: str = "RADMATCH", host: str = "127.0.0.1"
) -> subprocess.CompletedProcess[str]:
    """A C-ECHO (verification) in one association."""
    return run_tool(["echoscu", "-v", "-aet", calling_aet, "-aec", called_aet, host, str(port)])


def media_name(index: int) -> Path:
    """A file ID a DICOMDIR may hold (upper-case letters, digits and "_", at most 8 characters
    per component, at most 8 components): DICOM/IM000001 for 1."""
    return Path("DICOM") / f"IM{index:06d}"


def write_media(root: Path, files: Sequence[bytes]) -> list[Path]:
    """Writes `files` under `root` by `media_name`, for `dcmmkdir`."""
    paths = [root / media_name(index) for index in range(len(files))]
    for path, data in zip(paths, files, strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return paths


def dcmmkdir(
    root: Path,
    files: Sequence[Path],
    profile: Sequence[str] = ("--general-purpose", "--no-xfer-check"),
) -> subprocess.CompletedProcess[str]:
    """Writes root/DICOMDIR referencing `files`, which must lie under `root` with names a
    DICOMDIR allows (`media_name`): otherwise dcmmkdir exits with 1, "E: invalid character(s)
    in filename" or "E: component too large (max 8 characters) in filename".

    The General Purpose CD-R profile takes DX, CR, secondary capture, CT, SR and PDF objects,
    but only in Explicit VR Little Endian: `--no-xfer-check` lets the phantom cohort's other
    encodings (implicit VR, RLE, JPEG-LS, JPEG 2000) in with a warning ("W: LittleEndianExplicit
    expected but RLELossless found"), as real media often hold them. Pass
    profile=("--general-purpose",) for a strict one, which refuses them with "E: ..." and,
    when no file is left, "E: no good files: DICOMDIR not created"."""
    relative = [path.relative_to(root).as_posix() for path in files]
    command = ["dcmmkdir", *profile, "+id", str(root), "+D", str(root / "DICOMDIR"), *relative]
    return run_tool(command)


def run_tool(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)
