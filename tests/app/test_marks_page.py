"""Marks, measurements, the similarity explained and sequential unmasking on the comparison page,
in a real browser against a real `radmatch serve`: numbered marks placed on both images (one of
them flipped) and distances and angles kept with the conclusion in the originals' pixels, the
service's values shown in the histories, points placed from the keyboard, each image's map of its
share of the similarity drawn over it, and a reviewer shown one candidate without the ranking
until their conclusion is recorded."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.app.test_comparison_page import (
    PANES,
    Comparison,
    as_dicom,
    baseline,
    build_comparison,
    open_candidate,
)
from tests.app.test_web_page import SCREENSHOTS, images_loaded, sign_in, sign_out
from tests.support.pages import watched_tab
from tests.support.servers import new_server
from training.cohorts import read_knee_manifest

API = "/api/v1"
expect.set_options(timeout=15_000)
REVIEWER = "B"


@pytest.fixture(scope="module")
def comparison(tmp_path_factory, checkpoint, phantom_manifest) -> Iterator[Comparison]:
    root = tmp_path_factory.mktemp("marks")
    server = new_server(root, f"sqlite:///{root / 'radmatch.db'}", checkpoint)
    try:
        yield build_comparison(server, read_knee_manifest(phantom_manifest))
    finally:
        server.stop()


@pytest.fixture(scope="module")
def reviewer_key(comparison: Comparison) -> str:
    return comparison.server.new_key(REVIEWER, "examiner")


@contextmanager
def signed_in(browser: Browser, comparison: Comparison, key: str) -> Iterator[Page]:
    """A tab signed in with `key`; it fails the test on a script error or a blocked resource."""
    with watched_tab(browser) as tab:
        tab.goto(comparison.server.url)
        sign_in(tab, key)
        yield tab


@pytest.fixture
def page(browser: Browser, comparison: Comparison) -> Iterator[Page]:
    with signed_in(browser, comparison, comparison.server.examiner_key) as tab:
        yield tab


def image_box(page: Page, index: int) -> dict:
    return page.locator(PANES).nth(index).locator(".stage img").bounding_box()


def click_image(page: Page, index: int, across: float, down: float) -> None:
    """A click at a fraction of the image as it is drawn (flipped or not)."""
    page.locator(PANES).nth(index).locator(".viewport").scroll_into_view_if_needed()
    box = image_box(page, index)
    page.mouse.click(box["x"] + across * box["width"], box["y"] + down * box["height"])


def tool(page: Page, name: str) -> None:
    button = page.get_by_role("button", name=name, exact=True)
    button.click()
    expect(button).to_have_attribute("aria-pressed", "true")


def place_mark(page: Page, label: str, on_query: tuple, on_candidate: tuple) -> None:
    page.get_by_label("Label of the next mark").fill(label)
    click_image(page, 0, *on_query)
    click_image(page, 1, *on_candidate)


def shown_value(page: Page, number: int) -> tuple[float, str]:
    """The value of measurement `number` as the list of unsaved ones gives it."""
    item = page.get_by_role("list", name="Measurements", exact=True).locator("li").nth(number - 1)
    text = item.locator(".measurement-value strong").inner_text()
    found = re.fullmatch(r"([\d.]+) ?(mm|px|°)", text)
    assert found, text
    return float(found.group(1)), found.group(2)


def case_detail(comparison: Comparison, key: str | None = None, case_id: int | None = None):
    with comparison.server.client(key or comparison.server.examiner_key) as client:
        answer = client.get(f"{API}/cases/{case_id or comparison.case_id}")
    assert answer.status_code == 200, answer.text
    return answer.json()


def query_size(comparison: Comparison) -> tuple[int, int]:
    with comparison.server.examiner() as client:
        facts = client.get(f"{API}/searches/{comparison.search['search_id']}/query/facts")
    assert facts.status_code == 200, facts.text
    return facts.json()["width"], facts.json()["height"]


def image_size(comparison: Comparison, person_id: int, image_id: int) -> tuple[int, int]:
    with comparison.server.examiner() as client:
        person = client.get(f"{API}/people/{person_id}").json()
    image = next(item for item in person["images"] if item["id"] == image_id)
    return image["image_metadata"]["width"], image["image_metadata"]["height"]


def person_id(comparison: Comparison, reference: str) -> int:
    return next(
        c["person_id"] for c in comparison.search["candidates"] if c["external_ref"] == reference
    )


def near(point: dict, x: float, y: float, width: int) -> bool:
    # A click lands on a whole screen pixel: a few original pixels at this zoom.
    return math.isclose(point["x"], x, abs_tol=width * 0.01) and math.isclose(
        point["y"], y, abs_tol=width * 0.01
    )


def test_marks_and_measurements_are_kept_with_the_conclusion(page: Page, comparison: Comparison):
    open_candidate(page, comparison, comparison.both_sides)
    tool(page, "Mark features")
    place_mark(page, "Medial tibial spine", (0.3, 0.4), (0.35, 0.45))
    # Flipped, a click on the left of the candidate is a point on the right of its original.
    page.get_by_role("button", name="Flip candidate").click()
    place_mark(page, "Fibular head", (0.7, 0.6), (0.2, 0.6))
    marks = page.get_by_role("list", name="Marks", exact=True)
    expect(marks.locator("li")).to_have_count(2)
    expect(marks).not_to_contain_text("not yet on")
    # The numbers are drawn on both images.
    for index in (0, 1):
        expect(page.locator(PANES).nth(index).locator(".overlay .mark-text")).to_have_text(
            ["1", "2"]
        )

    tool(page, "Measure distance")
    click_image(page, 0, 0.2, 0.5)
    click_image(page, 0, 0.6, 0.5)
    tool(page, "Measure angle")
    for across, down in ((0.3, 0.3), (0.5, 0.5), (0.7, 0.3)):
        click_image(page, 1, across, down)
    page.get_by_label("Label of measurement 1").fill("Across the joint")
    distance, unit = shown_value(page, 1)
    assert unit == "mm"
    angle, degrees = shown_value(page, 2)
    assert degrees == "°" and math.isclose(angle, 90, abs_tol=2), angle
    expect(page.locator(".overlay .measure-text")).to_have_count(2)
    images_loaded(page)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "comparison-marks.png", full_page=True)

    page.get_by_label("Conclusion", exact=True).select_option("probable")
    page.get_by_label("Comment", exact=True).fill("Spine and fibular head correspond")
    page.get_by_role("button", name="Record conclusion").click()
    expect(page.locator("#conclusion-saved")).to_contain_text("Probable")
    expect(page.get_by_role("list", name="Measurements", exact=True)).to_have_count(0)
    expect(page.get_by_role("list", name="Measurements with this conclusion")).to_have_count(1)

    saved = case_detail(comparison)["conclusions"]["items"][-1]
    assert saved["candidate_image_id"] == comparison.right_image_id
    assert saved["ranking_seen"] is True
    query_width, query_height = query_size(comparison)
    width, height = image_size(
        comparison, person_id(comparison, comparison.both_sides), comparison.right_image_id
    )
    first, second = saved["marks"]
    assert (first["number"], first["label"]) == (1, "Medial tibial spine")
    assert (second["number"], second["label"]) == (2, "Fibular head")
    assert near(first["query"], 0.3 * query_width, 0.4 * query_height, query_width)
    assert near(first["candidate"], 0.35 * width, 0.45 * height, width)
    assert near(second["candidate"], 0.8 * width, 0.6 * height, width), second
    distance_saved, angle_saved = saved["measurements"]
    assert distance_saved["image"] == "query" and distance_saved["unit"] == "mm"
    assert distance_saved["label"] == "Across the joint"
    assert distance_saved["pixel_spacing_mm"] == pytest.approx(comparison.query_spacing)
    expected_mm = 0.4 * query_width * comparison.query_spacing
    assert distance_saved["value"] == pytest.approx(expected_mm, rel=0.02)
    assert distance == pytest.approx(distance_saved["value"], abs=0.05)
    assert angle_saved["image"] == "candidate" and angle_saved["unit"] == "°"
    assert angle == pytest.approx(angle_saved["value"], abs=0.05)
    for points, (w, h) in (
        (distance_saved["points"], (query_width, query_height)),
        (angle_saved["points"], (width, height)),
    ):
        assert all(0 <= p["x"] <= w and 0 <= p["y"] <= h for p in points), points

    shown = f"Distance on the query: {distance_saved['value']:.1f} mm — Across the joint"
    for _ in range(2):  # as recorded, and after a reload
        history = page.get_by_role("list", name=re.compile("^Conclusions on"))
        expect(history).to_contain_text("Medial tibial spine")
        expect(history).to_contain_text("Fibular head")
        expect(history).to_contain_text(shown)
        expect(history).to_contain_text(f"Angle on the candidate: {angle_saved['value']:.1f}°")
        page.reload()
    # A recorded conclusion's marks drawn again, where they were placed on the unflipped image.
    images_loaded(page)
    page.get_by_role("button", name="Show on the images").click()
    expect(page.locator("#recorded-shown")).to_contain_text("examiner in tests")
    for index in (0, 1):
        recorded = page.locator(PANES).nth(index).locator(".overlay text.mark-recorded")
        expect(recorded).to_have_text(["1", "2"])
    ring = page.locator(PANES).nth(1).locator(".overlay circle.mark-recorded").nth(1)
    expect(ring).to_be_visible()  # drawn once the image has loaded
    images_loaded(page)
    ring_box, image = ring.bounding_box(), image_box(page, 1)
    centre = (ring_box["x"] + ring_box["width"] / 2 - image["x"]) / image["width"]
    assert math.isclose(centre, 0.8, abs_tol=0.02), centre
    page.get_by_role("link", name=re.compile("^Case UID")).click()
    row = page.get_by_role("table", name=re.compile("^Conclusions")).get_by_role("row").last
    expect(row).to_contain_text("Spine and fibular head correspond")
    expect(row).to_contain_text("Medial tibial spine")
    expect(row).to_contain_text(shown)
    expect(row).not_to_contain_text("before the ranking")


def test_keyboard_measuring_in_mm_and_in_pixels(page: Page, comparison: Comparison):
    """The query's spacing is known (mm), the candidate's is not (px); Enter places a point at
    the centre of the focused image, Shift+arrows pan it by a known amount."""
    open_candidate(page, comparison, comparison.no_spacing)
    page.keyboard.press("d")
    expect(page.get_by_role("button", name="Measure distance")).to_have_attribute(
        "aria-pressed", "true"
    )
    query_width, _ = query_size(comparison)
    for index in (0, 1):
        viewport = page.locator(".viewport").nth(index)
        viewport.focus()
        page.keyboard.press("Enter")
        page.keyboard.press("Shift+ArrowLeft")  # the image moves 40 screen pixels left
        page.keyboard.press("Enter")
    query_screen = image_box(page, 0)["width"]
    candidate_screen = image_box(page, 1)["width"]
    millimetres, unit = shown_value(page, 1)
    assert unit == "mm"
    expected = 40 * query_width / query_screen * comparison.query_spacing
    assert millimetres == pytest.approx(expected, abs=0.1)
    pixels, unit = shown_value(page, 2)
    assert unit == "px"
    expect(
        page.get_by_role("list", name="Measurements", exact=True).locator("li").nth(1)
    ).to_contain_text("no pixel spacing is known")
    no_spacing_id = person_id(comparison, comparison.no_spacing)
    with comparison.server.examiner() as client:
        image = client.get(f"{API}/people/{no_spacing_id}").json()["images"][0]
    assert pixels == pytest.approx(40 * image["image_metadata"]["width"] / candidate_screen, abs=1)

    page.get_by_label("Conclusion", exact=True).select_option("insufficient")
    page.get_by_role("button", name="Record conclusion").click()
    expect(page.locator("#conclusion-saved")).to_contain_text("Insufficient")
    saved = case_detail(comparison)["conclusions"]["items"][-1]
    query_measure, candidate_measure = saved["measurements"]
    assert query_measure["unit"] == "mm" and candidate_measure["unit"] == "px"
    assert query_measure["value"] == pytest.approx(millimetres, abs=0.05)
    assert candidate_measure["value"] == pytest.approx(pixels, abs=0.5)
    assert candidate_measure["pixel_spacing_mm"] is None
    assert saved["marks"] == [] and saved["candidate_image_id"] == image["id"]


def test_another_candidate_image_clears_the_candidate_points(page: Page, comparison: Comparison):
    open_candidate(page, comparison, comparison.both_sides)
    page.keyboard.press("m")
    place_mark(page, "Patellar apex", (0.5, 0.3), (0.5, 0.3))
    page.locator(".visit", has_text="Left knee").click()
    expect(page.locator("#annotations-cleared")).to_contain_text("were cleared")
    marks = page.get_by_role("list", name="Marks", exact=True)
    expect(marks).to_contain_text("not yet on the candidate")
    page.get_by_label("Conclusion", exact=True).select_option("possible")
    page.get_by_role("button", name="Record conclusion").click()
    expect(page.get_by_role("alert")).to_contain_text("Mark 1 has no point on the candidate yet")
    click_image(page, 1, 0.5, 0.3)
    expect(marks).not_to_contain_text("not yet on")
    page.get_by_role("button", name="Record conclusion").click()
    expect(page.locator("#conclusion-saved")).to_contain_text("Possible")
    saved = case_detail(comparison)["conclusions"]["items"][-1]
    assert saved["candidate_image_id"] == comparison.left_image_id
    assert [mark["label"] for mark in saved["marks"]] == ["Patellar apex"]


def explanation(comparison: Comparison, reference: str, image_id: int) -> dict:
    search_id = comparison.search["search_id"]
    path = f"{API}/searches/{search_id}/candidates/{person_id(comparison, reference)}/explanation"
    with comparison.server.examiner() as client:
        answer = client.get(path, params={"image_id": image_id})
    assert answer.status_code == 200, answer.text
    return answer.json()


def cell_centre(page: Page, index: int, cell: int) -> tuple[float, float]:
    """Where cell number `cell` (rows top to bottom) of pane `index`'s map is drawn, as fractions
    of the image as drawn."""
    box = page.locator(PANES).nth(index).locator(".map-layer rect").nth(cell).bounding_box()
    image = image_box(page, index)
    return (
        (box["x"] + box["width"] / 2 - image["x"]) / image["width"],
        (box["y"] + box["height"] / 2 - image["y"]) / image["height"],
    )


def expected_centre(side: dict, row: int, column: int) -> tuple[float, float]:
    """Where a cell's centre lies in its original, as fractions of it."""
    rows, columns = len(side["map"]), len(side["map"][0])
    region = side["region"]
    return (
        (region["x"] + (column + 0.5) * region["width"] / columns) / side["width"],
        (region["y"] + (row + 0.5) * region["height"] / rows) / side["height"],
    )


def shown_sum(page: Page) -> float:
    found = re.search(r"\(sum = (-?[\d.]+)\)", page.locator("#explanation-legend").inner_text())
    assert found, page.locator("#explanation-legend").inner_text()
    return float(found.group(1))


def test_the_similarity_explained_over_both_images(page: Page, comparison: Comparison):
    open_candidate(page, comparison, comparison.both_sides)
    toggle = page.get_by_role("button", name="Explain the similarity")
    cells = page.locator(".stage .map-layer rect")
    expect(toggle).to_have_attribute("aria-pressed", "false")
    expect(cells).to_have_count(0)
    expect(page.get_by_role("complementary", name="Keyboard shortcuts")).to_contain_text(
        "Explain the similarity"
    )
    page.keyboard.press("e")
    expect(toggle).to_have_attribute("aria-pressed", "true")
    expected = explanation(comparison, comparison.both_sides, comparison.right_image_id)
    legend = page.locator("#explanation-legend")
    expect(legend).to_contain_text(expected["method"])
    for index, side in enumerate(("query", "candidate")):
        grid = expected[side]["map"]
        expect(page.locator(PANES).nth(index).locator(".stage .map-layer rect")).to_have_count(
            len(grid) * len(grid[0])
        )
        assert sum(map(sum, grid)) == pytest.approx(expected["similarity"], abs=1e-4)
    assert shown_sum(page) == pytest.approx(expected["similarity"], abs=5e-4)
    assert shown_sum(page) == pytest.approx(sum(map(sum, expected["query"]["map"])), abs=6e-4)

    # Each cell over its square of the original.
    across, down = expected_centre(expected["candidate"], 0, 0)
    assert cell_centre(page, 1, 0) == pytest.approx((across, down), abs=0.01)
    # The largest share of either map is the least see-through: warm if it pulls, cool if not.
    shares = [
        (index, number, value)
        for index, side in enumerate(("query", "candidate"))
        for number, value in enumerate(value for row in expected[side]["map"] for value in row)
    ]
    index, number, value = max(shares, key=lambda share: abs(share[2]))
    strongest = page.locator(PANES).nth(index).locator(".map-layer rect").nth(number)
    expect(strongest).to_have_attribute("fill-opacity", "0.700")
    red, _, blue = map(int, re.findall(r"\d+", strongest.get_attribute("fill")))
    assert (red > blue) == (value > 0), (value, strongest.get_attribute("fill"))
    images_loaded(page)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "comparison-explanation.png", full_page=True)
    # Flipped, the map is mirrored with its image.
    page.keyboard.press("f")
    assert cell_centre(page, 1, 0) == pytest.approx((1 - across, down), abs=0.01)

    # Another image of the candidate: its own explanation.
    page.locator(".visit", has_text="Left knee").click()
    other = explanation(comparison, comparison.both_sides, comparison.left_image_id)
    expect(legend).to_contain_text(f"(sum = {other['similarity']:.3f})")
    expect(page.locator(PANES).nth(1).locator(".map-layer rect")).to_have_count(
        sum(len(row) for row in other["candidate"]["map"])
    )
    page.keyboard.press("e")
    expect(toggle).to_have_attribute("aria-pressed", "false")
    expect(cells).to_have_count(0)
    expect(legend).to_be_hidden()
    toggle.click()
    expect(legend).to_contain_text(f"(sum = {other['similarity']:.3f})")
    toggle.click()
    expect(cells).to_have_count(0)


def test_sequential_unmasking(
    browser: Browser, comparison: Comparison, reviewer_key: str, phantom_manifest
):
    records = read_knee_manifest(phantom_manifest)
    query, _ = as_dicom(baseline(records, comparison.both_sides, "L"), "sequential", side="R")
    with comparison.server.examiner() as client:
        case = client.post(f"{API}/cases", json={"number": "UID-2026-8"}).json()
        search = client.post(
            f"{API}/cases/{case['id']}/searches",
            files={"file": ("query.dcm", query, "application/dicom")},
        )
        assert search.status_code == 200, search.text
    search = search.json()
    top = search["candidates"][0]

    with signed_in(browser, comparison, comparison.server.examiner_key) as page:
        page.goto(f"{comparison.server.url}/#/cases/{case['id']}")
        page.get_by_label("Reviewer").select_option(label=REVIEWER)
        page.get_by_label("Sequential unmasking").check()
        expect(page.get_by_label("Candidate to show")).to_have_value(str(top["person_id"]))
        page.get_by_role("button", name="Ask for a blind review").click()
        expect(page.get_by_text("with sequential unmasking by B")).to_contain_text(
            f"shown {top['external_ref']} first"
        )
        sign_out(page)

        sign_in(page, reviewer_key)
        page.goto(f"{comparison.server.url}/#/cases")
        inbox = page.get_by_role("region", name="Blind reviews waiting for you")
        expect(inbox).to_contain_text("sequential unmasking")
        page.goto(f"{comparison.server.url}/#/cases/{case['id']}")
        section = page.get_by_role("region", name=re.compile(r"^Search 1 "))
        expect(section).to_contain_text("Sequential unmasking")
        expect(page.get_by_role("table", name=re.compile("^Candidates of"))).to_have_count(0)
        expect(section).not_to_contain_text(re.compile("similar|LR |Open-set", re.I))
        link = page.get_by_role("link", name=f"Compare the query with {top['external_ref']}")
        link.click()

        heading = page.get_by_role("heading", level=1)
        expect(heading).to_have_text(f"Compare the query with {top['external_ref']}")
        images_loaded(page)
        shown = page.locator("main").inner_text()
        for hidden in (
            r"similarity",
            r"not retrieved",
            r"candidate \d+ of",
            r"\bLR \d",
            r"rank \d",
        ):
            assert not re.search(hidden, shown, re.I), (hidden, shown)
        expect(page.get_by_role("region", name="Strength of evidence")).to_have_count(0)
        for name in ("Next candidate ›", "‹ Previous candidate", "Explain the similarity"):
            expect(page.get_by_role("button", name=name)).to_be_hidden()
        page.keyboard.press("e")
        expect(page.locator(".map-layer rect")).to_have_count(0)
        page.keyboard.press("n")
        expect(heading).to_have_text(f"Compare the query with {top['external_ref']}")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SCREENSHOTS / "sequential-unmasking.png", full_page=True)

        page.get_by_label("Conclusion", exact=True).select_option("possible")
        page.get_by_label("Comment", exact=True).fill("Compared before the ranking")
        page.get_by_role("button", name="Record conclusion").click()
        expect(page.locator("#conclusion-saved")).to_contain_text("ranking, scores and strength")
        expect(heading).to_have_text(
            re.compile(rf"^Compare with candidate {top['rank']} of \d+: {top['external_ref']}$")
        )
        expect(page.get_by_role("region", name="Strength of evidence")).to_be_visible()
        expect(page.get_by_role("button", name="Explain the similarity")).to_be_visible()
        expect(page.get_by_role("list", name=re.compile("^Conclusions on"))).to_contain_text(
            "Made before the ranking was shown (sequential unmasking)"
        )

        page.get_by_role("link", name="Case UID-2026-8").click()
        expect(page.get_by_role("table", name=re.compile("^Candidates of"))).to_be_visible()
        row = page.get_by_role("table", name=re.compile("^Conclusions")).get_by_role("row").last
        expect(row).to_contain_text("Compared before the ranking")
        expect(row).to_contain_text("before the ranking was shown")

    detail = case_detail(comparison, reviewer_key, case["id"])
    assert detail["searches"][0]["masked"] is None
    assert detail["conclusions"]["items"][-1]["ranking_seen"] is False
