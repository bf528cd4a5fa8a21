"""The comparison page in a real browser against a real `radmatch serve`: each radiograph's facts
beside it, the candidate's image of the query's side opened first (and a plain warning where the
person has only the other side), both images at true scale with scale bars, the viewer's flip,
reset, zoom and per-image brightness, and the panes side by side on a wide screen and one above
the other, both on the screen, on a narrow one."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

import numpy as np
import pytest
from PIL import Image as PILImage
from playwright.sync_api import Browser, Page, expect

from tests.app.test_web_page import SCREENSHOTS, images_loaded, sign_in, sign_out
from tests.support.images import phantom_dicom
from tests.support.pages import watched_tab
from tests.support.servers import Server, new_server
from training.cohorts import read_knee_manifest
from training.records import ImageRecord

API = "/api/v1"
expect.set_options(timeout=15_000)
QUERY_DATE = date(2020, 1, 1)
# The candidate's right knee is said to have coarser pixels than the query: at true scale it is
# drawn larger than the query by this ratio.
SPACING_RATIO = 1.5


@dataclass(frozen=True)
class Comparison:
    """A case with one search whose query is a right knee (by its DICOM header) made of the
    pixels of the left knee of person `both_sides`, who also has a right knee on record."""

    server: Server
    case_id: int
    search: dict
    query_spacing: float
    query_width: int
    both_sides: str  # has both knees; their left scores best
    left_only: str  # has only a left knee
    no_spacing: str  # a right knee with no pixel spacing
    right_image_id: int  # both_sides's right knee
    left_image_id: int  # both_sides's left knee

    def rank_of(self, reference: str) -> int:
        return next(c["rank"] for c in self.search["candidates"] if c["external_ref"] == reference)

    def url(self, reference: str) -> str:
        rank = self.rank_of(reference)
        return (
            f"{self.server.url}/#/cases/{self.case_id}/searches/"
            f"{self.search['search_id']}/compare/{rank}"
        )


def upload(client, person_id: int, record: ImageRecord, spacing: float | None) -> int:
    data = {"side": record.side, "body_part": "knee", "acquisition_date": "2019-03-01"}
    if spacing is not None:
        data["pixel_spacing_mm"] = spacing
    response = client.post(
        f"{API}/people/{person_id}/images",
        files={"file": (record.path.name, record.path.read_bytes(), "image/png")},
        data=data,
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def add_person(client, reference: str) -> int:
    person = client.post(f"{API}/people", json={"external_ref": reference})
    assert person.status_code == 201, person.text
    return person.json()["id"]


def as_dicom(record: ImageRecord, key: str, side: str) -> tuple[bytes, int]:
    """The record's pixels in a DX file whose header says `side`, with the record's spacing."""
    pixels = np.asarray(PILImage.open(record.path))
    if pixels.dtype == np.uint8:
        pixels = pixels.astype(np.uint16) * 257
    study = {"side": side, "pixel_spacing_mm": record.pixel_spacing_mm, "acquired": QUERY_DATE}
    return phantom_dicom(pixels.astype(np.uint16), key, **study), pixels.shape[1]


@pytest.fixture(scope="module")
def comparison(tmp_path_factory, checkpoint, phantom_manifest) -> Iterator[Comparison]:
    root = tmp_path_factory.mktemp("comparison")
    server = new_server(root, f"sqlite:///{root / 'radmatch.db'}", checkpoint)
    try:
        yield build_comparison(server, read_knee_manifest(phantom_manifest))
    finally:
        server.stop()


def baseline(records: list[ImageRecord], person: str, side: str) -> ImageRecord:
    return next(
        r for r in records if r.person_id == person and r.side == side and r.visit_months == 0
    )


def build_comparison(server: Server, records: list[ImageRecord]) -> Comparison:
    people = sorted({r.person_id for r in records})
    both_sides, left_only, no_spacing = people[:3]
    left = baseline(records, both_sides, "L")
    right = baseline(records, both_sides, "R")
    with server.examiner() as client:
        person = add_person(client, both_sides)
        # The left knee with the query's spacing (so that it scores best), the right one coarser.
        left_id = upload(client, person, left, left.pixel_spacing_mm)
        right_id = upload(client, person, right, left.pixel_spacing_mm * SPACING_RATIO)
        only_left = baseline(records, left_only, "L")
        upload(client, add_person(client, left_only), only_left, only_left.pixel_spacing_mm)
        upload(client, add_person(client, no_spacing), baseline(records, no_spacing, "R"), None)
        case = client.post(f"{API}/cases", json={"number": "UID-2026-7"})
        assert case.status_code == 201, case.text
        query, width = as_dicom(left, "query", side="R")
        response = client.post(
            f"{API}/cases/{case.json()['id']}/searches",
            files={"file": ("query.dcm", query, "application/dicom")},
        )
        assert response.status_code == 200, response.text
    search = response.json()
    answer = Comparison(
        server,
        case.json()["id"],
        search,
        left.pixel_spacing_mm,
        width,
        both_sides,
        left_only,
        no_spacing,
        right_id,
        left_id,
    )
    best = search["candidates"][answer.rank_of(both_sides) - 1]["images"][0]["image_id"]
    # What the side default is for: the search's best image of this person is the other knee.
    assert best == left_id, search["candidates"]
    return answer


@pytest.fixture
def page(browser: Browser, comparison: Comparison) -> Iterator[Page]:
    """A signed-in tab; it fails the test on a script error or a blocked resource."""
    with watched_tab(browser) as tab:
        tab.goto(comparison.server.url)
        sign_in(tab, comparison.server.examiner_key)
        yield tab


def open_candidate(page: Page, comparison: Comparison, reference: str) -> None:
    page.goto(comparison.url(reference))
    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile(f": {reference}$"))
    images_loaded(page)


def fact(page: Page, which: str, name: str):
    facts = page.locator(f'dl[aria-label="The {which} radiograph\'s facts"]')
    term = facts.locator("dt", has_text=re.compile(f"^{re.escape(name)}$"))
    return term.locator("xpath=following-sibling::dd[1]")


PANES = ".panes .pane"


def candidate_pane(page: Page):
    return page.locator(PANES).nth(1)


def test_the_candidate_opens_on_the_query_side(page: Page, comparison: Comparison):
    open_candidate(page, comparison, comparison.both_sides)
    expect(fact(page, "query", "Side")).to_have_text("R (right)")
    expect(fact(page, "query", "View")).to_have_text("PA")
    expect(fact(page, "query", "Study date")).to_have_text(QUERY_DATE.isoformat())
    expect(fact(page, "query", "Pixel spacing")).to_have_text(f"{comparison.query_spacing:.4g} mm")
    expect(fact(page, "query", "Sex")).to_have_text("F")
    expect(fact(page, "candidate", "Side")).to_have_text("R (right)")
    expect(fact(page, "candidate", "Pixel spacing")).to_have_text(
        f"{comparison.query_spacing * SPACING_RATIO:.4g} mm"
    )
    expect(fact(page, "candidate", "View")).to_have_text("not recorded")
    expect(candidate_pane(page).locator(".pane-warning")).to_have_count(0)
    expect(candidate_pane(page).locator(".image-facts")).not_to_contain_text("null")
    # Choosing the other knee by hand says plainly that it is the other side.
    page.locator(".visit", has_text="Left knee").click()
    expect(fact(page, "candidate", "Side")).to_have_text("L (left)")
    expect(candidate_pane(page).locator(".pane-warning")).to_contain_text("Other side")

    open_candidate(page, comparison, comparison.left_only)
    warning = candidate_pane(page).locator(".pane-warning")
    expect(warning).to_be_visible()
    expect(warning).to_contain_text("Only the other side on record")
    expect(warning).to_contain_text("no right image")
    expect(fact(page, "candidate", "Side")).to_have_text("L (left)")


def displayed_mm_per_pixel(page: Page, index: int, spacing: float, width: int) -> float:
    """The original's width in mm over the width it is drawn at on screen."""
    box = page.locator(PANES).nth(index).locator(".stage img").bounding_box()
    return spacing * width / box["width"]


def scale_bar(page: Page, index: int) -> tuple[float, float]:
    """A pane's scale bar: its length in mm (from its label) and in screen pixels."""
    bar = page.locator(PANES).nth(index).locator(".scale-bar")
    expect(bar).to_be_visible()
    label = bar.locator(".scale-bar-label").inner_text()
    assert re.fullmatch(r"\d+ mm", label), label
    return float(label.split()[0]), bar.locator(".scale-bar-line").bounding_box()["width"]


def test_both_images_are_shown_at_the_same_scale(page: Page, comparison: Comparison):
    open_candidate(page, comparison, comparison.both_sides)
    same_scale = page.get_by_role("button", name="Same scale")
    expect(same_scale).to_have_attribute("aria-pressed", "true")
    width = comparison.query_width  # the right knee is as many pixels wide as the left
    query = displayed_mm_per_pixel(page, 0, comparison.query_spacing, width)
    candidate = displayed_mm_per_pixel(
        page, 1, comparison.query_spacing * SPACING_RATIO, comparison.query_width
    )
    assert math.isclose(query, candidate, rel_tol=1e-3), (query, candidate)
    for index in (0, 1):
        millimetres, pixels = scale_bar(page, index)
        assert math.isclose(pixels * query, millimetres, rel_tol=0.02), (pixels, millimetres)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "comparison-scale.png", full_page=True)

    # Off: each image fits its pane, so the coarser one is drawn at more mm per screen pixel.
    same_scale.click()
    expect(same_scale).to_have_attribute("aria-pressed", "false")
    query = displayed_mm_per_pixel(page, 0, comparison.query_spacing, width)
    candidate = displayed_mm_per_pixel(page, 1, comparison.query_spacing * SPACING_RATIO, width)
    assert math.isclose(candidate / query, SPACING_RATIO, rel_tol=1e-3), (query, candidate)
    millimetres, pixels = scale_bar(page, 1)
    assert math.isclose(pixels * candidate, millimetres, rel_tol=0.02)

    open_candidate(page, comparison, comparison.no_spacing)
    pane = candidate_pane(page)
    expect(pane.locator(".scale-bar")).to_be_hidden()
    expect(pane.locator(".scale-note")).to_have_text(re.compile("No pixel spacing is known"))
    expect(fact(page, "candidate", "Pixel spacing")).to_have_text("not recorded")
    expect(page.locator(PANES).first.locator(".scale-bar")).to_be_visible()


def stage_transform(page: Page, index: int) -> str:
    return page.locator(PANES).nth(index).locator(".stage").evaluate("s => s.style.transform")


def test_flip_is_per_candidate_and_reset_undoes_it(page: Page, comparison: Comparison):
    open_candidate(page, comparison, comparison.both_sides)
    flip = page.get_by_role("button", name="Flip candidate")
    image = candidate_pane(page).locator(".stage img")
    page.keyboard.press("f")
    expect(flip).to_have_attribute("aria-pressed", "true")
    expect(image).to_have_attribute("style", re.compile(r"scaleX\(-1\)"))
    page.keyboard.press("n")
    expect(page.get_by_role("heading", level=1)).not_to_have_text(
        re.compile(f": {comparison.both_sides}$")
    )
    expect(flip).to_have_attribute("aria-pressed", "false")
    expect(image).not_to_have_attribute("style", re.compile(r"scaleX"))

    flip_query = page.get_by_role("button", name="Flip query")
    flip_query.click()
    page.keyboard.press("f")
    page.keyboard.press("i")
    expect(flip_query).to_have_attribute("aria-pressed", "true")
    page.get_by_role("button", name="Reset adjustments").click()
    for button in (flip_query, flip, page.get_by_role("button", name="Invert", exact=True)):
        expect(button).to_have_attribute("aria-pressed", "false")
    for index in (0, 1):
        style = page.locator(PANES).nth(index).locator(".stage img").get_attribute("style")
        assert "scaleX" not in style and "invert" not in style, style


def test_zooming_back_to_100_percent_is_centred(page: Page, comparison: Comparison):
    open_candidate(page, comparison, comparison.both_sides)
    viewport = page.locator(".viewport").first
    box = viewport.bounding_box()
    page.keyboard.press("+")
    zoomed = stage_transform(page, 0)
    page.mouse.move(box["x"] + 100, box["y"] + 100)
    page.mouse.down()
    page.mouse.move(box["x"] + 170, box["y"] + 140)
    page.mouse.up()
    # The browser may deliver a pointer move after a later key press: wait until the drag has
    # panned, so that the zoom back to 100% comes after it, as the examiner's did.
    stage = page.locator(PANES).first.locator(".stage").element_handle()
    page.wait_for_function("([s, before]) => s.style.transform !== before", arg=[stage, zoomed])
    assert "translate(0px, 0px)" not in stage_transform(page, 0)
    page.keyboard.press("-")
    expect(page.get_by_role("group", name="Zoom", exact=True)).to_contain_text("100%")
    for index in (0, 1):
        assert stage_transform(page, index) == "translate(0px, 0px) scale(1)"
        pane = page.locator(".viewport").nth(index).bounding_box()
        image = page.locator(PANES).nth(index).locator(".stage img").bounding_box()
        assert math.isclose(
            image["x"] + image["width"] / 2, pane["x"] + pane["width"] / 2, abs_tol=1
        ), (image, pane)
        assert math.isclose(
            image["y"] + image["height"] / 2, pane["y"] + pane["height"] / 2, abs_tol=1
        ), (image, pane)


def filters(page: Page) -> list[str]:
    return [
        page.locator(PANES).nth(i).locator(".stage img").evaluate("i => i.style.filter")
        for i in (0, 1)
    ]


def test_brightness_can_be_set_per_image(page: Page, comparison: Comparison):
    open_candidate(page, comparison, comparison.both_sides)
    target = page.get_by_label("Adjust", exact=True)
    brightness = page.get_by_label("Brightness")
    expect(target).to_have_value("both")
    target.select_option(label="Candidate")
    brightness.fill("150")
    query, candidate = filters(page)
    assert "brightness(100%)" in query and "brightness(150%)" in candidate, (query, candidate)
    target.select_option(label="Query")
    expect(brightness).to_have_value("100")
    brightness.fill("60")
    query, candidate = filters(page)
    assert "brightness(60%)" in query and "brightness(150%)" in candidate, (query, candidate)
    target.select_option(label="Both images")
    brightness.fill("80")
    assert all("brightness(80%)" in f for f in filters(page)), filters(page)


def test_a_typed_conclusion_is_kept_over_back_and_forward(page: Page, comparison: Comparison):
    open_candidate(page, comparison, comparison.both_sides)
    conclusion = page.get_by_label("Conclusion", exact=True)
    comment = page.get_by_label("Comment", exact=True)
    conclusion.select_option("possible")
    comment.fill("Same patellar outline; draft")
    page.get_by_role("button", name="Next candidate ›").click()
    heading = page.get_by_role("heading", level=1)
    expect(heading).not_to_have_text(re.compile(f": {comparison.both_sides}$"))
    expect(comment).to_have_value("")

    page.go_back()
    expect(heading).to_have_text(re.compile(f": {comparison.both_sides}$"))
    expect(comment).to_have_value("Same patellar outline; draft")
    expect(conclusion).to_have_value("possible")
    expect(page.locator("#conclusion-draft")).to_be_visible()
    page.go_forward()
    expect(comment).to_have_value("")
    page.go_back()
    expect(comment).to_have_value("Same patellar outline; draft")

    # Signed out, the draft goes with the examiner: whoever signs in next does not see it.
    url = page.url
    sign_out(page)
    sign_in(page, comparison.server.examiner_key)
    page.goto(url)
    expect(heading).to_have_text(re.compile(f": {comparison.both_sides}$"))
    expect(comment).to_have_value("")
    expect(page.locator("#conclusion-draft")).to_have_count(0)
    conclusion.select_option("possible")
    comment.fill("Same patellar outline; draft")

    # Recorded, the draft is gone: the form is empty when the candidate is opened again.
    page.get_by_role("button", name="Record conclusion").click()
    expect(page.locator("#conclusion-saved")).to_contain_text("Possible")
    page.reload()
    expect(heading).to_have_text(re.compile(f": {comparison.both_sides}$"))
    expect(page.get_by_label("Comment", exact=True)).to_have_value("")
    expect(page.locator("#conclusion-draft")).to_have_count(0)


def no_sideways_scroll(page: Page) -> None:
    width = page.evaluate("() => document.scrollingElement.scrollWidth")
    assert width <= page.evaluate("() => innerWidth"), width


def test_panes_side_by_side_down_to_1024_and_stacked_on_one_screen_below(
    page: Page, comparison: Comparison
):
    open_candidate(page, comparison, comparison.both_sides)
    for width, height in ((1366, 900), (1024, 768)):
        page.set_viewport_size({"width": width, "height": height})
        query, candidate = (page.locator(PANES).nth(i).bounding_box() for i in (0, 1))
        assert math.isclose(query["y"], candidate["y"], abs_tol=1), (width, query, candidate)
        assert query["x"] + query["width"] <= candidate["x"], (width, query, candidate)
    images_loaded(page)
    page.screenshot(path=SCREENSHOTS / "comparison-1024.png", full_page=True)

    for width in (800, 400):
        page.set_viewport_size({"width": width, "height": 900})
        no_sideways_scroll(page)
        page.locator(".panes").evaluate("panes => panes.scrollIntoView()")
        query, candidate = (page.locator(PANES).nth(i).bounding_box() for i in (0, 1))
        assert candidate["y"] >= query["y"] + query["height"], (width, query, candidate)
        for box in (query, candidate):
            # Scrolled to the panes' top, give or take the scroll's rounding to a pixel.
            assert box["y"] >= -1 and box["y"] + box["height"] <= 900, (width, box)
        # Each image keeps a useful height beside its caption and facts.
        for index in (0, 1):
            assert page.locator(".viewport").nth(index).bounding_box()["height"] >= 200, width
        if width == 800:
            images_loaded(page)
            page.screenshot(path=SCREENSHOTS / "comparison-800.png")
