"""The case page's state tells the truth, in a real browser (Debian's chromium, driven by
Playwright) against one real `radmatch serve` that the module's tests share: search options that
go back to their defaults after each search and are shown where the file is chosen while they
differ, searches numbered within their case, messages that name the file and do not outlive their
cause, an out-of-range option explained beside it without losing the chosen file, and a layout
that holds from 1366 down to 400 px wide."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.pages import watched_tab
from training.cohorts import read_knee_manifest
from training.records import ImageRecord

API = "/api/v1"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
# Two cores may be shared with other test runs: allow the page more than the default 5 s.
expect.set_options(timeout=15_000)
LONG_COMMENT = (
    "Same trabecular pattern in the medial tibial plateau, the same small bone island above the "
    "lateral femoral condyle, and no unexplained difference between the two radiographs."
)

# The elements that reach past the right edge of the window, outermost first: what to fix.
WIDE = """() => [...document.querySelectorAll("body *")]
    .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 0.5)
    .filter((e) => !e.closest(".table-wrap") || e.classList.contains("table-wrap"))
    .slice(0, 8)
    .map((e) => `${e.tagName.toLowerCase()}.${e.className} ${Math.round(e.getBoundingClientRect().right)}`)"""


@pytest.fixture(scope="module")
def module_database_url(tmp_path_factory) -> str:
    """One SQLite database for the module's one server: the API tests cover PostgreSQL."""
    return f"sqlite:///{tmp_path_factory.mktemp('case-workflow-db') / 'radmatch.db'}"


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh tab, signed out; it fails the test on a script error or a blocked resource."""
    with watched_tab(browser) as tab:
        yield tab


@pytest.fixture(scope="module")
def gallery(shared_server, phantom_manifest) -> dict[str, ImageRecord]:
    """Each person's baseline right knee, put in the gallery once; reference -> its record."""
    records = sorted(
        (r for r in read_knee_manifest(phantom_manifest) if r.visit_months == 0 and r.side == "R"),
        key=lambda r: r.person_id,
    )
    with shared_server.examiner() as client:
        for record in records:
            person = client.post(f"{API}/people", json={"external_ref": record.person_id})
            assert person.status_code == 201, person.text
            image = client.post(
                f"{API}/people/{person.json()['id']}/images",
                files={"file": (record.path.name, record.path.read_bytes(), "image/png")},
                data={
                    "side": record.side,
                    "body_part": "knee",
                    "pixel_spacing_mm": record.pixel_spacing_mm,
                },
            )
            assert image.status_code == 201, image.text
    return {record.person_id: record for record in records}


def new_case(server, number: str) -> dict:
    with server.examiner() as client:
        case = client.post(f"{API}/cases", json={"number": number, "description": ""})
    assert case.status_code == 201, case.text
    return case.json()


def search_by_api(server, case_id: int, record: ImageRecord) -> dict:
    with server.examiner() as client:
        answer = client.post(
            f"{API}/cases/{case_id}/searches",
            files={"file": (record.path.name, record.path.read_bytes())},
            data={"pixel_spacing_mm": record.pixel_spacing_mm},
        )
    assert answer.status_code == 200, answer.text
    return answer.json()


def open_case(page: Page, server, case: dict, key: str | None = None) -> None:
    page.goto(f"{server.url}/#/cases/{case['id']}")
    page.get_by_label("API key").fill(key or server.examiner_key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name=f"Case {case['number']}")).to_be_visible()


def search_headings(page: Page):
    return page.get_by_role("heading", name=re.compile(r"^Search \d+ \(#\d+\)$"))


def test_options_go_back_to_defaults_and_a_set_option_is_shown(shared_server, gallery, page):
    server = shared_server
    query = next(iter(gallery.values()))
    case = new_case(server, "WORK-options")
    open_case(page, server, case)
    changed = page.locator(".options-changed")
    expect(changed).to_be_hidden()  # all at their defaults

    page.get_by_label("Side", exact=True).select_option(label="Right")
    expect(changed).to_be_visible()
    expect(changed).to_contain_text("Side filter: Right")
    page.get_by_role("button", name="Clear Side filter").click()
    expect(changed).to_be_hidden()
    expect(page.get_by_label("Side", exact=True)).to_have_value("")

    page.get_by_label("Side", exact=True).select_option(label="Right")
    page.get_by_label("Body part", exact=True).fill("knee")
    expect(changed).to_contain_text("Body part filter: knee")
    page.get_by_label("Choose a radiograph").set_input_files(query.path)
    expect(search_headings(page)).to_have_count(1)

    # The search ran with the options; the form is back to its defaults for the next one.
    search_id = int(re.search(r"#(\d+)", search_headings(page).first.inner_text()).group(1))
    with server.examiner() as client:
        stored = client.get(f"{API}/searches/{search_id}").json()
    assert stored["parameters"]["filters"]["side"] == "R", stored["parameters"]
    expect(page.get_by_label("Side", exact=True)).to_have_value("")
    expect(page.get_by_label("Body part", exact=True)).to_have_value("")
    expect(changed).to_be_hidden()
    # The confirmation is on the page, not only in the screen-reader announcer.
    done = page.locator(".done-notice")
    expect(done).to_be_visible()
    expect(done).to_contain_text(f"Search 1 (#{search_id}) of {query.path.name} done")
    # What the pixel-spacing field does, in plain words: the value given wins over the file's.
    expect(page.get_by_text("in place of its own, even a DICOM header's")).to_be_visible()
    table = page.get_by_role("table", name=re.compile(r"^Candidates of search 1 "))
    expect(table.locator("thead th").last).to_have_text("Actions")


def test_searches_are_numbered_within_their_case(shared_server, gallery, page):
    server = shared_server
    records = list(gallery.values())
    elsewhere = new_case(server, "WORK-elsewhere")
    search_by_api(server, elsewhere["id"], records[0])  # global ids now run ahead of this case's
    case = new_case(server, "WORK-numbers")
    first = search_by_api(server, case["id"], records[1])
    second = search_by_api(server, case["id"], records[2])
    reviewer_key = server.new_key("numbering reviewer", "examiner")
    with server.examiner() as client:
        keys = client.get(f"{API}/examiners").json()
        reviewer_id = next(key["id"] for key in keys if key["name"] == "numbering reviewer")
        concluded = client.post(
            f"{API}/cases/{case['id']}/conclusions",
            json={
                "search_id": first["search_id"],
                "person_id": first["candidates"][0]["person_id"],
                "conclusion": "excluded",
                "comment": "",
            },
        )
        assert concluded.status_code == 201, concluded.text
        asked = client.post(
            f"{API}/cases/{case['id']}/reviews",
            json={"search_id": second["search_id"], "reviewer_key_id": reviewer_id},
        )
        assert asked.status_code == 201, asked.text
    with server.client(reviewer_key) as client:
        waiting = client.get(f"{API}/reviews").json()
    assert [(r["search_id"], r["number_in_case"]) for r in waiting] == [(second["search_id"], 2)]

    open_case(page, server, case)
    expect(search_headings(page)).to_have_text(
        [f"Search 2 (#{second['search_id']})", f"Search 1 (#{first['search_id']})"]
    )
    history = page.get_by_role("table", name=re.compile(r"^Conclusions"))
    expect(history.get_by_role("row").nth(1)).to_contain_text(f"1 (#{first['search_id']})")

    page.get_by_role("button", name="Sign out").click()
    page.get_by_label("API key").fill(reviewer_key)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("link", name="Reviews for you 1").click()
    inbox = page.get_by_role("region", name="Blind reviews waiting for you")
    expect(inbox).to_contain_text(f"Search 2 (#{second['search_id']})")


def test_a_format_error_names_the_file_and_clears_on_the_next_action(shared_server, page):
    case = new_case(shared_server, "WORK-messages")
    open_case(page, shared_server, case)
    page.get_by_label("Choose a radiograph").set_input_files(
        {"name": "notes.png", "mimeType": "image/png", "buffer": b"not an image"}
    )
    alert = page.get_by_role("alert")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text(re.compile(r"^notes\.png was not searched: "))
    page.get_by_label("Sex", exact=True).select_option(label="Female")  # the next action
    expect(alert).to_be_hidden()


def test_an_out_of_range_option_is_explained_and_the_file_kept(shared_server, gallery, page):
    server = shared_server
    query = list(gallery.values())[4]
    with server.examiner() as client:
        most = client.get(f"{API}/limits").json()["max_search_k"]
    case = new_case(server, "WORK-range")
    open_case(page, server, case)
    candidates = page.get_by_role("spinbutton", name="Candidates to list")
    candidates.fill(str(most + 1))
    page.get_by_label("Choose a radiograph").set_input_files(query.path)
    explained = page.locator(".field-error").filter(has_text="Candidates to list")
    expect(explained).to_have_text(
        f"Candidates to list: enter a whole number from 1 to {most}; it is {most + 1}."
    )
    expect(candidates).to_have_attribute("aria-invalid", "true")
    expect(page.locator(".waiting-file")).to_contain_text(f"{query.path.name} is chosen")
    expect(search_headings(page)).to_have_count(0)

    candidates.fill("3")
    expect(explained).to_be_hidden()
    page.get_by_role("button", name=f"Search with {query.path.name}").click()
    table = page.get_by_role("table", name=re.compile(r"^Candidates of search 1 "))
    expect(table.locator("tbody tr")).to_have_count(3)
    expect(page.locator(".waiting-file")).to_be_hidden()


@pytest.mark.parametrize("width", [1366, 1024, 800, 400])
def test_the_case_page_fits_the_screen(shared_server, gallery, page, width):
    server = shared_server
    case = new_case(server, f"WORK-layout-{width}")
    record = list(gallery.values())[5]
    search = search_by_api(server, case["id"], record)
    with server.examiner() as client:
        concluded = client.post(
            f"{API}/cases/{case['id']}/conclusions",
            json={
                "search_id": search["search_id"],
                "person_id": search["candidates"][0]["person_id"],
                "conclusion": "identification",
                "comment": LONG_COMMENT,
            },
        )
        assert concluded.status_code == 201, concluded.text
    page.set_viewport_size({"width": width, "height": 900})
    open_case(page, server, case)
    expect(search_headings(page)).to_have_count(1)
    expect(page.locator("img:not([src])")).to_have_count(0)
    page.wait_for_function("() => [...document.images].every((image) => image.complete)")

    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, (
        f"the page scrolls sideways by {overflow} px at {width} px: {page.evaluate(WIDE)}"
    )
    sign_out = page.get_by_role("button", name="Sign out")
    expect(sign_out).to_be_in_viewport(ratio=1)
    comment = page.get_by_role("cell", name=LONG_COMMENT)
    assert comment.bounding_box()["width"] >= 200, "the history squeezes its comments"
    if width >= 800:  # and shows them whole, without scrolling its table
        frame = page.locator(".conclusion-history .table-wrap").bounding_box()
        box = comment.bounding_box()
        assert box["x"] + box["width"] <= frame["x"] + frame["width"] + 0.5, (box, frame)
    assert page.get_by_label("Choose a radiograph").is_enabled()
    if width in (800, 400):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SCREENSHOTS / f"case-{width}.png", full_page=True)
