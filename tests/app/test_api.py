"""The service end to end: a real `radmatch serve` process on SQLite and on PostgreSQL, driven over
HTTP as an examiner's client would."""

from __future__ import annotations

import hashlib
import io
import math
import threading
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image
from pydicom.uid import RLELossless

from model.decode import decode_image
from model.inference import EmbeddingModel
from tests.support.images import phantom_dicom, png_bytes
from training.cohorts import read_knee_manifest
from training.phantom.dicom import Encoding
from training.records import ImageRecord

API = "/api/v1"


def as_dicom(record: ImageRecord) -> bytes:
    """The record's PNG pixels as an RLE-compressed MONOCHROME1 DICOM file with its pixel spacing."""
    pixels = np.asarray(Image.open(record.path)).astype(np.uint16)
    return phantom_dicom(
        pixels,
        f"{record.person_id}-{record.side}-{record.visit_months}",
        Encoding(RLELossless, "MONOCHROME1", False),
        person_id=record.person_id,
        sex=record.sex or "F",
        age_years=record.age or 60.0,
        side=record.side or "L",
        pixel_spacing_mm=record.pixel_spacing_mm,
    )


@pytest.fixture(scope="module")
def cohort(phantom_manifest) -> list[ImageRecord]:
    return read_knee_manifest(phantom_manifest)


def baselines(cohort: list[ImageRecord], people: int) -> dict[str, list[ImageRecord]]:
    by_person: dict[str, list[ImageRecord]] = defaultdict(list)
    for record in cohort:
        if record.visit_months == 0:
            by_person[record.person_id].append(record)
    return dict(sorted(by_person.items())[:people])


def create_person(client, ref: str, **fields) -> dict:
    response = client.post(f"{API}/people", json={"external_ref": ref, **fields})
    assert response.status_code == 201, response.text
    return response.json()


def upload(client, person_id: int, data: bytes, name: str = "image.png", **form):
    files = {"file": (name, data, "application/octet-stream")}
    return client.post(f"{API}/people/{person_id}/images", files=files, data=form)


def search(client, data: bytes, **form):
    return client.post(f"{API}/search", files={"file": ("query", data)}, data=form)


def upload_gallery(client, cohort, people: int = 5) -> dict[str, dict]:
    """Each person's baseline knees: the first person's as DICOM, the others' as PNG with their
    pixel spacing given in the form. Returns person -> {"id", "images": [(record, bytes, body)]}."""
    gallery = {}
    for number, (ref, records) in enumerate(baselines(cohort, people).items()):
        person = create_person(client, ref, sex=records[0].sex, birth_year=1950 + number)
        person["images"] = []
        for record in records:
            if number == 0:
                data, form = as_dicom(record), {}
            else:
                data = record.path.read_bytes()
                form = {"pixel_spacing_mm": record.pixel_spacing_mm}
            response = upload(
                client, person["id"], data, side=record.side, body_part="knee", **form
            )
            assert response.status_code == 201, response.text
            person["images"].append((record, data, response.json()))
        gallery[ref] = person
    return gallery


def originals(server) -> set[str]:
    root = Path(server.env["RADMATCH_DATA_DIR"]) / "originals"
    return {p.name for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")}


def test_upload_search_and_stored_search(server, cohort, checkpoint):
    client = server.examiner()
    gallery = upload_gallery(client, cohort)
    first = next(iter(gallery.values()))
    record, dicom_bytes, body = first["images"][0]
    assert body["format"] == "dicom"
    assert body["sha256"] == hashlib.sha256(dicom_bytes).hexdigest()
    assert body["side"] == record.side and body["body_part"] == "KNEE"
    assert body["pixel_spacing_mm"] == pytest.approx(record.pixel_spacing_mm)

    # Idempotent: the same bytes for the same person give back the stored record.
    again = upload(client, first["id"], dicom_bytes)
    assert again.status_code == 200 and again.json()["id"] == body["id"]
    person = client.get(f"{API}/people/{first['id']}").json()
    assert len(person["images"]) == 2

    # The same radiograph as a PNG finds the person whose DICOM is in the gallery.
    twin = search(client, record.path.read_bytes(), k=3, pixel_spacing_mm=record.pixel_spacing_mm)
    assert twin.status_code == 200, twin.text
    assert twin.json()["candidates"][0]["person_id"] == first["id"]
    assert twin.json()["candidates"][0]["similarity"] > 0.99

    # A follow-up: the ranking and similarities are the model's, computed here independently.
    query = next(r for r in cohort if r.person_id == list(gallery)[2] and r.visit_months == 12)
    answer = search(client, query.path.read_bytes(), k=10, pixel_spacing_mm=query.pixel_spacing_mm)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    expected = expected_ranking(checkpoint, gallery, query)
    assert [c["person_id"] for c in result["candidates"]] == [p for p, _ in expected]
    for candidate, (_, similarity) in zip(result["candidates"], expected, strict=True):
        assert candidate["similarity"] == pytest.approx(similarity, abs=1e-5)
        assert candidate["distance"] == pytest.approx(math.sqrt(2 - 2 * similarity), abs=1e-5)
        assert candidate["similarity"] == candidate["images"][0]["similarity"]
    assert result["index_size"] == 2 * len(gallery)
    assert result["index"] == {"kind": "flat", "exact": True, "parameters": {}}
    # On the CPU the default backend is ONNX Runtime (the similarities above are PyTorch's).
    assert result["inference"] == {"device": "cpu", "precision": "fp32", "backend": "onnxruntime"}
    assert [c["rank"] for c in result["candidates"]] == list(range(1, len(gallery) + 1))

    stored = client.get(f"{API}/searches/{result['search_id']}")
    assert stored.status_code == 200 and stored.json() == result


def expected_ranking(checkpoint, gallery, query) -> list[tuple[int, float]]:
    """People by their best image's cosine similarity to the query, from the checkpoint directly."""
    model = EmbeddingModel.load(checkpoint, "cpu")
    best: dict[int, float] = {}
    q = model.embed([decode_image(query.path.read_bytes())], [query.pixel_spacing_mm])[0]
    for person in gallery.values():
        for record, data, _ in person["images"]:
            vector = model.embed([decode_image(data)], [record.pixel_spacing_mm])[0]
            best[person["id"]] = max(best.get(person["id"], -2.0), float(vector @ q))
    return sorted(best.items(), key=lambda item: -item[1])


def test_search_filters(server, cohort):
    client = server.examiner()
    gallery = upload_gallery(client, cohort, people=4)
    query = next(iter(gallery.values()))["images"][0][1]
    people = {p["id"]: p for p in gallery.values()}
    by_year = search(client, query, birth_year_min=1951, birth_year_max=1952).json()
    assert {c["person_id"] for c in by_year["candidates"]} == {
        p["id"] for p in gallery.values() if 1951 <= p["birth_year"] <= 1952
    }
    left = search(client, query, side="L").json()
    for candidate in left["candidates"]:
        sides = {
            im["side"]
            for im in client.get(f"{API}/people/{candidate['person_id']}").json()["images"]
            if im["id"] in {m["image_id"] for m in candidate["images"]}
        }
        assert sides == {"L"}
    assert len(left["candidates"]) == len(people)
    sex = next(iter(people.values()))["sex"]
    by_sex = search(client, query, sex=sex).json()
    assert all(people[c["person_id"]]["sex"] == sex for c in by_sex["candidates"])
    assert search(client, query, k=2).json()["candidates"][1]["rank"] == 2
    assert len(search(client, query, k=2).json()["candidates"]) == 2


def test_people_listing(server):
    client = server.examiner()
    for number in range(7):
        create_person(
            client, f"MP-{number}", sex="F" if number % 2 else "M", birth_year=1970 + number
        )
    duplicate = client.post(f"{API}/people", json={"external_ref": "MP-3"})
    assert duplicate.status_code == 409 and "MP-3" in duplicate.json()["detail"]
    page = client.get(f"{API}/people", params={"limit": 3, "offset": 3}).json()
    assert page["total"] == 7 and [p["external_ref"] for p in page["items"]] == [
        "MP-3",
        "MP-4",
        "MP-5",
    ]
    women = client.get(f"{API}/people", params={"sex": "F", "birth_year_min": 1973}).json()
    assert [p["external_ref"] for p in women["items"]] == ["MP-3", "MP-5"]
    found = client.get(f"{API}/people", params={"external_ref": "MP-6"}).json()
    assert found["total"] == 1 and found["items"][0]["birth_year"] == 1976
    for bad in ({"limit": 0}, {"limit": 100000}, {"offset": -1}, {"sex": "Q"}):
        assert client.get(f"{API}/people", params=bad).status_code == 422
    assert client.get(f"{API}/people/999999").status_code == 404
    assert client.post(f"{API}/people", json={"external_ref": ""}).status_code == 422
    assert (
        client.post(f"{API}/people", json={"external_ref": "x", "sex": "F", "extra": 1}).status_code
        == 422
    )


def test_auth_and_roles(server, cohort):
    anonymous, examiner, admin = server.client(), server.examiner(), server.admin()
    assert anonymous.get(f"{API}/people").status_code == 401
    assert server.client("rmk_000000000000_not-a-key").get(f"{API}/people").status_code == 401
    assert server.client(server.admin_key + "x").get(f"{API}/people").status_code == 401
    assert anonymous.get("/healthz").status_code == 200
    person = create_person(examiner, "AUTH-1")
    image = upload(examiner, person["id"], cohort[0].path.read_bytes()).json()
    forbidden = examiner.delete(f"{API}/images/{image['id']}", params={"reason": "test"})
    assert forbidden.status_code == 403 and "admin" in forbidden.json()["detail"]
    assert (
        examiner.delete(f"{API}/people/{person['id']}", params={"reason": "test"}).status_code
        == 403
    )
    assert anonymous.post(f"{API}/search", files={"file": ("q", b"x")}).status_code == 401
    assert (
        admin.delete(f"{API}/images/{image['id']}", params={"reason": "uploaded twice"}).status_code
        == 200
    )


def test_bad_uploads_leave_nothing(server, cohort):
    client = server.examiner()
    person = create_person(client, "BAD-1")
    png = cohort[0].path.read_bytes()
    refusals = {
        b"GIF89a" + bytes(100): 415,
        b"not an image at all": 415,
        png[: len(png) // 3]: 422,  # truncated
        b"": 422,
    }
    for data, status in refusals.items():
        response = upload(client, person["id"], data)
        assert response.status_code == status, (data[:10], response.text)
        assert response.json()["detail"]
    too_small = upload(client, person["id"], png_bytes(np.zeros((16, 16), np.uint8)))
    assert too_small.status_code == 422 and "at least 64" in too_small.json()["detail"]
    assert upload(client, 999999, png).status_code == 404
    assert upload(client, person["id"], png, side="middle").status_code == 422
    assert search(client, b"%PDF-1.4 ...").status_code == 415
    assert search(client, png, k=0).status_code == 422
    assert search(client, png, k=10_000).status_code == 422
    assert client.get(f"{API}/people/{person['id']}").json()["images"] == []
    assert originals(server) == set()


def test_size_limit(server, cohort):
    server.stop()
    server.env["RADMATCH_MAX_UPLOAD_BYTES"] = "1000"
    server.start()
    client = server.examiner()
    person = create_person(client, "BIG-1")
    response = upload(client, person["id"], cohort[0].path.read_bytes())
    assert response.status_code == 413 and "1000" in response.json()["detail"]
    assert originals(server) == set()


def test_images_original_and_preview(server, cohort):
    client = server.examiner()
    gallery = upload_gallery(client, cohort, people=2)
    for person in gallery.values():
        for _, data, body in person["images"]:
            original = client.get(f"{API}/images/{body['id']}/original")
            assert original.status_code == 200 and original.content == data
            assert body["sha256"] in original.headers["content-disposition"]
            preview = client.get(f"{API}/images/{body['id']}/preview.png", params={"size": 200})
            assert preview.headers["content-type"] == "image/png"
            picture = Image.open(io.BytesIO(preview.content))
            assert max(picture.size) == 200 and picture.mode == "L"
    assert client.get(f"{API}/images/999999/original").status_code == 404
    assert (
        client.get(f"{API}/images/{body['id']}/preview.png", params={"size": 10**6}).status_code
        == 422
    )


def test_delete_and_purge(server, cohort):
    examiner, admin = server.examiner(), server.admin()
    gallery = upload_gallery(examiner, cohort, people=3)
    first, second, _ = gallery.values()
    _, kept_bytes, image = first["images"][0]
    removed = admin.delete(f"{API}/images/{image['id']}", params={"reason": "wrong person"})
    assert removed.status_code == 200 and removed.json()["purged"] is False
    assert examiner.get(f"{API}/images/{image['id']}").status_code == 404
    assert image["sha256"] in originals(server)  # kept unless purged
    answer = search(examiner, kept_bytes).json()
    assert image["id"] not in {m["image_id"] for c in answer["candidates"] for m in c["images"]}
    assert answer["index_size"] == 5

    assert admin.delete(f"{API}/people/{second['id']}", params={"reason": "x"}).status_code == 422
    _, queried_bytes, queried = second["images"][0]
    assert search(examiner, queried_bytes).status_code == 200  # this search keeps its query
    gone = admin.delete(
        f"{API}/people/{second['id']}", params={"reason": "duplicate record", "purge": True}
    )
    assert gone.status_code == 200 and gone.json()["purged"] is True
    assert examiner.get(f"{API}/people/{second['id']}").status_code == 404
    purged = {body["sha256"] for _, _, body in second["images"]}
    assert purged & originals(server) == {queried["sha256"]}
    answer = search(examiner, kept_bytes).json()
    assert second["id"] not in {c["person_id"] for c in answer["candidates"]}
    assert answer["index_size"] == 3

    engine = sa.create_engine(server.env["RADMATCH_DATABASE_URL"])
    with engine.connect() as connection:
        audit = connection.execute(
            sa.text("SELECT action, target_id, details FROM audit_log ORDER BY id")
        ).all()
    engine.dispose()
    deletions = {(a, t): d for a, t, d in audit if a.endswith(".delete")}
    details = deletions[("image.delete", image["id"])]
    details = details if isinstance(details, dict) else __import__("json").loads(details)
    assert details["reason"] == "wrong person" and details["purge"] is False
    assert ("person.delete", second["id"]) in deletions


def test_restart_keeps_everything(server, cohort):
    client = server.examiner()
    gallery = upload_gallery(client, cohort, people=3)
    query = next(r for r in cohort if r.person_id == list(gallery)[1] and r.visit_months == 24)
    before = search(client, query.path.read_bytes(), pixel_spacing_mm=query.pixel_spacing_mm).json()
    server.stop()
    server.start()
    client = server.examiner()
    ready = client.get("/readyz").json()
    assert ready["ready"] is True and ready["checks"]["index_size"] == 6
    assert client.get(f"{API}/searches/{before['search_id']}").json() == before
    after = search(client, query.path.read_bytes(), pixel_spacing_mm=query.pixel_spacing_mm).json()
    strip = lambda r: [(c["person_id"], c["similarity"]) for c in r["candidates"]]  # noqa: E731
    assert strip(after) == strip(before)
    assert after["index_generation"] == before["index_generation"]
    assert len(client.get(f"{API}/people").json()["items"]) == 3


def test_concurrent_searches_while_adding(server, cohort):
    """Searches running while two clients add images all succeed, and each searcher sees the index
    only grow, never a partial or inconsistent state."""
    client = server.examiner()
    person = create_person(client, "LOAD-1")
    query = cohort[0].path.read_bytes()
    assert upload(client, person["id"], query).status_code == 201
    to_add = [r.path.read_bytes() for r in cohort[1:13]]
    failures: list[str] = []

    def searcher() -> None:
        sizes = []
        with server.examiner() as own:
            for _ in range(8):
                response = search(own, query, k=1)
                if response.status_code != 200:
                    failures.append(response.text)
                    return
                body = response.json()
                sizes.append(body["index_size"])
                top = body["candidates"][0]
                if top["images"][0]["similarity"] < 0.9999:
                    failures.append(f"the query's own image was not first: {top}")
        if sizes != sorted(sizes):
            failures.append(f"index size went back: {sizes}")

    def uploader(batch: list[bytes]) -> None:
        with server.examiner() as own:
            for data in batch:
                response = upload(own, person["id"], data)
                if response.status_code != 201:
                    failures.append(response.text)

    threads = [threading.Thread(target=searcher) for _ in range(3)]
    threads += [threading.Thread(target=uploader, args=(to_add[i::2],)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert search(client, query).json()["index_size"] == 1 + len(to_add)
    assert client.get("/readyz").json()["checks"]["index"] == "ok"


def test_metrics(server, cohort):
    client = server.examiner()
    person = create_person(client, "MET-1")
    upload(client, person["id"], cohort[0].path.read_bytes())
    search(client, cohort[1].path.read_bytes())
    text = client.get("/metrics").text
    values = dict(
        line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    assert float(values["radmatch_images_ingested_total"]) == 1
    assert float(values["radmatch_searches_total"]) == 1
    assert float(values["radmatch_index_images"]) == 1
    for operation, stages in (
        ("upload", "decode embed store index"),
        ("search", "decode embed search store"),
    ):
        for stage in stages.split():
            key = f'radmatch_stage_seconds_count{{operation="{operation}",stage="{stage}"}}'
            assert float(values[key]) == 1, key
    assert float(values["radmatch_embed_batch_images_sum"]) == 2
    key = 'radmatch_http_requests_total{method="POST",route="/api/v1/search",status="200"}'
    assert float(values[key]) == 1


def test_openapi_documents_the_api(server):
    spec = server.examiner().get("/openapi.json").json()
    for path in (
        "/api/v1/people",
        "/api/v1/people/{person_id}/images",
        "/api/v1/search",
        "/api/v1/searches/{search_id}",
    ):
        assert path in spec["paths"]
    assert "X-API-Key" in str(spec["components"]["securitySchemes"])
    assert server.client().get("/docs").status_code == 200


def test_path_like_file_names_stay_names(server, cohort, tmp_path):
    """A file name is shown, never used as a path: nothing is written where it points."""
    client = server.examiner()
    person = create_person(client, "PATH-1")
    for number, name in enumerate(["../../../escaped.png", "..\\..\\escaped.png", "/etc/passwd"]):
        response = upload(client, person["id"], cohort[number].path.read_bytes(), name=name)
        assert response.status_code == 201, response.text
        assert "/" not in response.json()["filename"] and "\\" not in response.json()["filename"]
    assert not list(tmp_path.parent.rglob("escaped.png"))
    assert len(originals(server)) == 3
