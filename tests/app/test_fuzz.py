"""The HTTP API fuzzed from its own OpenAPI document: schemathesis reads /openapi.json from a real
`radmatch serve` and runs its engine (what `schemathesis run` runs: the schema's examples,
boundary values of every parameter, generated requests valid and invalid, and chains of calls) on
every operation. Each answer must be no 5xx, a documented status code, a documented content type,
a body that matches the documented schema, and documented headers.

CI runs a short version: RADMATCH_FUZZ_EXAMPLES (default 10) generated cases per operation in the
fuzzing and stateful phases, on top of the boundary-value cases that do not depend on it (about
1,600 cases in all, one to two minutes on two cores). A long run, with the summary in a file:

    RADMATCH_FUZZ_EXAMPLES=1000 RADMATCH_FUZZ_REPORT=/tmp/fuzz.json \\
        .venv/bin/pytest tests/app/test_fuzz.py -s

RADMATCH_FUZZ_REPORT, when set, names a JSON file for the summary: cases run, by operation and by
status code, and every distinct failure with its operation, a curl command that repeats it and the
answer. The summary is printed as well (pytest shows it with -s, and on a failure). Each run draws
a new seed, which the summary gives; RADMATCH_FUZZ_SEED=<seed> repeats a run's cases.

SQLite is enough here: what the fuzzer exercises is the HTTP layer (request validation, the
routes' refusals, the response models), which is the same code on either database; the database
differences are covered by the tests that run on both (test_api.py and the others parametrized by
`database_url`), and one embedded database keeps the run short."""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import schemathesis
from PIL import Image
from schemathesis.engine import events, from_schema
from schemathesis.engine.statistic import Statistic

from tests.support.servers import Server, prepare_database, service_env

API = "/api/v1"
EXAMPLES = int(os.environ.get("RADMATCH_FUZZ_EXAMPLES", "10"))
SEED = os.environ.get("RADMATCH_FUZZ_SEED")
REPORT = os.environ.get("RADMATCH_FUZZ_REPORT")
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
]


def radiograph_png(seed: int, side: int = 256) -> bytes:
    """A small smooth 16-bit picture, different for each seed: enough to decode and embed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side] / side
    bones = np.exp(-((x - 0.5) ** 2) / 0.02) * (0.6 + 0.4 * np.cos(6 * y + rng.uniform(0, 6)))
    pixels = np.clip(0.2 + 0.6 * bones + rng.normal(0, 0.02, (side, side)), 0, 1)
    buffer = io.BytesIO()
    Image.fromarray((pixels * 65535).astype(np.uint16)).save(buffer, format="PNG")
    return buffer.getvalue()


def seed_records(server: Server) -> None:
    """Two people with two images each, a search, a case with a search and a conclusion, and a
    queued job, so that small ids exist for the fuzzer to find."""
    with server.admin() as client:
        people = []
        for n, sex in enumerate(("F", "M")):
            person = client.post(
                f"{API}/people",
                json={"external_ref": f"seed-{n}", "sex": sex, "birth_year": 1950 + n},
            )
            assert person.status_code == 201, person.text
            people.append(person.json()["id"])
            for view in range(2):
                image = client.post(
                    f"{API}/people/{people[-1]}/images",
                    files={"file": (f"seed-{n}-{view}.png", radiograph_png(10 * n + view))},
                    data={"body_part": "KNEE", "side": "LR"[view], "pixel_spacing_mm": "0.3"},
                )
                assert image.status_code == 201, image.text
        query = {"file": ("query.png", radiograph_png(99))}
        found = client.post(f"{API}/search", files=query, data={"k": "2"})
        assert found.status_code == 200, found.text
        case = client.post(f"{API}/cases", json={"number": "SEED-1"})
        assert case.status_code == 201, case.text
        in_case = client.post(f"{API}/cases/{case.json()['id']}/searches", files=query)
        assert in_case.status_code == 200, in_case.text
        conclusion = client.post(
            f"{API}/cases/{case.json()['id']}/conclusions",
            json={
                "search_id": in_case.json()["search_id"],
                "person_id": people[0],
                "conclusion": "possible",
            },
        )
        assert conclusion.status_code == 201, conclusion.text
        job = client.post(f"{API}/admin/index/rebuild")
        assert job.status_code == 202, job.text


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory, checkpoint):
    """A seeded server on a throwaway SQLite database. Its admin key is the fuzzer's alone, so
    that the fuzzer gets past every role check, deletions and admin jobs included."""
    scratch = tmp_path_factory.mktemp("fuzz")
    database_url = f"sqlite:///{scratch / 'radmatch.db'}"
    admin, examiner = prepare_database(database_url)
    server = Server(
        env=service_env(scratch / "data", database_url, checkpoint),
        log=scratch / "server.log",
        admin_key=admin,
        examiner_key=examiner,
    ).start()
    try:
        seed_records(server)
        yield server
    finally:
        server.stop()


def fuzz_config(server: Server) -> schemathesis.Config:
    settings = {
        "base-url": server.url,
        "headers": {"X-API-Key": server.admin_key},
        "workers": 1,
        "continue-on-failure": True,
        "request-timeout": 60,
        # No state kept between runs (it would go into .schemathesis/ in the work tree).
        "cache": {"enabled": False},
        "generation": {"max-examples": EXAMPLES, "database": "none"},
        "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
    }
    if SEED is not None:
        settings["seed"] = int(SEED)
    return schemathesis.Config.from_dict(settings)


def failure_details(statistic: Statistic) -> list[dict]:
    details = []
    for label, groups in sorted(statistic.failures.items()):
        for group in groups.values():
            response = group.response
            details.append(
                {
                    "operation": label,
                    "failures": [
                        f"{failure.title}: {failure.message}" for failure in group.failures
                    ],
                    "request": group.code_sample,
                    "status": response.status_code if response is not None else None,
                    "response": response.content[:2000].decode("utf-8", "replace")
                    if response is not None
                    else None,
                }
            )
    return details


def test_fuzz_api(fuzz_server):
    schema = schemathesis.openapi.from_url(
        f"{fuzz_server.url}/openapi.json",
        config=fuzz_config(fuzz_server),
        headers={"X-API-Key": fuzz_server.admin_key},
        timeout=60,
    )
    # The API has no key revocation today; should one appear it is left out, since revoking the
    # fuzzer's own key would turn every later case into a 401.
    schema = schema.exclude(path_regex=r"/keys?/", method="DELETE").exclude(
        operation_id_regex="revoke"
    )
    statistic = Statistic()
    by_operation: Counter = Counter()
    by_phase: Counter = Counter()
    by_status: Counter = Counter()
    errors: list[str] = []
    stop_reason = None
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            statistic.on_scenario_finished(event.recorder)
            by_phase[str(event.phase)] += len(event.recorder.cases)
            for node in event.recorder.cases.values():
                by_operation[node.value.operation.label] += 1
            for interaction in event.recorder.interactions.values():
                if interaction.response is not None:
                    by_status[interaction.response.status_code] += 1
        elif isinstance(event, events.NonFatalError):
            errors.append(f"{event.label}: {event.info.format()}")
        elif isinstance(event, events.FatalError):
            errors.append(f"fatal: {event.exception!r}")
        elif isinstance(event, events.EngineFinished):
            stop_reason = str(event.stop_reason)
    failures = failure_details(statistic)
    summary = {
        "schemathesis": schemathesis.__version__,
        "seed": schema.config.seed,
        "examples_per_operation": EXAMPLES,
        "operations": len(by_operation),
        "cases": statistic.total_cases,
        "cases_with_failures": statistic.cases_with_failures,
        "failures": len(failures),
        "errors": len(errors),
        "stop_reason": stop_reason,
        "by_phase": dict(by_phase),
        "by_status": {str(code): n for code, n in sorted(by_status.items())},
        "by_operation": dict(sorted(by_operation.items())),
        "failure_details": failures,
        "error_details": errors,
    }
    text = json.dumps(summary, indent=2)
    print(text)
    if REPORT:
        Path(REPORT).write_text(text + "\n")

    assert stop_reason == "completed", text
    assert not errors, text
    assert not failures, text
    assert statistic.total_cases > 0
    # Nothing the fuzzer did locked it out.
    with fuzz_server.admin() as client:
        assert client.get(f"{API}/me").status_code == 200
