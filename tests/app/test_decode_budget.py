"""Decoding bounded by memory, against a real `radmatch serve`: an image whose decode would need
more than the per-image limit is refused with 413 and the numbers, and with a small budget for
concurrent decodes, large decodes that do not fit together are turned away with 429 and
Retry-After while a small one still passes; /metrics counts what the budget did."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Counter

from app.core.errors import Busy
from app.serving.decode_budget import DecodeBudget
from model.decode import decode_image
from model.image import DecodeLimits
from model.memory import raster_estimate
from tests.model.test_decode_memory import flat_png
from tests.support.images import png_bytes
from tests.support.servers import API, Server, new_server

LARGE_SIDE = 2500
LARGE = flat_png(LARGE_SIDE)
SMALL = png_bytes((np.add.outer(np.arange(256), np.arange(256)) % 256).astype(np.uint8))
LARGE_ESTIMATE = raster_estimate(LARGE_SIDE, LARGE_SIDE, "RGB", "png", len(LARGE)).bytes
# Room for one large decode and a few small ones, never for two large ones.
BUDGET = LARGE_ESTIMATE + 64 * 1024 * 1024


@pytest.fixture(scope="module")
def tight(tmp_path_factory, checkpoint) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("budget")
    running = new_server(
        root,
        f"sqlite:///{root / 'radmatch.db'}",
        checkpoint,
        decode_budget_bytes=str(BUDGET),
        decode_wait_seconds="0",
        open_endpoints='["readyz", "metrics"]',
    )
    yield running
    running.stop()


def search(client: httpx.Client, data: bytes) -> httpx.Response:
    return client.post(f"{API}/search", files={"file": ("query.png", data)})


def decodes(server: Server, outcome: str) -> float:
    text = server.client().get("/metrics").text
    found = re.search(rf'^radmatch_decodes_total{{outcome="{outcome}"}} (\S+)$', text, re.M)
    return 0.0 if found is None else float(found.group(1))


def test_an_image_over_the_per_image_limit_is_refused_with_the_numbers(tight):
    huge = flat_png(7740)
    with tight.examiner() as client:
        person = client.post(f"{API}/people", json={"external_ref": "budget-1"}).json()
        answers = [
            search(client, huge),
            client.post(f"{API}/people/{person['id']}/images", files={"file": ("x.png", huge)}),
        ]
    for answer in answers:
        assert answer.status_code == 413, answer.text
        detail = answer.json()["detail"]
        assert "decoding this 7740x7740 RGB PNG needs about" in detail
        assert "the limit per image is 512 MB" in detail


def test_a_decode_that_does_not_fit_beside_a_running_one_is_turned_away_or_waits():
    """The budget itself, with a decode held running: another large one is refused at once with
    Retry-After (no wait) or admitted once the first ends (a wait), and a small one fits."""
    registry = CollectorRegistry()
    counted = Counter("decodes", "", ["outcome"], registry=registry)
    running = raster_estimate(LARGE_SIDE, LARGE_SIDE, "RGB", "png", len(LARGE))
    impatient = DecodeBudget(BUDGET, wait_seconds=0, decodes=counted)
    with impatient.admit(running):
        with pytest.raises(Busy, match="decoding other large images; try again in 1 s") as busy:
            decode_image(LARGE, DecodeLimits(), impatient.admit)
        assert busy.value.status == 429 and busy.value.headers == {"Retry-After": "1"}
        assert decode_image(SMALL, DecodeLimits(), impatient.admit).pixels.shape == (256, 256)
    assert impatient.in_use == 0
    counts = [
        registry.get_sample_value("decodes_total", {"outcome": outcome})
        for outcome in ("admitted", "queued", "refused")
    ]
    assert counts == [2, 1, 1]  # the running decode and the small one; the large one

    patient = DecodeBudget(BUDGET, wait_seconds=60)
    first_ended = threading.Event()

    def hold_then_end() -> None:
        with patient.admit(running):
            admitted.set()
            first_ended.wait(timeout=60)

    admitted = threading.Event()
    holder = threading.Thread(target=hold_then_end)
    holder.start()
    admitted.wait(timeout=60)
    threading.Timer(0.2, first_ended.set).start()
    decoded = decode_image(LARGE, DecodeLimits(), patient.admit)  # waits for the first
    holder.join()
    assert first_ended.is_set() and decoded.pixels.shape == (LARGE_SIDE, LARGE_SIDE)


def test_large_searches_sent_together_get_429_with_retry_after_and_a_small_one_passes(tight):
    """Through the server: bursts of large searches until one finds the budget taken (each
    burst's decodes overlap on any machine this has run on; five bursts leave room)."""
    admitted_before = decodes(tight, "admitted")
    refused_before = decodes(tight, "refused")
    refused: list[httpx.Response] = []
    for _ in range(5):
        answers = burst(tight)
        assert answers["small"].status_code == 200, answers["small"].text
        statuses = {answer.status_code for answer in answers.values()}
        assert statuses <= {200, 429}, statuses
        refused = [answer for answer in answers.values() if answer.status_code == 429]
        if refused:
            break
    assert refused, "no burst of large searches overlapped"
    for answer in refused:
        assert int(answer.headers["Retry-After"]) >= 1
        assert "the server is decoding other large images; try again in" in answer.json()["detail"]
    assert decodes(tight, "refused") - refused_before >= len(refused)
    assert decodes(tight, "admitted") - admitted_before >= 2


def burst(server: Server, large: int = 6) -> dict[str, httpx.Response]:
    start = threading.Barrier(large + 1)
    answers: dict[str, httpx.Response] = {}

    def send(name: str, data: bytes) -> None:
        with server.examiner() as client:
            start.wait()
            answers[name] = search(client, data)

    threads = [threading.Thread(target=send, args=(f"large {i}", LARGE)) for i in range(large)]
    threads.append(threading.Thread(target=send, args=("small", SMALL)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def test_a_decode_larger_than_the_whole_budget_is_refused_at_once_with_413(tight):
    over = flat_png(3200)  # fits the per-image limit, not the server's budget
    with tight.examiner() as client:
        answer = search(client, over)
    assert answer.status_code == 413, answer.text
    assert "the server decodes at most" in answer.json()["detail"]
