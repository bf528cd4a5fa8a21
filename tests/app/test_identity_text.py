"""Identifiers that look the same are the same, through a real server on SQLite and PostgreSQL:
a person's external reference and a case number are compared after Unicode NFKC with surrounding
spaces removed, invisible and text-direction characters are refused naming their code point, and
case matters. Also: a refusal is strict JSON even when the input held NaN or an infinity."""

from __future__ import annotations

import json
from collections.abc import Iterator
from io import BytesIO

import httpx
import numpy as np
import pydicom
import pytest

from tests.support.images import phantom_dicom, saved

API = "/api/v1"
BOUNDARY = "radmatch-identity-boundary"
ZERO_WIDTH_SPACE = "\u200b"


@pytest.fixture(scope="module")
def examiner(shared_server) -> Iterator[httpx.Client]:
    with shared_server.examiner() as client:
        yield client


def people_named(client: httpx.Client, ref: str) -> list[dict]:
    answer = client.get(f"{API}/people", params={"external_ref": ref})
    assert answer.status_code == 200, answer.text
    return answer.json()["items"]


def test_references_that_look_the_same_are_one_person(examiner) -> None:
    created = examiner.post(f"{API}/people", json={"external_ref": "PH5-00001"})
    assert created.status_code == 201, created.text

    for lookalike in ("PH5-00001 ", "\u3000PH5-00001", "ＰＨ５-００００１"):
        again = examiner.post(f"{API}/people", json={"external_ref": lookalike})
        assert again.status_code == 409, (lookalike, again.text)
        assert [p["id"] for p in people_named(examiner, lookalike)] == [created.json()["id"]]
    assert people_named(examiner, "PH5-00001")[0]["external_ref"] == "PH5-00001"


@pytest.mark.parametrize(
    ("character", "code_point"),
    [
        (ZERO_WIDTH_SPACE, "U+200B"),
        ("\u2060", "U+2060"),  # word joiner
        ("\ufeff", "U+FEFF"),  # zero-width no-break space
        ("\u202e", "U+202E"),  # right-to-left override
        ("\u2067", "U+2067"),  # right-to-left isolate
        ("\u200f", "U+200F"),  # right-to-left mark
        ("\t", "U+0009"),
    ],
)
def test_invisible_and_direction_characters_are_refused(examiner, character, code_point) -> None:
    ref = f"PH5{character}-00002"

    created = examiner.post(f"{API}/people", json={"external_ref": ref})
    listed = examiner.get(f"{API}/people", params={"external_ref": ref})
    case = examiner.post(f"{API}/cases", json={"number": f"2026{character}/17"})
    cases = examiner.get(f"{API}/cases", params={"number": f"2026{character}/17"})

    for answer in (created, listed, case, cases):
        assert answer.status_code == 422, answer.text
        assert code_point in answer.text
    assert people_named(examiner, "PH5-00002") == []


def test_a_reference_of_spaces_alone_is_refused(examiner) -> None:
    answer = examiner.post(f"{API}/people", json={"external_ref": "\u00a0 "})
    assert answer.status_code == 422
    assert "empty once surrounding spaces are removed" in answer.text


def test_case_matters(examiner) -> None:
    lower = examiner.post(f"{API}/people", json={"external_ref": "ph5-00003"})
    upper = examiner.post(f"{API}/people", json={"external_ref": "PH5-00003"})

    assert (lower.status_code, upper.status_code) == (201, 201)
    assert [p["id"] for p in people_named(examiner, "ph5-00003")] == [lower.json()["id"]]


def test_case_numbers_that_look_the_same_are_one_case(examiner) -> None:
    created = examiner.post(f"{API}/cases", json={"number": "2026/0042"})
    assert created.status_code == 201, created.text

    again = examiner.post(f"{API}/cases", json={"number": " ２０２６/００４２ "})
    found = examiner.get(f"{API}/cases", params={"number": "2026/0042\u00a0"})

    assert again.status_code == 409, again.text
    assert [case["id"] for case in found.json()["items"]] == [created.json()["id"]]
    assert found.json()["items"][0]["number"] == "2026/0042"


def stow_with_patient_id(server, key: str, patient_id: str) -> httpx.Response:
    """A DX knee sent by STOW-RS to the gallery, its PatientID in UTF-8."""
    pixels = (np.arange(96 * 96).reshape(96, 96) * 11 + len(key)).astype(np.uint16)
    ds = pydicom.dcmread(BytesIO(phantom_dicom(pixels, key)))
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientID = patient_id
    body = (
        f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + saved(ds)
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    content_type = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
    with server.examiner() as client:
        return client.post(
            "/dicomweb/studies", content=body, headers={"Content-Type": content_type}
        )


def test_dicom_patient_ids_that_look_the_same_are_one_person(shared_server, examiner) -> None:
    plain = stow_with_patient_id(shared_server, "identity-plain", "KNEE-7")
    wide = stow_with_patient_id(shared_server, "identity-wide", "ＫＮＥＥ-７")
    hidden = stow_with_patient_id(shared_server, "identity-hidden", f"KNEE{ZERO_WIDTH_SPACE}-7")

    assert (plain.status_code, wide.status_code) == (200, 200), (plain.text, wide.text)
    person = people_named(examiner, "LOCAL:KNEE-7")
    assert len(person) == 1
    images = examiner.get(f"{API}/people/{person[0]['id']}").json()["images"]
    assert len(images) == 2
    assert hidden.status_code == 409, hidden.text
    assert "U+200B" in hidden.text


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_a_refusal_echoing_a_non_finite_number_is_strict_json(examiner, constant) -> None:
    body = f'{{"number": "2026/nan", "prior_in_gallery": {constant}}}'

    answer = examiner.post(
        f"{API}/cases", content=body, headers={"Content-Type": "application/json"}
    )

    assert answer.status_code == 422

    def refuse(name: str):
        raise AssertionError(f"the answer holds a bare {name}: {answer.text}")

    detail = json.loads(answer.text, parse_constant=refuse)["detail"]
    assert detail[0]["loc"] == ["body", "prior_in_gallery"]
    assert detail[0]["input"] == str(float(constant))
