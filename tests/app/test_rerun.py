"""Re-running stored searches through a real `radmatch serve` process, on SQLite and PostgreSQL:
identical at the model version and index generation the search used, and every change since
explained (people added, images deleted, another model, an approximate index)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
import torch

from app.storage.tables import Search
from model.checkpoint import save_checkpoint
from model.network import Embedder
from model.preprocess import Preprocessing
from tests.support.servers import WorkerProcess
from training.cohorts import read_knee_manifest
from training.records import ImageRecord

API = "/api/v1"


@pytest.fixture(scope="module")
def cohort(phantom_manifest) -> list[ImageRecord]:
    return read_knee_manifest(phantom_manifest)


def upload_gallery(client, cohort: list[ImageRecord], people: int) -> dict[str, int]:
    """The first people's baseline knees, both sides; their external refs -> person ids."""
    refs: dict[str, int] = {}
    for record in cohort:
        if record.visit_months != 0:
            continue
        if record.person_id not in refs:
            if len(refs) == people:
                continue
            response = client.post(
                f"{API}/people", json={"external_ref": record.person_id, "sex": record.sex}
            )
            assert response.status_code == 201, response.text
            refs[record.person_id] = response.json()["id"]
        response = upload(client, refs[record.person_id], record)
        assert response.status_code == 201, response.text
    return refs


def upload(client, person_id: int, record: ImageRecord):
    return client.post(
        f"{API}/people/{person_id}/images",
        files={"file": ("knee.png", record.path.read_bytes())},
        data={"side": record.side, "pixel_spacing_mm": record.pixel_spacing_mm},
    )


def search(client, record: ImageRecord, **form) -> dict:
    response = client.post(
        f"{API}/search",
        files={"file": ("query.png", record.path.read_bytes())},
        data={"pixel_spacing_mm": record.pixel_spacing_mm, **form},
    )
    assert response.status_code == 200, response.text
    return response.json()


def rerun(client, search_id: int) -> dict:
    response = client.post(f"{API}/searches/{search_id}/rerun")
    assert response.status_code == 200, response.text
    return response.json()


def ranking(candidates: list[dict]) -> list[tuple[int, int, list[int]]]:
    return [(c["rank"], c["person_id"], [m["image_id"] for m in c["images"]]) for c in candidates]


def assert_reproduced(result: dict, original: dict) -> None:
    """The re-run at the original state gave the stored answer."""
    then = result["at_original"]
    assert then["identical"] is True, then["differences"]
    assert then["differences"] == [] and then["unexplained"] == 0
    assert ranking(then["candidates"]) == ranking(original["candidates"])
    for got, stored in zip(then["candidates"], original["candidates"], strict=True):
        assert got["similarity"] == pytest.approx(stored["similarity"], abs=1e-5)
    assert then["index_size"] == original["index_size"]
    assert result["model_version"] == original["model_version"]
    assert result["index_generation"] == original["index_generation"]
    assert result["parameters"] == original["parameters"]


def causes(part: dict) -> dict[tuple[str, int | None], str]:
    return {(d["change"], d["person_id"]): d["cause"] for d in part["differences"]}


def query_of(cohort: list[ImageRecord], person_ref: str) -> ImageRecord:
    return next(
        r for r in cohort if r.person_id == person_ref and r.visit_months == 12 and r.side == "L"
    )


def database_rows(server, sql: str) -> list:
    engine = sa.create_engine(server.env["RADMATCH_DATABASE_URL"])
    try:
        with engine.connect() as connection:
            return connection.execute(sa.text(sql)).all()
    finally:
        engine.dispose()


def test_rerun_is_identical_and_explains_what_changed_since(server, cohort):
    examiner, admin = server.examiner(), server.admin()
    gallery = upload_gallery(examiner, cohort, people=3)
    query = query_of(cohort, next(iter(gallery)))
    original = search(examiner, query, k=3, side="L")  # each person's left knee
    assert len(original["candidates"]) == 3
    assert all(len(c["images"]) == 1 for c in original["candidates"])

    first = rerun(examiner, original["search_id"])
    assert_reproduced(first, original)
    now = first["now"]
    assert now["identical"] is True and now["differences"] == []
    assert now["model_version"] == original["model_version"]
    assert now["index_generation"] == original["index_generation"]
    assert ranking(now["candidates"]) == ranking(original["candidates"])
    assert rerun(admin, original["search_id"])["at_original"]["identical"] is True

    # A person added since whose image is the query itself: first now, and said to be new.
    newcomer = examiner.post(f"{API}/people", json={"external_ref": "ADDED-LATER"}).json()
    assert upload(examiner, newcomer["id"], query).status_code == 201
    second = rerun(examiner, original["search_id"])
    assert_reproduced(second, original)
    now = second["now"]
    assert now["identical"] is False and now["unexplained"] == 0, now["differences"]
    assert now["index_generation"] > original["index_generation"]
    top = now["candidates"][0]
    assert top["person_id"] == newcomer["id"] and top["similarity"] > 0.9999
    found = causes(now)
    assert found[("added", newcomer["id"])] == "added_since"
    added = next(d for d in now["differences"] if d["change"] == "added")
    assert "ADDED-LATER" in added["explanation"] and "after the search" in added["explanation"]
    last = original["candidates"][-1]["person_id"]  # pushed out of the top 3 by the newcomer
    assert found[("removed", last)] == "rank_shift"
    for candidate in original["candidates"][:-1]:
        assert found[("rank", candidate["person_id"])] == "rank_shift"

    # The stored answer's first candidate's only left knee, deleted since: at the original state
    # it still counts, filters and all; now that person is gone from the answer.
    best = original["candidates"][0]
    image_id = best["images"][0]["image_id"]
    deleted = admin.delete(f"{API}/images/{image_id}", params={"reason": "wrong person"})
    assert deleted.status_code == 200, deleted.text
    third = rerun(examiner, original["search_id"])
    assert_reproduced(third, original)  # the gallery as it was: the deleted image still counts
    now = third["now"]
    assert now["unexplained"] == 0, now["differences"]
    assert best["person_id"] not in {c["person_id"] for c in now["candidates"]}
    (gone,) = [d for d in now["differences"] if d["person_id"] == best["person_id"]]
    assert (gone["change"], gone["cause"]) == ("removed", "deleted_since")
    assert f"image {image_id} was deleted" in gone["explanation"]
    assert "wrong person" in gone["explanation"]

    # Refusals: each says what was wrong, and writes nothing.
    assert examiner.post(f"{API}/searches/999999/rerun").status_code == 404
    assert server.client().post(f"{API}/searches/{original['search_id']}/rerun").status_code == 401
    stored = (
        Path(server.env["RADMATCH_DATA_DIR"])
        / "originals"
        / original["query_sha256"][:2]
        / original["query_sha256"][2:4]
        / original["query_sha256"]
    )
    data = stored.read_bytes()
    stored.unlink()
    gone = examiner.post(f"{API}/searches/{original['search_id']}/rerun")
    assert gone.status_code == 410 and "no longer stored" in gone.json()["detail"]
    stored.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    damaged = examiner.post(f"{API}/searches/{original['search_id']}/rerun")
    assert damaged.status_code == 409 and "sha256" in damaged.json()["detail"]
    stored.unlink()
    stored.write_bytes(data)

    # Audited with the caller's key; no search was added.
    keys = dict(database_rows(server, "SELECT name, id FROM api_keys"))
    audit = database_rows(
        server,
        "SELECT key_id, target_type, target_id FROM audit_log "
        "WHERE action = 'search.rerun' ORDER BY id",
    )
    search_id = original["search_id"]
    assert audit == [
        (keys["examiner in tests"], "search", search_id),
        (keys["admin in tests"], "search", search_id),
        (keys["examiner in tests"], "search", search_id),
        (keys["examiner in tests"], "search", search_id),
    ]
    assert database_rows(server, "SELECT count(*) FROM searches") == [(1,)]

    # A stored answer that no re-run can reproduce is shown as unexplained, never smoothed over.
    (difference,) = rerun_tampered(server, examiner, original, shift=0.01)
    assert (difference["change"], difference["cause"]) == ("similarity", "unexplained")
    assert difference["explained"] is False and difference["person_id"] == best["person_id"]

    # The search recorded how it embedded its query; rounding between a GPU in bfloat16 and this
    # CPU in float32 explains a shift of 2e-3, which between two CPU float32 runs it does not.
    on_cpu = {"device": "cpu", "precision": "fp32", "backend": "onnxruntime"}
    assert original["inference"] == on_cpu
    assert rerun(examiner, search_id)["rerun_inference"] == original["inference"]
    on_gpu = {"device": "cuda", "precision": "bf16", "backend": "torch"}
    (difference,) = rerun_tampered(server, examiner, original, shift=2e-3, inference=on_gpu)
    assert difference["cause"] == "float_drift", difference
    assert "the stored search embedded it on cuda in bf16 by torch" in difference["explanation"]
    # Embedded by PyTorch then, by ONNX Runtime now: rounding of the order of 1e-6 between the
    # two, named as the reason.
    by_torch = {**on_cpu, "backend": "torch"}
    (difference,) = rerun_tampered(server, examiner, original, shift=5e-5, inference=by_torch)
    assert difference["cause"] == "float_drift", difference
    assert (
        "the stored search embedded it on cpu in fp32 by torch, the re-run on cpu in fp32 by "
        "onnxruntime" in difference["explanation"]
    )
    # A search stored before the backend was recorded was embedded by PyTorch.
    before = {"device": "cpu", "precision": "fp32"}
    (difference,) = rerun_tampered(server, examiner, original, shift=5e-5, inference=before)
    assert "embedded it on cpu in fp32 by torch" in difference["explanation"], difference
    (difference,) = rerun_tampered(server, examiner, original, shift=2e-3)
    assert difference["cause"] == "unexplained", difference
    (difference,) = rerun_tampered(server, examiner, original, shift=2e-3, inference=None)
    assert difference["cause"] == "unexplained", difference
    assert "the stored search does not say" in difference["explanation"]


def rerun_tampered(server, client, original: dict, shift: float, **changes) -> list[dict]:
    """The at-original differences of a re-run after the stored answer's best similarity was
    moved by `shift` (and other stored fields changed) in the database behind the server."""
    tampered = {**original, "candidates": [dict(c) for c in original["candidates"]], **changes}
    tampered["candidates"][0]["similarity"] -= shift
    engine = sa.create_engine(server.env["RADMATCH_DATABASE_URL"])
    with engine.begin() as connection:
        connection.execute(
            sa.update(Search).where(Search.id == original["search_id"]).values(response=tampered)
        )
    engine.dispose()
    then = rerun(client, original["search_id"])["at_original"]
    assert then["identical"] is False, then
    return then["differences"]


def test_rerun_explains_an_approximate_original(server, cohort):
    """An IVF index that scans one list of six misses people; the exact re-run finds them and
    says that the approximate index is why."""
    examiner = server.examiner()
    gallery = upload_gallery(examiner, cohort, people=3)
    server.stop()
    server.env.update(
        RADMATCH_APPROXIMATE_INDEX_FROM="6",
        RADMATCH_APPROXIMATE_INDEX="ivf",
        RADMATCH_IVF_LISTS="6",
        RADMATCH_IVF_NPROBE="1",
    )
    server.start()
    examiner = server.examiner()
    assert server.client().get("/readyz").json()["checks"]["index_kind"] == "ivf"
    query = query_of(cohort, next(iter(gallery)))
    original = search(examiner, query, k=3)
    assert original["index"]["kind"] == "ivf" and original["index"]["exact"] is False
    assert len(original["candidates"]) < 3  # one list of six holds one or two images

    result = rerun(examiner, original["search_id"])
    then = result["at_original"]
    assert then["identical"] is False and then["unexplained"] == 0, then["differences"]
    assert len(then["candidates"]) == 3 and then["index_size"] == original["index_size"]
    assert result["index"] == original["index"]
    added = [d for d in then["differences"] if d["change"] == "added"]
    assert added and all(d["cause"] == "approximate_index" for d in added)
    assert all("ivf" in d["explanation"] for d in added)
    now = result["now"]
    assert now["unexplained"] == 0, now["differences"]
    assert ranking(now["candidates"]) == ranking(then["candidates"])
    assert {d["cause"] for d in now["differences"] if d["change"] == "added"} == {
        "approximate_index"
    }


def activate(server, version_id: int) -> None:
    """Activate the version with a worker's job, and wait until the server serves it."""
    with server.admin() as client:
        response = client.post(f"{API}/admin/models/{version_id}/activate")
        assert response.status_code == 202, response.text
    server.wait_for_job(response.json()["id"])
    server.wait_until_serving(version_id)


def test_rerun_across_model_versions(server, cohort, tmp_path):
    """A search answered by a model that is no longer active re-runs with that model's own
    checkpoint; today's answer says the model changed; a checkpoint that is gone is a 409."""
    examiner = server.examiner()
    gallery = upload_gallery(examiner, cohort, people=2)
    query = query_of(cohort, next(iter(gallery)))
    torch.manual_seed(1)
    other = Path(server.env["RADMATCH_DATA_DIR"]) / "models" / "other.pt"  # where the API reads
    other.parent.mkdir(exist_ok=True)
    save_checkpoint(other, Embedder(), Preprocessing(input_size=64), metrics={"val_mAP": 0.0})
    with server.admin() as client:
        response = client.post(f"{API}/admin/models", json={"checkpoint_path": str(other)})
        assert response.status_code == 201, response.text
        second_version = response.json()["id"]
    first = search(examiner, query, k=2)
    first_version = first["model_version"]["id"]

    worker = WorkerProcess(server.env, tmp_path / "worker.log").start()
    try:
        activate(server, second_version)
        result = rerun(examiner, first["search_id"])
        assert_reproduced(result, first)  # with the first model's checkpoint, loaded again
        now = result["now"]
        assert now["model_version"]["id"] == second_version and now["identical"] is False
        assert now["differences"][0]["change"] == "model"
        assert now["differences"][0]["cause"] == "model_changed"
        assert now["unexplained"] == 0, now["differences"]

        later = search(server.examiner(), query, k=2)
        assert later["model_version"]["id"] == second_version
        activate(server, first_version)
    finally:
        worker.stop()
    assert_reproduced(rerun(examiner, later["search_id"]), later)
    other.unlink()
    refused = examiner.post(f"{API}/searches/{later['search_id']}/rerun")
    assert refused.status_code == 409, refused.text
    assert "checkpoint" in refused.json()["detail"] and str(other) in refused.json()["detail"]
