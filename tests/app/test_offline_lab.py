"""The offline lab: the API documentation served whole by the service under a strict policy, the
headers every answer carries, originals and previews answered by their sha256 (ETag, HEAD,
If-None-Match), and which probes and documents need a key, against a real `radmatch serve` and,
for the documentation page, Debian's chromium."""

from __future__ import annotations

import hashlib
import re

import httpx
import pytest
from playwright.sync_api import expect

from tests.support.pages import watch
from tests.support.servers import new_server
from training.cohorts import read_knee_manifest

API = "/api/v1"
SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
ALWAYS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


@pytest.fixture(scope="module")
def radiograph(phantom_manifest) -> bytes:
    return read_knee_manifest(phantom_manifest)[0].path.read_bytes()


def assets(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html)


@SQLITE
def test_docs_load_only_the_service_own_files(server):
    """Today /docs loads swagger-ui from a CDN at a floating version, and /redoc too."""
    client = server.client()
    page = client.get("/docs")
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "script-src 'self';" in policy and "unsafe" not in policy
    assert "frame-ancestors 'none'" in policy
    assert "<script>" not in page.text  # no inline script: the policy would block it
    found = assets(page.text)
    assert any(path.endswith("swagger-ui-bundle.js") for path in found)
    for path in found:
        assert path.startswith("/") and not path.startswith("//"), path
        assert client.get(path).status_code == 200, path
    redoc = client.get("/redoc")
    assert redoc.status_code == 308 and redoc.headers["location"] == "/docs"


@SQLITE
def test_every_answer_carries_the_security_headers(server):
    client = server.client()
    for path, status in (
        ("/", 200),
        ("/docs", 200),
        ("/static/app.js", 200),
        ("/healthz", 200),
        (f"{API}/people", 401),
        ("/no-such-page", 404),
    ):
        response = client.get(path)
        assert response.status_code == status, path
        for name, value in ALWAYS.items():
            assert response.headers.get(name) == value, (path, name)
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"], path


def assert_tagged(client: httpx.Client, path: str, etag: str, caching: str) -> bytes:
    """GET, HEAD and a conditional GET of content named by etag; returns the content."""
    full = client.get(path)
    assert full.status_code == 200, full.text
    assert full.headers["etag"] == f'"{etag}"'
    assert full.headers["cache-control"] == caching
    head = client.head(path)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["etag"] == f'"{etag}"'
    assert int(head.headers["content-length"]) == len(full.content)
    for sent in (f'"{etag}"', f'"other", W/"{etag}"', "*"):
        again = client.get(path, headers={"If-None-Match": sent})
        assert again.status_code == 304 and again.content == b"", sent
        assert again.headers["etag"] == f'"{etag}"'
    assert client.get(path, headers={"If-None-Match": '"other"'}).status_code == 200
    return full.content


@SQLITE
def test_originals_and_previews_answer_by_their_sha256(server, radiograph):
    sha256 = hashlib.sha256(radiograph).hexdigest()
    with server.examiner() as client:
        person = client.post(f"{API}/people", json={"external_ref": "OFF-1"}).json()
        files = {"file": ("knee.png", radiograph, "application/octet-stream")}
        image = client.post(f"{API}/people/{person['id']}/images", files=files).json()
        found = client.post(f"{API}/search", files={"file": ("query", radiograph)}).json()
        original = f"{API}/images/{image['id']}/original"
        assert assert_tagged(client, original, sha256, "no-store") == radiograph
        query = f"{API}/searches/{found['search_id']}/query"
        assert assert_tagged(client, query, sha256, "no-store") == radiograph
        for preview in (f"{API}/images/{image['id']}/preview.png", f"{query}/preview.png"):
            png = assert_tagged(
                client, f"{preview}?size=64", f"{sha256}.64", "private, max-age=3600"
            )
            assert png.startswith(b"\x89PNG")
        other_size = client.get(f"{original.removesuffix('original')}preview.png?size=96")
        assert other_size.headers["etag"] == f'"{sha256}.96"'


@SQLITE
def test_metrics_and_the_api_document_need_a_key_by_default(server):
    anonymous, examiner = server.client(), server.examiner()
    assert anonymous.get("/healthz").status_code == 200
    assert anonymous.get("/readyz").status_code in (200, 503)
    for path in ("/metrics", "/openapi.json"):
        refused = anonymous.get(path)
        assert refused.status_code == 401, path
        assert "key" in refused.json()["detail"]
        assert examiner.get(path).status_code == 200, path
    assert "/api/v1/search" in examiner.get("/openapi.json").json()["paths"]


def test_which_endpoints_are_open_is_a_setting(tmp_path, checkpoint):
    url = f"sqlite:///{tmp_path / 'radmatch.db'}"
    running = new_server(tmp_path, url, checkpoint, open_endpoints='["metrics", "openapi"]')
    try:
        anonymous = running.client()
        assert anonymous.get("/metrics").status_code == 200
        assert anonymous.get("/openapi.json").status_code == 200
        assert anonymous.get("/readyz").status_code == 401
        assert running.examiner().get("/readyz").status_code in (200, 503)
    finally:
        running.stop()


@SQLITE
def test_docs_page_in_a_browser_asks_for_the_key(server, browser):
    """The page, under its policy, shows nothing without a key and the whole API with one; the
    key the examiner's page keeps for the tab is used too."""
    context = browser.new_context()
    context.set_default_timeout(30_000)
    external: list[str] = []
    context.route(
        re.compile(r"^(?!" + re.escape(server.url) + ")"),
        lambda route: (external.append(route.request.url), route.abort()),
    )
    tab = context.new_page()
    problems = watch(tab)
    tab.goto(f"{server.url}/docs")
    expect(tab.get_by_text("Failed to load API definition")).to_be_visible(timeout=30_000)
    tab.get_by_label("API key").fill(server.examiner_key)
    tab.get_by_role("button", name="Use this key").click()
    expect(tab.get_by_text("/api/v1/search", exact=True).first).to_be_visible(timeout=30_000)
    # A new tab of the same session, signed in on the examiner's page, needs no form.
    tab.evaluate("key => sessionStorage.setItem('radmatch.apiKey', key)", server.admin_key)
    tab.reload()
    expect(tab.get_by_text("/api/v1/admin/jobs", exact=True).first).to_be_visible(timeout=30_000)
    context.close()
    assert not external, external
    assert not problems, problems
