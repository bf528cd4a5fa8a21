"""Who may call what, against a real `radmatch serve` on SQLite and on PostgreSQL.

Every route is called by every kind of caller: no key, an empty one, one that is not a key at
all, an unknown key, a known key's prefix with a wrong secret, a revoked key, an examiner's key
and an admin's. The routes come from the running server's OpenAPI document, checked against the
app's own route table, so that a new endpoint cannot escape the matrix. Public routes answer
anyone; every /api/v1 route refuses anyone without a live key (401); ADMIN_ONLY, kept here by
hand, must be exactly the routes that refuse an examiner (403). A refused call changes nothing,
and every change a key makes is in the audit log under that key. Keys are stored only as hashes,
and a revoked key is refused from its next request on. No answer shows a server path or a stack
trace."""

from __future__ import annotations

import io
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import sqlalchemy as sa
from fastapi.routing import iter_route_contexts
from PIL import Image
from starlette.routing import Mount

from app.access.keys import create_key, revoke_key
from app.core.config import Settings
from app.main import create_app
from app.serving.service import Service
from app.storage.database import make_engine, session_factory, upgrade
from tests.support.databases import new_postgres_database
from tests.support.servers import REPO, Server, prepare_database, service_env

API = "/api/v1"

# Routes anyone may call. The ones the OpenAPI document leaves out are the page, its static files
# and the documentation itself.
PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
}
UNDOCUMENTED_PUBLIC = {
    ("GET", "/"): "/",
    ("GET", "/static/{path}"): "/static/app.js",
    ("GET", "/docs"): "/docs",
    ("GET", "/static-docs/{path}"): "/static-docs/swagger-ui-bundle.js",
    ("GET", "/docs-assets/{path}"): "/docs-assets/swagger-init.js",
    ("GET", "/redoc"): "/redoc",
}
# Outside the API, needing a key by default (RADMATCH_OPEN_ENDPOINTS).
UNDOCUMENTED_KEYED = {("GET", "/openapi.json"): "/openapi.json"}
KEYED_PROBES = {("GET", "/metrics")}
# Routes an examiner's key may not call.
ADMIN_ONLY = {
    ("DELETE", f"{API}/people/{{person_id}}"),
    ("DELETE", f"{API}/images/{{image_id}}"),
    ("POST", f"{API}/admin/index/rebuild"),
    ("POST", f"{API}/admin/training-jobs"),
    ("GET", f"{API}/admin/models"),
    ("POST", f"{API}/admin/models"),
    ("POST", f"{API}/admin/models/{{version_id}}/activate"),
    ("POST", f"{API}/admin/models/{{version_id}}/calibrations"),
    ("GET", f"{API}/admin/models/{{version_id}}/validation"),
    ("GET", f"{API}/admin/models/{{version_id}}/validation/{{plot}}.png"),
    ("GET", f"{API}/admin/jobs"),
    ("GET", f"{API}/admin/jobs/{{job_id}}"),
    ("POST", f"{API}/admin/jobs/{{job_id}}/cancel"),
    ("POST", f"{API}/admin/dicom/sources"),
    ("GET", f"{API}/admin/dicom/sources"),
    ("DELETE", f"{API}/admin/dicom/sources/{{source_id}}"),
    ("POST", f"{API}/admin/dicomweb/servers"),
    ("GET", f"{API}/admin/dicomweb/servers"),
    ("DELETE", f"{API}/admin/dicomweb/servers/{{name}}"),
    ("POST", f"{API}/admin/dicomweb/servers/{{name}}/pulls"),
}
# DICOMweb's own root, outside API_PREFIX as DICOMweb clients expect, with the same keys.
DICOMWEB = "/dicomweb/"
STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
# An id that names nothing, for a path parameter this file does not know.
UNKNOWN_ID = 999_999


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database(request, tmp_path_factory) -> Iterator[str]:
    """A new database for this module's server: a SQLite file, or a PostgreSQL database dropped
    afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('access-db') / 'radmatch.db'}"
        return
    with new_postgres_database() as url:
        yield url


class Site:
    """The server, the keys that call it, and every answer body it gave."""

    def __init__(self, server: Server):
        self.server = server
        self.keys: dict[str, str] = {
            "admin": server.admin_key,
            "examiner": server.examiner_key,
        }
        self.bodies: list[tuple[str, bytes]] = []
        self.images = 0
        self._engine: sa.Engine | None = None
        self._clients: dict[str | None, httpx.Client] = {}

    def client(self, key: str | None = None) -> httpx.Client:
        """The client sending this key (or none): one each, its connection kept alive."""
        if key not in self._clients:
            self._clients[key] = httpx.Client(
                base_url=self.server.url,
                headers={} if key is None else {"X-API-Key": key},
                timeout=60,
                event_hooks={"response": [self._keep]},
            )
        return self._clients[key]

    def _keep(self, response: httpx.Response) -> None:
        response.read()
        path = response.request.url.path
        body = response.content
        if path.startswith(f"{API}/admin/models") and response.status_code < 300:
            # The checkpoint file an admin registered is shown back to admins by design (the
            # admin page lists it); it is the one server path an answer may hold.
            body = json.dumps(without_key(response.json(), "checkpoint_path")).encode()
        self.bodies.append((f"{response.request.method} {path}", body))

    def engine(self) -> sa.Engine:
        """The test's own connections to the server's database."""
        if self._engine is None:
            self._engine = sa.create_engine(self.server.env["RADMATCH_DATABASE_URL"])
        return self._engine

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        if self._engine is not None:
            self._engine.dispose()

    def png(self) -> bytes:
        """A radiograph-sized picture not uploaded before."""
        self.images += 1
        rng = np.random.default_rng(self.images)
        out = io.BytesIO()
        Image.fromarray(rng.integers(0, 65535, (80, 80), dtype=np.uint16)).save(out, "PNG")
        return out.getvalue()

    def assert_nothing_revealed(self) -> None:
        data_dir = Path(self.server.env["RADMATCH_DATA_DIR"])
        never = {str(data_dir), str(data_dir.resolve()), str(REPO), "/tmp/", "Traceback", 'File "'}
        for label, body in self.bodies:
            text = body.decode("latin-1")
            shown = [secret for secret in never if secret in text]
            assert not shown, f"{label} answered with {shown}: {text[:500]}"


def without_key(value: Any, name: str) -> Any:
    if isinstance(value, dict):
        return {k: without_key(v, name) for k, v in value.items() if k != name}
    if isinstance(value, list):
        return [without_key(v, name) for v in value]
    return value


def revoke(server: Server, key_id: int) -> None:
    engine = make_engine(server.env["RADMATCH_DATABASE_URL"])
    try:
        with session_factory(engine).begin() as session:
            revoke_key(session, key_id)
    finally:
        engine.dispose()


def new_key(server: Server, name: str, role: str, revoked: bool = False) -> tuple[int, str]:
    engine = make_engine(server.env["RADMATCH_DATABASE_URL"])
    try:
        with session_factory(engine).begin() as session:
            row, key = create_key(session, name, role)
            if revoked:
                revoke_key(session, row.id)
            return row.id, key
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def site(database, tmp_path_factory, checkpoint) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("access")
    admin, examiner = prepare_database(database)
    server = Server(
        # The sweep sends hundreds of wrong keys from one address: not throttled here
        # (tests/app/test_insider_limits.py is where throttling is shown).
        env=service_env(root / "data", database, checkpoint)
        | {"RADMATCH_KEY_FAILURES_ALLOWED": "1000000"},
        log=root / "server.log",
        admin_key=admin,
        examiner_key=examiner,
    )
    server.start()
    running = Site(server)
    _, running.keys["revoked"] = new_key(server, "revoked examiner", "examiner", revoked=True)
    yield running
    running.close()
    server.stop()


def row_counts(site: Site) -> dict[str, int]:
    with site.engine().connect() as connection:
        return {
            name: connection.scalar(sa.select(sa.func.count()).select_from(sa.table(name)))
            for name in sa.inspect(connection).get_table_names()
        }


def audit_since(site: Site, last_id: int) -> list[tuple[int, int | None, str]]:
    """Audit entries after `last_id`: (id, key_id, action)."""
    with site.engine().connect() as connection:
        rows = connection.execute(
            sa.text("SELECT id, key_id, action FROM audit_log WHERE id > :last ORDER BY id"),
            {"last": last_id},
        ).all()
    return [tuple(row) for row in rows]


def last_audit_id(site: Site) -> int:
    with site.engine().connect() as connection:
        return connection.scalar(sa.text("SELECT coalesce(max(id), 0) FROM audit_log"))


# --- the routes ----------------------------------------------------------------------------------


def documented_routes(spec: dict) -> dict[tuple[str, str], dict]:
    return {
        (method.upper(), path): operation
        for path, methods in spec["paths"].items()
        for method, operation in methods.items()
    }


def app_routes(tmp_path: Path) -> set[tuple[str, str]]:
    """Every (method, path) the app serves, from its route table: the app built by the same
    factory as the server's, on a scratch database of its own."""
    url = f"sqlite:///{tmp_path / 'routes.db'}"
    upgrade(url)
    service = Service.open(
        Settings(data_dir=tmp_path / "data", database_url=url), with_index=False, with_model=False
    )
    try:
        app = create_app(service)
        found = set()
        for route in iter_route_contexts(app.routes):  # included routers' routes, prefixed
            if isinstance(route.original_route, Mount):
                found.add(("GET", route.path + "/{path}"))
                continue
            for method in route.methods or ():
                if method != "HEAD":  # served with every GET
                    found.add((method, route.path))
        return found
    finally:
        service.close()


def test_the_matrix_covers_every_route(site, tmp_path):
    spec = site.client(site.keys["admin"]).get("/openapi.json").json()
    documented = documented_routes(spec)
    assert app_routes(tmp_path) == set(documented) | set(UNDOCUMENTED_PUBLIC) | set(
        UNDOCUMENTED_KEYED
    )
    assert set(documented) >= ADMIN_ONLY
    for route, operation in documented.items():
        _, path = route
        if route in PUBLIC:
            assert not operation.get("security"), route
        else:
            assert path.startswith((f"{API}/", DICOMWEB)) or route in KEYED_PROBES, (
                f"{route} is neither public nor under {API}"
            )
            assert operation.get("security") == [{"APIKeyHeader": []}], route


class Objects:
    """Real objects for the routes' path parameters: a person with an image, a case with a
    search, a job, the model version."""

    def __init__(self, site: Site):
        examiner, admin = site.client(site.keys["examiner"]), site.client(site.keys["admin"])
        person = examiner.post(f"{API}/people", json={"external_ref": "ACCESS-P"}).json()
        files = {"file": ("knee.png", site.png())}
        image = examiner.post(f"{API}/people/{person['id']}/images", files=files).json()
        case = examiner.post(f"{API}/cases", json={"number": "ACCESS-C"}).json()
        files = {"file": ("query.png", site.png())}
        found = examiner.post(f"{API}/cases/{case['id']}/searches", files=files)
        assert found.status_code == 200, found.text
        job = admin.post(f"{API}/admin/index/rebuild")
        assert job.status_code == 202, job.text
        self.person_id = person["id"]
        self.ids = {
            "person_id": person["id"],
            "image_id": image["id"],
            "case_id": case["id"],
            "search_id": found.json()["search_id"],
            "job_id": job.json()["id"],
            "version_id": admin.get(f"{API}/admin/models").json()[0]["id"],
            "plot": "tippett",
        }
        reviewer = site.client(site.server.new_key("reviewer in access tests", "examiner"))
        self.reviewer_key_id = reviewer.get(f"{API}/me").json()["id"]
        self.calls = 0

    def remember(self, route: tuple[str, str], response: httpx.Response) -> None:
        """A review asked for is the one the withdrawal route (next in order) withdraws."""
        if route == ("POST", f"{API}/cases/{{case_id}}/reviews") and response.status_code == 201:
            self.ids["review_id"] = response.json()["id"]

    def url(self, path: str) -> str:
        for name in [part[1:-1] for part in path.split("/") if part.startswith("{")]:
            path = path.replace("{" + name + "}", str(self.ids.get(name, UNKNOWN_ID)))
        return path

    def request(self, site: Site, route: tuple[str, str], operation: dict | None) -> dict:
        """A plausible request for the route: real ids, a body that passes validation where this
        file knows the route, else one of the right kind."""
        method, path = route
        self.calls += 1
        unique = f"ACCESS-{self.calls}"
        request: dict[str, Any] = {"method": method, "url": self.url(path)}
        if method == "DELETE":
            request["params"] = {"reason": "access matrix"}
        bodies = {
            ("POST", f"{API}/people"): {"external_ref": unique},
            ("POST", f"{API}/cases"): {"number": unique},
            ("PATCH", f"{API}/cases/{{case_id}}"): {"description": unique},
            ("POST", f"{API}/cases/{{case_id}}/conclusions"): {
                "search_id": self.ids["search_id"],
                "person_id": self.person_id,
                "conclusion": "possible",
            },
            ("POST", f"{API}/cases/{{case_id}}/reviews"): {
                "search_id": self.ids["search_id"],
                "reviewer_key_id": self.reviewer_key_id,
            },
            ("POST", f"{API}/admin/training-jobs"): {"preset": "smoke"},
            ("POST", f"{API}/admin/models"): {"checkpoint_path": "/nowhere/checkpoint.pt"},
        }
        content = (operation or {}).get("requestBody", {}).get("content", {})
        if route in bodies:
            request["json"] = bodies[route]
        elif "multipart/form-data" in content:
            request["files"] = {"file": ("image.png", site.png())}
        elif "application/json" in content:
            request["json"] = {}
        return request


def routes_in_order(spec: dict) -> list[tuple[tuple[str, str], dict | None]]:
    """Every route, deletions last (they remove the objects the others use)."""
    routes: list[tuple[tuple[str, str], dict | None]] = list(documented_routes(spec).items())
    routes += [(route, None) for route in UNDOCUMENTED_PUBLIC]
    return sorted(routes, key=lambda item: (item[0][0] == "DELETE", item[0]))


def call(site: Site, key: str | None, objects: Objects, route, operation) -> httpx.Response:
    client = site.client(key)
    if route in UNDOCUMENTED_PUBLIC:
        return client.get(UNDOCUMENTED_PUBLIC[route])
    response = client.request(**objects.request(site, route, operation))
    objects.remember(route, response)
    return response


def test_every_route_against_every_caller(site):
    spec = site.client(site.keys["admin"]).get("/openapi.json").json()
    routes = routes_in_order(spec)
    objects = Objects(site)
    public = PUBLIC | set(UNDOCUMENTED_PUBLIC)
    admin_prefix = "_".join(site.keys["admin"].split("_", 2)[:2])  # rmk_<prefix>_<secret>
    refused_callers = {
        "no key": None,
        "an empty key": "",
        "not a key": "not-a-key",
        "an unknown key": f"rmk_{'0' * 12}_{secrets.token_urlsafe(32)}",
        "the admin's prefix with another secret": f"{admin_prefix}_{secrets.token_urlsafe(32)}",
        "a revoked key": site.keys["revoked"],
    }

    # Callers without a live key: 401 on every /api/v1 route, and nothing changes.
    before = row_counts(site)
    for caller, key in refused_callers.items():
        for route, operation in routes:
            response = call(site, key, objects, route, operation)
            if route in public:
                assert response.status_code < 400, (caller, route, response.text[:300])
            else:
                assert response.status_code == 401, (caller, route, response.text[:300])
                assert "key" in response.json()["detail"], (caller, route)
    assert row_counts(site) == before

    # Examiners and admins: refused only where ADMIN_ONLY says; every change they make is in the
    # audit log under their key.
    refused: dict[str, set[tuple[str, str]]] = {"examiner": set(), "admin": set()}
    audited: dict[str, set[str]] = {"examiner": set(), "admin": set()}
    for role in ("examiner", "admin"):
        key = site.keys[role]
        key_id = site.client(key).get(f"{API}/me").json()["id"]
        for route, operation in routes:
            last = last_audit_id(site)
            response = call(site, key, objects, route, operation)
            status = response.status_code
            assert status != 401 and status < 500, (role, route, response.text[:300])
            if status == 403:
                assert "admin" in response.json()["detail"], (role, route)
                refused[role].add(route)
                assert audit_since(site, last) == [], (role, route)
            elif route[0] in STATE_CHANGING and status < 300:
                entries = audit_since(site, last)
                assert entries, f"{role} {route} changed something without an audit entry"
                assert {entry_key for _, entry_key, _ in entries} == {key_id}, (role, route)
                audited[role] |= {action for _, _, action in entries}
    assert refused["examiner"] == ADMIN_ONLY
    assert refused["admin"] == set()
    everyones = {"person.create", "image.upload", "search", "case.create", "case.update"}
    reviews = {"case.review_request", "case.review_withdraw"}
    assert everyones | {"case.conclusion"} | reviews <= audited["examiner"]
    assert (
        everyones | {"job.create", "job.cancel", "image.delete", "person.delete"}
        <= audited["admin"]
    )
    site.assert_nothing_revealed()


def test_revocation_is_immediate(site):
    key_id, key = new_key(site.server, "examiner to revoke", "examiner")
    site.keys["revoked while in use"] = key
    client = site.client(key)  # one connection, kept alive across the revocation
    assert client.get(f"{API}/me").status_code == 200
    assert key_id in {row["id"] for row in client.get(f"{API}/examiners").json()}
    before = row_counts(site)
    revoke(site.server, key_id)  # what `radmatch keys revoke` does, committed
    for response in (
        client.get(f"{API}/me"),
        client.post(f"{API}/people", json={"external_ref": "AFTER-REVOCATION"}),
        client.post(f"{API}/search", files={"file": ("q.png", site.png())}),
    ):
        assert response.status_code == 401, response.text
        assert "revoked" in response.json()["detail"]
    assert row_counts(site) == before | {"audit_log": before["audit_log"] + 1}
    examiners = site.client(site.keys["admin"]).get(f"{API}/examiners").json()
    assert key_id not in {row["id"] for row in examiners}
    site.assert_nothing_revealed()


def test_keys_are_stored_only_as_hashes(site):
    """No key, nor the secret part of one, is anywhere in the database, in any file under the
    data folder (the SQLite file and its journal among them), or in the server's log."""
    secrets_of_keys = set()
    for key in site.keys.values():
        secrets_of_keys |= {key, key.split("_", 2)[2]}  # rmk_<prefix>_<secret>
    with site.engine().connect() as connection:
        tables = sa.MetaData()
        tables.reflect(connection)
        dump = "\n".join(
            repr(tuple(row))
            for table in tables.sorted_tables
            for row in connection.execute(sa.select(table))
        )
    assert "api_keys" in tables.tables
    for secret in secrets_of_keys:
        assert secret not in dump
    files = [p for p in Path(site.server.env["RADMATCH_DATA_DIR"]).rglob("*") if p.is_file()]
    url = sa.make_url(site.server.env["RADMATCH_DATABASE_URL"])
    if url.get_backend_name() == "sqlite":
        database = Path(url.database)
        files += [p for p in database.parent.glob(database.name + "*") if p.is_file()]
    files.append(site.server.log)
    for path in files:
        content = path.read_bytes()
        for secret in secrets_of_keys:
            assert secret.encode() not in content, path
