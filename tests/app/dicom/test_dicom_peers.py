"""The DICOM peers harness against the real software it drives (Orthanc and its DICOMweb plugin,
dcmtk, dicomweb-client, pydicom's FileSet), and nothing of radmatch: what the tests of
radmatch's DICOM interfaces will take for granted."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicomweb_client import DICOMwebClient
from pydicom.fileset import FileSet
from pydicom.uid import RLELossless
from pynetdicom import AE, evt
from pynetdicom.sop_class import DigitalXRayImageStorageForPresentation, Verification

from tests.support.dicom_peers import (
    Orthanc,
    dcmmkdir,
    echoscu,
    media_name,
    storescu,
    write_media,
)
from tests.support.images import (
    computed_radiography,
    ct_image,
    encapsulated_pdf,
    multiframe_dx,
    phantom_dicom,
    secondary_capture,
    structured_report,
)
from tests.support.servers import free_port
from training.phantom.dicom import Encoding

RLE_ENCODING = Encoding(RLELossless, "MONOCHROME2", False)
KNEE = (np.arange(96 * 96, dtype=np.uint32).reshape(96, 96) * 7 % 65536).astype(np.uint16)


def every_kind_of_object(prefix: str) -> dict[str, bytes]:
    """One file of each writer, each its own patient."""
    return {
        "DX": phantom_dicom(KNEE, f"{prefix}-dx"),
        "CR": computed_radiography(KNEE, f"{prefix}-cr"),
        "SC": secondary_capture((KNEE >> 8).astype(np.uint8), f"{prefix}-sc"),
        "CT": ct_image(f"{prefix}-ct"),
        "SR": structured_report(f"{prefix}-sr"),
        "PDF": encapsulated_pdf(f"{prefix}-pdf"),
        "MF": multiframe_dx(f"{prefix}-mf"),
    }


def sop_instances(orthanc: Orthanc) -> dict[str, dict[str, str]]:
    """What Orthanc holds, by SOP Instance UID."""
    tags = (orthanc.instance_tags(instance) for instance in orthanc.instances())
    return {tag["SOPInstanceUID"]: tag for tag in tags}


def test_the_object_writers_are_deterministic_and_distinct() -> None:
    first, again = every_kind_of_object("same"), every_kind_of_object("same")
    assert first == again
    datasets = {kind: pydicom.dcmread(BytesIO(data)) for kind, data in first.items()}
    assert len({ds.SOPInstanceUID for ds in datasets.values()}) == len(datasets)
    assert len({ds.StudyInstanceUID for ds in datasets.values()}) == len(datasets)
    assert datasets["MF"].pixel_array.shape == (3, 96, 96)
    assert datasets["PDF"].EncapsulatedDocument.startswith(b"%PDF")
    overridden = pydicom.dcmread(BytesIO(ct_image("same-ct", SOPInstanceUID="1.2.3.4")))
    assert overridden.file_meta.MediaStorageSOPInstanceUID == "1.2.3.4"


def test_orthanc_stores_an_upload(orthanc: Orthanc) -> None:
    data = phantom_dicom(KNEE, "upload")
    stored = orthanc.upload(data)
    assert stored["Status"] == "Success", stored
    assert stored["ID"] in orthanc.instances()
    assert stored["ParentStudy"] in orthanc.studies()
    assert orthanc.instance_tags(stored["ID"])["PatientID"] == "upload"
    assert orthanc.upload(data)["Status"] == "AlreadyStored"


def test_qido_finds_the_study_and_wado_retrieves_the_instance(orthanc: Orthanc) -> None:
    sent = pydicom.dcmread(BytesIO(phantom_dicom(KNEE, "dicomweb")))
    orthanc.upload(phantom_dicom(KNEE, "dicomweb"))
    orthanc.upload(phantom_dicom(KNEE, "someone else"))
    client = DICOMwebClient(orthanc.dicomweb_url)

    studies = client.search_for_studies(search_filters={"PatientID": "dicomweb"})
    assert [pydicom.Dataset.from_json(study).StudyInstanceUID for study in studies] == [
        sent.StudyInstanceUID
    ]
    received = client.retrieve_instance(
        sent.StudyInstanceUID, sent.SeriesInstanceUID, sent.SOPInstanceUID
    )
    assert received.SOPInstanceUID == sent.SOPInstanceUID
    np.testing.assert_array_equal(received.pixel_array, KNEE)


def test_storescu_sends_every_kind_of_object_to_orthanc(orthanc: Orthanc, tmp_path) -> None:
    objects = every_kind_of_object("storescu")
    files = [tmp_path / f"{kind}.dcm" for kind in objects]
    for path, data in zip(files, objects.values(), strict=True):
        path.write_bytes(data)

    result = storescu(orthanc.dicom_port, files, calling_aet="TESTS", called_aet=orthanc.aet)

    assert result.returncode == 0, result.stderr
    assert result.stderr.count("Received Store Response (Success)") == len(files), result.stderr
    held = sop_instances(orthanc)
    for kind, data in objects.items():
        sent = pydicom.dcmread(BytesIO(data))
        assert held[sent.SOPInstanceUID]["PatientID"] == sent.PatientID, kind
        assert held[sent.SOPInstanceUID]["SOPClassUID"] == sent.SOPClassUID, kind


def test_echoscu_is_answered_by_orthanc(orthanc: Orthanc) -> None:
    result = echoscu(orthanc.dicom_port, calling_aet="TESTS", called_aet=orthanc.aet)
    assert result.returncode == 0, result.stderr
    assert "Received Echo Response (Success)" in result.stderr


def test_storescu_and_echoscu_report_rejections_and_refusals(tmp_path) -> None:
    """What the module's docstring promises about dcmtk, against a pynetdicom SCP that knows
    only its own AE title and DX, and answers every C-STORE "out of resources"."""
    scp = AE(ae_title="RADMATCH")
    scp.require_called_aet = True
    scp.add_supported_context(DigitalXRayImageStorageForPresentation)
    scp.add_supported_context(Verification)
    port = free_port()
    refusing = [(evt.EVT_C_STORE, lambda event: 0xA700)]
    server = scp.start_server(("127.0.0.1", port), block=False, evt_handlers=refusing)
    dx, report = tmp_path / "DX.dcm", tmp_path / "SR.dcm"
    dx.write_bytes(phantom_dicom(KNEE, "refused"))
    report.write_bytes(structured_report("refused"))
    try:
        rejected = storescu(port, [dx], calling_aet="TESTS", called_aet="SOMEONE")
        echo_rejected = echoscu(port, calling_aet="TESTS", called_aet="SOMEONE")
        refused = storescu(port, [dx, dx], calling_aet="TESTS")
        not_halted = storescu(port, [dx, dx], calling_aet="TESTS", extra=["-nh"])
        no_context = storescu(port, [report, dx], calling_aet="TESTS")
    finally:
        server.shutdown()
    nobody = storescu(port, [dx], calling_aet="TESTS")

    for result in (rejected, echo_rejected):
        assert result.returncode == 1
        assert "F: Association Rejected:" in result.stderr
        assert "Reason: Called AE Title Not Recognized" in result.stderr
    assert refused.returncode == 0xA7
    assert refused.stderr.count("Received Store Response (Refused: OutOfResources)") == 1
    assert not_halted.returncode == 0
    assert not_halted.stderr.count("Received Store Response (Refused: OutOfResources)") == 2
    assert no_context.returncode == 1
    assert "E: No presentation context for: (SRt)" in no_context.stderr
    assert "Sending Store Request" not in no_context.stderr
    assert nobody.returncode == 1
    assert "TCP Initialization Error: Connection refused" in nobody.stderr


def test_orthanc_sends_by_c_store_and_stow_rs(orthanc: Orthanc, tmp_path) -> None:
    """Orthanc as the sender, to a second Orthanc: a modality by C-STORE, a DICOMweb server by
    STOW-RS (with a header, as an API key goes), and a clear error when nobody answers."""
    first = orthanc.upload(phantom_dicom(KNEE, "c-store"))
    second = orthanc.upload(phantom_dicom(KNEE, "stow-rs"))
    with Orthanc(tmp_path / "receiver", aet="RECEIVER") as receiver:
        orthanc.add_modality("receiver", receiver.aet, "127.0.0.1", receiver.dicom_port)
        orthanc.add_dicomweb_server(
            "receiver", receiver.dicomweb_url, headers={"X-API-Key": "secret"}
        )
        orthanc.add_modality("nobody", "NOBODY", "127.0.0.1", free_port())

        stored = orthanc.store_to_modality("receiver", [first["ID"]])
        stowed = orthanc.stow_to_server("receiver", [second["ParentStudy"]])
        with pytest.raises(AssertionError, match="Connection refused"):
            orthanc.store_to_modality("nobody", [first["ID"]])
        arrived = {tags["PatientID"] for tags in sop_instances(receiver).values()}

    assert (stored["InstancesCount"], stored["FailedInstancesCount"]) == (1, 0)
    assert stored["RemoteAet"] == "RECEIVER"
    assert stowed["InstancesCount"] == "1"
    assert arrived == {"c-store", "stow-rs"}


def test_dcmmkdir_writes_a_dicomdir_that_pydicom_reads(tmp_path) -> None:
    objects = [
        phantom_dicom(KNEE, "media-dx"),
        phantom_dicom(KNEE, "media-rle", RLE_ENCODING),
        secondary_capture(KNEE, "media-sc"),
        computed_radiography(KNEE, "media-cr"),
        structured_report("media-sr"),
    ]
    files = write_media(tmp_path, objects)
    assert files[1] == tmp_path / "DICOM" / "IM000001" == tmp_path / media_name(1)

    result = dcmmkdir(tmp_path, files)

    assert result.returncode == 0, result.stderr
    assert "LittleEndianExplicit expected but RLELossless found: DICOM/IM000001" in result.stderr
    media = FileSet(tmp_path / "DICOMDIR")
    assert sorted(instance.PatientID for instance in media) == sorted(
        pydicom.dcmread(BytesIO(data)).PatientID for data in objects
    )
    assert sorted(Path(instance.path) for instance in media) == sorted(files)


def test_dcmmkdir_refuses_what_a_dicomdir_cannot_hold(tmp_path) -> None:
    rle = write_media(tmp_path / "rle", [phantom_dicom(KNEE, "strict", RLE_ENCODING)])
    strict = dcmmkdir(tmp_path / "rle", rle, profile=("--general-purpose",))
    lower = tmp_path / "names" / "dicom" / "image"
    lower.parent.mkdir(parents=True)
    lower.write_bytes(phantom_dicom(KNEE, "lower case"))
    badly_named = dcmmkdir(tmp_path / "names", [lower])

    assert strict.returncode == 1
    assert "E: no good files: DICOMDIR not created" in strict.stderr
    assert not (tmp_path / "rle" / "DICOMDIR").exists()
    assert badly_named.returncode == 1
    assert "invalid character(s) in filename" in badly_named.stderr
