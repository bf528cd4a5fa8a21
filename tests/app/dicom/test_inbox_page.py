"""The case page's inbox in a real browser: a radiograph a mortuary's system sent for the case is
listed with who sent it and how, and one click searches the gallery with it."""

from __future__ import annotations

import re
import zlib
from pathlib import Path

import numpy as np
from playwright.sync_api import Page, expect

from app.core.config import Settings
from app.dicom.arrival import Arrival, Destination
from app.dicom.intake import receive
from app.serving.service import Service
from tests.app.test_web_page import SCREENSHOTS, SQLITE, images_loaded, page, sign_in
from tests.support.images import phantom_dicom
from tests.support.servers import Server

API = "/api/v1"
__all__ = ["page"]  # the page tests' fixture, used here too


def knee(key: str) -> bytes:
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    pixels = (rng.random((128, 128)) * 65535).astype(np.uint16)
    return phantom_dicom(pixels, key, person_id=key, side="L")


@SQLITE
def test_an_examiner_searches_with_a_radiograph_the_mortuary_sent(
    server: Server, checkpoint: Path, page: Page
) -> None:
    with server.examiner() as client:
        people = {}
        for key in ("KNOWN-1", "KNOWN-2", "KNOWN-3"):
            person = client.post(f"{API}/people", json={"external_ref": key}).json()
            people[key] = person["id"]
            stored = client.post(
                f"{API}/people/{person['id']}/images", files={"file": ("k.dcm", knee(key))}
            )
            assert stored.status_code == 201, stored.text
        case_id = client.post(f"{API}/cases", json={"number": "PM-2026-77"}).json()["id"]
    # What `radmatch dicom-listen` does for a calling AE title registered to this case.
    beside = Service.open(
        Settings(
            data_dir=Path(server.env["RADMATCH_DATA_DIR"]),
            database_url=server.env["RADMATCH_DATABASE_URL"],
            checkpoint=checkpoint,
        ),
        with_index=False,
    )
    try:
        receive(
            records=beside.records,
            matcher=beside.matcher,
            metrics=beside.metrics,
            data=knee("KNOWN-2"),
            destination=Destination(case_id=case_id),
            arrival=Arrival("c-store", "MORTUARY"),
        )
    finally:
        beside.close()

    page.goto(f"{server.url}/#/cases/{case_id}")
    sign_in(page, server.examiner_key)
    expect(page.get_by_role("heading", name=re.compile(r"Received by DICOM"))).to_contain_text(
        "1 radiograph"
    )
    expect(page.get_by_text("From MORTUARY by DICOM C-STORE", exact=False)).to_be_visible()
    expect(page.get_by_text("DX, knee, left", exact=False)).to_be_visible()
    images_loaded(page)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "case-inbox.png", full_page=False)

    page.get_by_role("button", name="Search with this radiograph").click()
    first = page.get_by_role("table").first.get_by_role("row").nth(1)
    expect(first.get_by_role("cell").nth(1)).to_have_text("KNOWN-2")
    with server.examiner() as client:
        searches = client.get(f"{API}/cases/{case_id}").json()["searches"]
    assert len(searches) == 1
