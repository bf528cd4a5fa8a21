"""The examiner's page in a real browser (Debian's chromium, driven by Playwright) against a real
`radmatch serve`: a case from search to conclusion with each candidate's likelihood ratio and the
open-set answer, a refused file, a blind review, and the admin view with its calibration's
validation and its jobs."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.pages import watched_tab
from tests.support.servers import WorkerProcess
from training.cohorts import read_knee_manifest
from training.records import ImageRecord

API = "/api/v1"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
# One database is enough to drive the page; the API tests cover PostgreSQL.
SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
# Two cores may be shared with other test runs: allow the page more than the default 5 s.
expect.set_options(timeout=15_000)
# The gallery's radiographs are dated; the query, five years later, is dated in the search form.
GALLERY_DATE = "2019-03-01"
QUERY_DATE = "2024-03-01"
VERBAL = re.compile(
    r"^((weak|moderate|moderately strong|strong|very strong|extremely strong) support: "
    r"(same person|different people)|no support either way)$"
)
TO_THE_SECOND = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC[+-]\d\d:\d\d")


@pytest.fixture
def page(browser: Browser):
    """A fresh tab, signed out, that fails the test on a script error or a blocked resource."""
    with watched_tab(browser) as tab:
        yield tab


@pytest.fixture(scope="module")
def baselines(phantom_manifest) -> list[ImageRecord]:
    """Each person's baseline right knee, one per person."""
    records = read_knee_manifest(phantom_manifest)
    return sorted(
        (r for r in records if r.visit_months == 0 and r.side == "R"), key=lambda r: r.person_id
    )


def put_gallery(server, baselines: list[ImageRecord]) -> dict[str, int]:
    """The people and their baseline radiographs, through the API; returns reference -> id."""
    people = {}
    with server.examiner() as client:
        for record in baselines:
            person = client.post(f"{API}/people", json={"external_ref": record.person_id})
            assert person.status_code == 201, person.text
            people[record.person_id] = person.json()["id"]
            response = client.post(
                f"{API}/people/{people[record.person_id]}/images",
                files={"file": (record.path.name, record.path.read_bytes(), "image/png")},
                data={
                    "side": record.side,
                    "body_part": "knee",
                    "acquisition_date": GALLERY_DATE,
                    "visit_months": record.visit_months,
                    "pixel_spacing_mm": record.pixel_spacing_mm,
                },
            )
            assert response.status_code == 201, response.text
    return people


def key_id(server, name: str) -> int:
    with server.examiner() as client:
        keys = client.get(f"{API}/examiners").json()
    return next(key["id"] for key in keys if key["name"] == name)


def sign_in(page: Page, key: str) -> None:
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def sign_out(page: Page) -> None:
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("API key")).to_be_visible()


def images_loaded(page: Page) -> None:
    """Previews arrive one by one through the API; a screenshot waits for all of them."""
    expect(page.locator("img:not([src])")).to_have_count(0)
    page.wait_for_function("() => [...document.images].every((image) => image.complete)")


def fact(page: Page, name: str):
    """The value beside a name in a list of facts (a <dl>)."""
    term = page.locator("dl.facts dt", has_text=re.compile(f"^{re.escape(name)}$"))
    return term.locator("xpath=following-sibling::dd[1]")


def candidates_table(page: Page):
    return page.get_by_role("table", name=re.compile(r"^Candidates of search"))


def history_table(page: Page):
    return page.get_by_role("table", name=re.compile(r"^Conclusions"))


def lr_text(log10_lr: float) -> str:
    """An LR as the page writes it: two significant figures, "1/x" below 1."""

    def two_figures(value: float) -> str:
        rounded = float(f"{value:.2g}")
        return f"{rounded:,.0f}" if rounded >= 10 else f"{rounded:g}"

    if log10_lr >= 0:
        return f"LR {two_figures(10**log10_lr)}"
    inverse = two_figures(10**-log10_lr)
    return "LR 1" if inverse == "1" else f"LR 1/{inverse}"


def test_lr_text_rounds_to_two_significant_figures():
    assert lr_text(math.log10(2345)) == "LR 2,300"
    assert lr_text(math.log10(1 / 40)) == "LR 1/40"
    assert lr_text(math.log10(1.34)) == "LR 1.3"
    assert lr_text(math.log10(0.97)) == "LR 1"


def record_conclusion(page: Page, conclusion: str, comment: str) -> None:
    page.get_by_label("Conclusion", exact=True).select_option(label=conclusion)
    page.get_by_label("Comment").fill(comment)
    page.get_by_role("button", name="Record conclusion").click()
    # Case-sensitive: the screen-reader announcer also says "Conclusion recorded: probable".
    expect(page.get_by_text(re.compile(f"^Recorded: {conclusion}"))).to_be_visible()


@SQLITE
def test_search_compare_and_conclude(server, baselines, page):
    people = put_gallery(server, baselines)
    # The query is the very bytes of one gallery image: an untrained model ranks an exact
    # duplicate first reliably, which a follow-up visit would not be.
    query = baselines[3]

    page.goto(server.url)
    sign_in(page, server.examiner_key)
    expect(page.get_by_role("link", name="Admin")).to_be_hidden()
    expect(page.get_by_role("heading", name="Cases", exact=True)).to_be_visible()
    page.get_by_label("Case number", exact=True).fill("UID-2024-031")
    page.get_by_label("Description").fill("Unidentified remains; right knee radiograph at autopsy.")
    page.get_by_role("button", name="Create case").click()
    expect(page.get_by_role("heading", name="Case UID-2024-031")).to_be_visible()
    case_id = int(re.search(r"#/cases/(\d+)", page.url).group(1))
    case_prior_is_saved(server, page, case_id)

    page.get_by_label("Pixel spacing (mm)").fill(str(query.pixel_spacing_mm))
    page.get_by_label("Date of the query radiograph").fill(QUERY_DATE)
    prior = page.get_by_label("Prior probability that the person is in the gallery")
    prior.fill("1")  # certainty is no prior
    assert not prior.evaluate("input => input.validity.valid")
    prior.fill("0.3")
    page.get_by_label("Choose a radiograph").set_input_files(query.path)
    first = candidates_table(page).get_by_role("row").nth(1)
    expect(first.get_by_role("cell").nth(0)).to_have_text("1")
    expect(first.get_by_role("cell").nth(1)).to_have_text(query.person_id)
    expect(first.get_by_role("cell").nth(3)).to_have_text(re.compile(r"^-?\d\.\d{3}$"))
    expect(candidates_table(page).get_by_role("row")).to_have_count(1 + len(people))
    expect(page.get_by_text("exact search", exact=False).first).to_be_visible()
    expect(page.get_by_text("embedded on cpu in fp32", exact=False).first).to_be_visible()
    expect(page.get_by_text(f"query dated {QUERY_DATE}", exact=False).first).to_be_visible()
    search = stored_search(server, page)
    candidates_show_their_evidence(page, search)
    open_set_answer_is_shown(page, search)
    images_loaded(page)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "case-page.png", full_page=True)

    refused_file_is_reported(server, page, case_id)
    compare_and_conclude(page, query, search)

    # The conclusion is in the case's history after a reload, signed by the examiner.
    page.get_by_role("link", name="Case UID-2024-031").click()
    page.reload()
    entry = history_table(page).get_by_role("row").nth(1)
    expect(entry).to_contain_text("examiner in tests")
    expect(entry).to_contain_text("Identification")
    expect(entry).to_contain_text("Same trabecular pattern and tibial spine outline.")
    expect(entry).to_contain_text(query.person_id)


def case_prior_is_saved(server, page: Page, case_id: int) -> None:
    """The case's prior, set in its details; a search that gives its own prior still wins."""
    page.get_by_label("Prior for this case").fill("0.2")
    page.get_by_role("button", name="Save case details").click()
    expect(page.get_by_label("Prior for this case")).to_have_value("0.2")
    with server.examiner() as client:
        assert client.get(f"{API}/cases/{case_id}").json()["prior_in_gallery"] == 0.2


def stored_search(server, page: Page) -> dict:
    """The search on the page, as the API answers it."""
    heading = page.get_by_role("heading", name=re.compile(r"^Search \d+ \(#\d+\)$"))
    search_id = int(re.search(r"#(\d+)", heading.inner_text()).group(1))
    with server.examiner() as client:
        answer = client.get(f"{API}/searches/{search_id}")
    assert answer.status_code == 200, answer.text
    return answer.json()


def candidates_show_their_evidence(page: Page, search: dict) -> None:
    """Each candidate's LR, rounded, with its verbal scale, and "bounded" exactly where the
    calibration's bounds capped it; the similarity beside it."""
    rows = candidates_table(page).get_by_role("row")
    for candidate in search["candidates"]:
        evidence = candidate["evidence"]
        assert evidence is not None, candidate
        cell = rows.nth(candidate["rank"]).get_by_role("cell").nth(2)
        expect(cell.locator(".lr")).to_have_text(lr_text(evidence["log10_lr"]))
        expect(cell.locator(".verbal")).to_have_text(VERBAL)
        if evidence["supports"] != "neither":
            expect(cell.locator(".verbal")).to_have_text(
                f"{evidence['verbal']} support: {evidence['supports']}"
            )
        expect(cell.locator(".badge-bounded")).to_have_count(1 if evidence["bounded"] else 0)
    if any(c["evidence"]["bounded"] for c in search["candidates"]):
        marker = candidates_table(page).locator(".badge-bounded").first
        expect(marker).to_have_attribute("title", re.compile("no stronger value"))


def open_set_answer_is_shown(page: Page, search: dict) -> None:
    answer = search["open_set"]
    assert answer["prior"] == 0.3 and answer["prior_source"] == "request", answer
    decision = page.get_by_text(re.compile(r"^Open-set answer: "))
    expect(decision).to_have_text(f"Open-set answer: {answer['decision'].capitalize()}")
    expect(decision).to_have_text(
        re.compile(r": (Candidate supported|Inconclusive|Probably not in the gallery)$")
    )
    expect(fact(page, "Prior probability")).to_have_text("0.3 (given with this search)")
    expect(fact(page, "Probability the person is in the gallery")).to_have_text(
        re.compile(r"^(0\.\d\d|above 0\.99|below 0\.01)$")
    )
    expect(page.get_by_text(answer["statement"])).to_be_visible()
    expect(page.get_by_text("radmatch never declares an identification").first).to_be_visible()


def refused_file_is_reported(server, page: Page, case_id: int) -> None:
    """A file that is no radiograph, dropped on the drop zone: the API's own words in the alert,
    and the page carries on."""
    with server.examiner() as client:
        answer = client.post(
            f"{API}/cases/{case_id}/searches", files={"file": ("bad.png", b"not an image")}
        )
    assert 400 <= answer.status_code < 500, answer.text
    detail = answer.json()["detail"]

    dropped = page.evaluate_handle(
        """() => {
            const files = new DataTransfer();
            files.items.add(new File(["not an image"], "bad.png", { type: "image/png" }));
            return files;
        }"""
    )
    page.locator("label.dropzone").dispatch_event("drop", {"dataTransfer": dropped})
    alert = page.get_by_role("alert")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text(re.compile(re.escape(detail), re.IGNORECASE))
    expect(page.get_by_label("Choose a radiograph")).to_be_enabled()
    expect(candidates_table(page)).to_have_count(1)
    page.get_by_role("button", name="Dismiss").click()
    expect(alert).to_be_hidden()


def compare_and_conclude(page: Page, query: ImageRecord, search: dict) -> None:
    first = candidates_table(page).get_by_role("row").nth(1)
    first.get_by_role("link", name=re.compile(r"^Compare")).click()
    heading = page.get_by_role("heading", level=1)
    expect(heading).to_have_text(re.compile(rf"candidate 1 of \d+: {query.person_id}$"))
    expect(page.get_by_role("heading", name="Keyboard shortcuts")).to_be_visible()
    evaluative_statement_is_shown(page, search, rank=1)

    invert = page.get_by_role("button", name="Invert", exact=True)
    expect(invert).to_have_attribute("aria-pressed", "false")
    page.keyboard.press("i")
    expect(invert).to_have_attribute("aria-pressed", "true")
    expect(page.locator(".stage img").first).to_have_css("filter", re.compile(r"invert\(1\)"))
    page.keyboard.press("i")
    expect(invert).to_have_attribute("aria-pressed", "false")

    page.keyboard.press("ArrowRight")
    expect(heading).to_have_text(re.compile(r"candidate 2 of"))
    expect(page).to_have_url(re.compile(r"/compare/2$"))
    evaluative_statement_is_shown(page, search, rank=2)
    page.keyboard.press("p")
    expect(heading).to_have_text(re.compile(rf"candidate 1 of \d+: {query.person_id}$"))

    both_panes_move_together(page)
    flip = page.get_by_role("button", name="Flip candidate")
    page.keyboard.press("f")
    expect(flip).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("f")
    expect(flip).to_have_attribute("aria-pressed", "false")

    record_conclusion(page, "Identification", "Same trabecular pattern and tibial spine outline.")
    images_loaded(page)
    page.screenshot(path=SCREENSHOTS / "comparison.png", full_page=True)


def evaluative_statement_is_shown(page: Page, search: dict, rank: int) -> None:
    """The ENFSI-form sentence for the candidate, and what it holds under: the model version, the
    years between the images (or why the pooled calibration), the calibration, its bounds."""
    evidence = search["candidates"][rank - 1]["evidence"]
    panel = page.get_by_role("region", name="Strength of evidence")
    ratio = lr_text(abs(evidence["log10_lr"])).removeprefix("LR ")
    if ratio == "1":
        sentence = "is about as probable if the query and the candidate's image are of the same"
    elif evidence["log10_lr"] > 0:
        sentence = (
            f"is about {ratio} times more probable if the query and the candidate's image are of "
            "the same person than if they are of different people."
        )
    else:
        sentence = (
            f"is about {ratio} times more probable if the query and the candidate's image are of "
            "different people than if they are of the same person."
        )
    statement = panel.locator(".evaluative")
    expect(statement).to_contain_text(f"The similarity observed {sentence}")
    expect(statement).to_contain_text(
        re.compile(
            r"This (is [a-z ]+ support for (the same person|different people) rather than|"
            r"supports neither)"
        )
    )
    expect(statement).to_contain_text(
        evidence["verbal"] if evidence["verbal"] != "no support" else "neither"
    )
    expect(fact(page, "Model version")).to_have_text(f"#{search['model_version']['id']}")
    years = fact(page, "Years between the images")
    assert evidence["years_between"] == 5.0, evidence
    expect(years).to_contain_text("5.0 years")
    if evidence["note"]:
        expect(years).to_contain_text("pooled")
    expect(fact(page, "Calibration")).to_have_text(
        f"#{evidence['calibration_id']} ({search['calibration']['method']}), "
        f"curve {evidence['band']}"
    )
    bounds = fact(page, "Bounds (ELUB)")
    expect(bounds).to_contain_text(" to ")
    expect(bounds.locator(".badge-bounded")).to_have_count(1 if evidence["bounded"] else 0)


def both_panes_move_together(page: Page) -> None:
    """Zoom from the keyboard and a drag on the query pane: the candidate pane follows."""
    zoom = page.get_by_role("group", name="Zoom", exact=True)
    page.keyboard.press("+")
    expect(zoom).to_contain_text("125%")
    box = page.locator(".viewport").first.bounding_box()
    page.mouse.move(box["x"] + 100, box["y"] + 100)
    page.mouse.down()
    page.mouse.move(box["x"] + 160, box["y"] + 130)
    page.mouse.up()
    stages = page.locator(".stage")
    transform = stages.first.evaluate("stage => stage.style.transform")
    assert "scale(1.25)" in transform and "translate(0px, 0px)" not in transform, transform
    expect(stages.nth(1)).to_have_attribute("style", re.compile(re.escape(transform)))
    page.keyboard.press("0")
    expect(zoom).to_contain_text("100%")


@SQLITE
def test_blind_review_hides_others_conclusions_until_the_reviewer_concludes(
    server, baselines, page
):
    """The reviewer sees no one else's conclusion and the case as it was when asked; what they
    record blind is marked so in the history; a second request is withdrawn by its asker."""
    people = put_gallery(server, baselines)
    query = baselines[1]
    reviewer_key = server.new_key("reviewer in tests", "examiner")
    with server.examiner() as client:
        case = client.post(f"{API}/cases", json={"number": "UID-7", "description": ""}).json()
        search = client.post(
            f"{API}/cases/{case['id']}/searches",
            files={"file": ("query.png", query.path.read_bytes())},
            data={"pixel_spacing_mm": query.pixel_spacing_mm},
        ).json()
        concluded = client.post(
            f"{API}/cases/{case['id']}/conclusions",
            json={
                "search_id": search["search_id"],
                "person_id": people[query.person_id],
                "conclusion": "identification",
                "comment": "First examiner's reading",
            },
        )
        assert concluded.status_code == 201, concluded.text

    page.goto(f"{server.url}/#/cases/{case['id']}")
    sign_in(page, server.examiner_key)
    reviewers = page.get_by_label("Reviewer")
    expect(reviewers.locator("option")).to_have_text(["reviewer in tests"])  # not an admin
    reviewers.select_option(str(key_id(server, "reviewer in tests")))
    page.get_by_role("button", name="Ask for a blind review").click()
    expect(page.get_by_text("Blind review by reviewer in tests")).to_contain_text(
        "awaiting their conclusion"
    )
    with server.examiner() as client:
        marked = client.patch(f"{API}/cases/{case['id']}", json={"status": "identified"})
        assert marked.status_code == 200, marked.text

    sign_out(page)
    sign_in(page, reviewer_key)
    expect(page.get_by_role("heading", name="Case UID-7")).to_be_visible()
    inbox_link = page.get_by_role("link", name="Reviews for you 1")
    expect(inbox_link).to_be_visible()
    inbox_link.click()
    inbox = page.get_by_role("region", name="Blind reviews waiting for you")
    expect(inbox).to_contain_text(f"Search 1 (#{search['search_id']})")
    expect(inbox).to_contain_text("examiner in tests")
    page.screenshot(path=SCREENSHOTS / "reviews-inbox.png")
    inbox.get_by_role("link", name="Case UID-7").click()
    expect(page.get_by_role("heading", name="Case UID-7")).to_be_visible()
    expect(page.locator(".page-head .badge")).to_have_text("Open")
    expect(page.get_by_text("hidden, and the case is shown as it was")).to_be_visible()
    expect(page.get_by_text("First examiner's reading")).to_have_count(0)
    expect(history_table(page)).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("^Withdraw"))).to_have_count(0)

    candidates_table(page).get_by_role("link", name=re.compile(r"^Compare candidate 1,")).click()
    expect(page.get_by_text("Blind review: other examiners' conclusions")).to_be_visible()
    record_conclusion(page, "Probable", "Second examiner, reading blind")
    page.get_by_role("link", name="Case UID-7").click()

    history = history_table(page)
    expect(history).to_contain_text("First examiner's reading")
    expect(history.get_by_role("row").filter(has_text="reading blind")).to_contain_text(
        "Made blind"
    )
    expect(history.get_by_role("row").filter(has_text="First examiner")).not_to_contain_text(
        "Made blind"
    )
    expect(page.locator(".page-head .badge")).to_have_text("Identified")
    expect(page.get_by_text("hidden, and the case is shown")).to_have_count(0)
    expect(page.get_by_text("Blind review by reviewer in tests")).to_contain_text("concluded")
    expect(page.locator("#reviews-link")).to_be_hidden()

    with server.client(reviewer_key) as client:
        asked = client.post(
            f"{API}/cases/{case['id']}/reviews",
            json={
                "search_id": search["search_id"],
                "reviewer_key_id": key_id(server, "examiner in tests"),
            },
        )
    assert asked.status_code == 422, asked.text  # the examiner concluded on it already
    sign_out(page)
    sign_in(page, server.examiner_key)
    with server.examiner() as client:
        second = client.post(
            f"{API}/cases/{case['id']}/searches",
            files={"file": ("query.png", query.path.read_bytes())},
            data={"pixel_spacing_mm": query.pixel_spacing_mm},
        ).json()
        client.post(
            f"{API}/cases/{case['id']}/reviews",
            json={
                "search_id": second["search_id"],
                "reviewer_key_id": key_id(server, "reviewer in tests"),
            },
        )
    page.reload()
    page.get_by_role("button", name="Withdraw the blind review asked of reviewer in tests").click()
    expect(
        page.get_by_role("list", name=f"Blind reviews of search #{second['search_id']}")
    ).to_contain_text("withdrawn by examiner in tests")


@SQLITE
def test_admin_view_shows_the_index_and_runs_jobs(
    server, baselines, page, calibration_manifest, tmp_path
):
    put_gallery(server, baselines[:3])
    with server.admin() as client:
        ready = client.get("/readyz").json()["checks"]
        active = next(m for m in client.get(f"{API}/admin/models").json() if m["active"])

    page.goto(f"{server.url}/#/admin")
    sign_in(page, server.admin_key)
    expect(page.get_by_role("heading", name="Administration")).to_be_visible()
    expect(fact(page, "Index size")).to_have_text(f"{ready['index_size']} images")
    expect(fact(page, "Index kind")).to_have_text("flat")
    expect(fact(page, "Index generation")).to_have_text(str(ready["index_generation"]))
    expect(fact(page, "Active model version")).to_contain_text(f"#{active['id']}")
    models = page.get_by_role("table", name="Registered model versions")
    expect(models.get_by_role("row").nth(1)).to_contain_text("Active")
    expect(models.get_by_role("row").nth(1)).to_contain_text("0.000")  # val_mAP
    metrics_are_explained(page)
    calibration_is_validated(server, page, active)
    calibration_is_refitted(page, active, calibration_manifest)
    registration_refusal_is_plain(server, page)

    # No worker runs beside this server yet, so the rebuild stays queued until cancelled here;
    # a second click queues nothing and says which job is on its way.
    rebuild = page.get_by_role("button", name="Rebuild index")
    rebuild.click()
    jobs = page.get_by_role("table", name=re.compile(r"^Jobs"))
    job = jobs.get_by_role("row").nth(1)
    expect(job).to_contain_text("index rebuild")
    expect(job).to_contain_text("Queued")
    queued_id = int(job.get_by_role("cell").first.inner_text().lstrip("#"))
    service = page.get_by_role("region", name="Service")
    expect(service.get_by_text(f"Index rebuild queued as job #{queued_id}.")).to_be_visible()
    rebuild.click()
    expect(
        service.get_by_text(re.compile(rf"^Index rebuild job #{queued_id} is already queued"))
    ).to_be_visible()
    expect(jobs.get_by_role("row").nth(1).get_by_role("cell").first).to_have_text(f"#{queued_id}")
    expect(jobs.get_by_role("row", name=re.compile(r"index rebuild"))).to_have_count(1)
    job.get_by_role("button", name=re.compile(r"^Cancel")).click()
    expect(job).to_contain_text("Cancelled")
    expect(job.get_by_role("button")).to_have_count(0)
    rebuild_runs_and_the_index_facts_follow(server, page, tmp_path)
    network_failure_is_reported(server, page)


def metrics_are_explained(page: Page) -> None:
    """Each fact has a line of help under it and a tooltip; each metric column a tooltip."""
    for name, words in (
        ("Index generation", "addition or removal of an image"),
        ("Index build", "rebuilt and published"),
        ("Index size", "How many images the index searches"),
    ):
        help_line = fact(page, name).locator("xpath=following-sibling::dd[1]")
        expect(help_line).to_have_class("fact-help")
        expect(help_line).to_contain_text(words)
        term = page.locator("dl.facts dt", has_text=re.compile(f"^{name}$"))
        expect(term).to_have_attribute("title", re.compile(re.escape(words)))
    models = page.get_by_role("table", name="Registered model versions")
    for name, words in (("val_mAP", "Mean average precision"), ("Dimension", "embedding")):
        expect(models.get_by_role("columnheader", name=name)).to_have_attribute(
            "title", re.compile(words)
        )
    page.get_by_text("What the columns mean").first.click()
    expect(page.get_by_text(re.compile(r"^Live images that have this version"))).to_be_visible()


def registration_refusal_is_plain(server, page: Page) -> None:
    """A file that is not there is refused in a sentence, without the server's paths."""
    data_dir = server.env["RADMATCH_DATA_DIR"]
    (Path(data_dir) / "models").mkdir(parents=True, exist_ok=True)
    form = page.get_by_role("region", name="Register a model")
    form.get_by_label("Checkpoint path").fill("missing.pt")
    form.get_by_role("button", name="Register model").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("There is no file named 'missing.pt' in the models directory")
    expect(alert).not_to_contain_text(data_dir)
    expect(alert).not_to_contain_text("Errno")


def rebuild_runs_and_the_index_facts_follow(server, page: Page, tmp_path: Path) -> None:
    """A worker runs the next rebuild: its row ends with what it did, to the second, and the
    index build and its time on the page are the server's after the job."""
    expect(fact(page, "Index build")).to_have_text("0")
    expect(fact(page, "Last rebuilt")).to_have_text(re.compile(r"^Not since"))
    page.get_by_role("button", name="Rebuild index").click()
    jobs = page.get_by_role("table", name=re.compile(r"^Jobs"))
    job = jobs.get_by_role("row").nth(1)
    expect(job).to_contain_text("Queued")
    job_id = int(job.get_by_role("cell").first.inner_text().lstrip("#"))
    worker = WorkerProcess(server.env, tmp_path / "worker.log", once=True).start()
    try:
        expect(job).to_contain_text("Succeeded", timeout=180_000)
    finally:
        worker.stop()
    with server.admin() as client:
        finished = client.get(f"{API}/admin/jobs/{job_id}").json()
        active = next(m for m in client.get(f"{API}/admin/models").json() if m["active"])
        ready = client.get("/readyz").json()["checks"]
    result = finished["result"]
    message = (
        f"flat index of {result['images']} images (generation {result['index_generation']}) "
        f"published as build 1 of model version {active['id']}"
    )
    assert finished["progress_message"] == message
    cells = job.get_by_role("cell")
    expect(cells.nth(4)).to_have_text(message)  # not "publishing the index"
    for column in (5, 6, 7):  # created, started, finished
        expect(cells.nth(column)).to_have_text(TO_THE_SECOND)
    assert active["index_build"] == 1 and active["index_published_by_job"] == job_id
    expect(fact(page, "Index build")).to_have_text("1")
    expect(fact(page, "Last rebuilt")).to_have_text(TO_THE_SECOND)
    expect(fact(page, "Last rebuilt")).to_contain_text(f"by job #{job_id}")
    expect(fact(page, "Index generation")).to_have_text(str(ready["index_generation"]))


def calibration_is_validated(server, page: Page, active: dict) -> None:
    """The active version's calibration, its validation numbers as the API reports them, and the
    four plots, fetched with the key."""
    calibration = active["calibration"]
    assert calibration is not None, active
    models = page.get_by_role("table", name="Registered model versions")
    expect(models.get_by_role("row").nth(1)).to_contain_text(
        f"#{calibration['id']} ({calibration['method']})"
    )
    panel = page.get_by_role("region", name="Calibration and validation")
    expect(panel.get_by_label("Model version", exact=True)).to_have_value(str(active["id"]))
    curves = panel.get_by_role("table", name=re.compile(r"^Curves of calibration"))
    expect(curves.get_by_role("row")).to_have_count(1 + len(calibration["curves"]))
    expect(curves.get_by_role("row").nth(1)).to_contain_text("pooled")

    with server.admin() as client:
        answer = client.get(f"{API}/admin/models/{active['id']}/validation")
    assert answer.status_code == 200, answer.text
    report = answer.json()["report"]
    panel.get_by_role("button", name=re.compile(r"^Show the validation report")).click()
    expect(fact(page, "Cllr")).to_have_text(f"{report['cllr']:.3f}")
    expect(fact(page, "Cllr_min (discrimination)")).to_have_text(f"{report['cllr_min']:.3f}")
    expect(fact(page, "Cllr_cal (calibration loss)")).to_have_text(f"{report['cllr_cal']:.3f}")
    expect(fact(page, "Equal error rate")).to_have_text(f"{report['eer'] * 100:.1f}%")
    expect(fact(page, "Bounds (ELUB), as LRs")).to_have_text(
        f"{lr_text(report['elub'][0])} to {lr_text(report['elub'][1])}".replace("LR ", "")
    )
    misleading = report["misleading"]["same_person_below_1"]
    expect(fact(page, "Same-person pairs with LR below 1")).to_have_text(f"{misleading * 100:.1f}%")
    bands = panel.get_by_role("table", name=re.compile(r"^Validation by years"))
    expect(bands.get_by_role("row")).to_have_count(1 + len(report["bands"]))

    plots = panel.get_by_role("list", name=re.compile(r"^Validation plots"))
    expect(plots.get_by_role("img")).to_have_count(4)
    page.wait_for_function(
        """() => {
            const plots = [...document.querySelectorAll(".plots img")];
            return plots.length === 4 && plots.every((img) => img.complete && img.naturalWidth > 0);
        }"""
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    panel.screenshot(path=SCREENSHOTS / "admin-validation.png")


def calibration_is_refitted(page: Page, active: dict, manifest: Path) -> None:
    """A refit is a job; none runs here (no worker), so it is cancelled."""
    panel = page.get_by_role("region", name="Calibration and validation")
    panel.get_by_label("Calibration manifest path").fill(str(manifest))
    panel.get_by_label("Method", exact=True).select_option("kde")
    panel.get_by_role("button", name="Refit the calibration").click()
    expect(panel.get_by_text(re.compile(r"^Calibration job #\d+ is queued"))).to_be_visible()
    job = page.get_by_role("table", name=re.compile(r"^Jobs")).get_by_role("row").nth(1)
    expect(job).to_contain_text("calibration")
    expect(job).to_contain_text("Queued")
    job.get_by_role("button", name=re.compile(r"^Cancel")).click()
    expect(job).to_contain_text("Cancelled")


def network_failure_is_reported(server, page: Page) -> None:
    """With the service gone, the page says so in plain words instead of going blank."""
    server.stop()
    page.get_by_role("link", name="Cases").click()
    expect(page.get_by_role("alert")).to_contain_text("Cannot reach the radmatch service")
    expect(page.get_by_role("banner")).to_be_visible()
