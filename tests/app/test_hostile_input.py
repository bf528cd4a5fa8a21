"""Hostile requests against a real `radmatch serve`: malformed multipart bodies, wrong content
types, oversized header blocks, bodies past the upload limit (declared or chunked), decompression
bombs, hostile DICOM structure, out-of-range parameters, and values a database would choke on.

Each is refused with a 4xx that says what was wrong, before more than the limits allow is read or
decoded (memory is bounded by those limits, not measured here), and leaves no row and no stored
original behind. No answer shows a server path or a stack trace.

Each hostile request is a test of its own, and the tests share servers: starting one takes seconds,
a request a fraction of one. Most share one server on SQLite with small limits: what they send is
refused at the HTTP layer or by the decoders, before anything reaches the database, so the database
does not matter to them. What does reach the database (ids, text, names, metadata read from files)
is tested on one server on SQLite and one on PostgreSQL (the tests under "what the database
sees")."""

from __future__ import annotations

import io
import json
import socket
import struct
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pydicom
import pytest
import sqlalchemy as sa
from pydicom.uid import DeflatedExplicitVRLittleEndian, JPEG2000Lossless, RLELossless

from app.main import MULTIPART_OVERHEAD, OTHER_BODY_LIMIT
from tests.support.images import (
    dicom_bytes,
    j2k_claims,
    jpeg_bytes,
    png_bytes,
    png_chunk,
    png_declaring,
    saved,
    with_patched_frame,
    with_private_zeros,
)
from tests.support.servers import REPO, Server, new_server

API = "/api/v1"
UPLOAD_LIMIT = 1_000_000  # RADMATCH_MAX_UPLOAD_BYTES of the hostile server
PIXEL_LIMIT = 1_000_000  # RADMATCH_MAX_PIXELS of the hostile server
OVER_THE_PIXEL_LIMIT = f"the limit is {PIXEL_LIMIT:,}"
# h11 (under uvicorn) refuses a request head that grows past this without ending.
HEAD_LIMIT = 16 * 1024
PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"  # (7FE0,0010) in little endian


# --- the servers, and what every answer must not show --------------------------------------------


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, checkpoint) -> Iterator[Server]:
    """One server for the tests below, on SQLite, with a 1 MB upload limit and a one-megapixel
    decode limit."""
    root = tmp_path_factory.mktemp("hostile")
    server = new_server(
        root,
        f"sqlite:///{root / 'radmatch.db'}",
        checkpoint,
        max_upload_bytes=str(UPLOAD_LIMIT),
        max_pixels=str(PIXEL_LIMIT),
    )
    yield server
    server.stop()


class Answers:
    """A server's clients, one per key and kept open for the module's tests, that keep every
    answer's body since the test began; and the check that none shows a path of the server or a
    stack trace."""

    def __init__(self, server: Server):
        self.server = server
        self.bodies: list[tuple[str, bytes]] = []
        self._clients: dict[str | None, httpx.Client] = {}

    def client(self, key: str | None = None) -> httpx.Client:
        # A client costs tens of milliseconds to make (its TLS context), more than most requests.
        if key not in self._clients:
            self._clients[key] = self.server.client(key, event_hooks={"response": [self._keep]})
        return self._clients[key]

    def close(self) -> None:
        for client in self._clients.values():
            client.close()

    def examiner(self) -> httpx.Client:
        return self.client(self.server.examiner_key)

    def admin(self) -> httpx.Client:
        return self.client(self.server.admin_key)

    def _keep(self, response: httpx.Response) -> None:
        response.read()
        self.keep(f"{response.request.method} {response.request.url.path}", response.content)

    def keep(self, label: str, body: bytes) -> None:
        self.bodies.append((label, body))

    def assert_nothing_revealed(self) -> None:
        data_dir = Path(self.server.env["RADMATCH_DATA_DIR"])
        secrets = {
            str(data_dir),
            str(data_dir.resolve()),
            str(REPO),
            "/tmp/",
            "Traceback",
            'File "',
        }
        assert self.bodies
        for label, body in self.bodies:
            text = body.decode("latin-1")
            shown = [secret for secret in secrets if secret in text]
            assert not shown, f"{label} answered with {shown}: {text[:500]}"


class Stored:
    """What a server keeps: every table's row count and every file in the originals store."""

    def __init__(self, server: Server):
        self.engine = sa.create_engine(server.env["RADMATCH_DATABASE_URL"])
        self.originals = Path(server.env["RADMATCH_DATA_DIR"]) / "originals"

    def now(self) -> dict[str, Any]:
        with self.engine.connect() as connection:
            rows = {
                name: connection.scalar(sa.select(sa.func.count()).select_from(sa.table(name)))
                for name in sa.inspect(connection).get_table_names()
            }
        files = sorted(str(p) for p in self.originals.rglob("*") if p.is_file())
        return {"rows": rows, "originals": files}


@pytest.fixture(scope="module")
def hostile_answers(hostile) -> Iterator[Answers]:
    kept = Answers(hostile)
    yield kept
    kept.close()


@pytest.fixture
def answers(hostile_answers) -> Answers:
    """The hostile server's clients, holding this test's answers alone."""
    hostile_answers.bodies.clear()
    return hostile_answers


@pytest.fixture(scope="module")
def stored(hostile) -> Iterator[Stored]:
    kept = Stored(hostile)
    yield kept
    kept.engine.dispose()


@pytest.fixture(scope="module")
def person_id(hostile_answers) -> int:
    """A person for the uploads sent to the hostile server."""
    return person(hostile_answers.examiner(), "HOSTILE-1")


def person(client: httpx.Client, ref: str) -> int:
    response = client.post(f"{API}/people", json={"external_ref": ref})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def detail(response: httpx.Response) -> str:
    return json.dumps(response.json()["detail"])


def assert_refused(response: httpx.Response, status: int, *words: str) -> None:
    """The answer has this status and its detail says these words."""
    where = f"{response.request.method} {response.request.url}"
    assert response.status_code == status, (where, response.text[:500])
    said = detail(response)
    for word in words:
        assert word in said, (where, said[:500])


# --- multipart bodies, written by hand ---------------------------------------------------------


def multipart(parts: list[bytes], boundary: str = "hostile-boundary") -> bytes:
    body = b"".join(b"--" + boundary.encode() + b"\r\n" + part for part in parts)
    return body + b"--" + boundary.encode() + b"--\r\n"


def form_field(name: str, value: bytes, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    return f"Content-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"


MULTIPART = {"content-type": "multipart/form-data; boundary=hostile-boundary"}
JSON = {"content-type": "application/json"}


# --- files, well-formed and hostile -------------------------------------------------------------


def picture(seed: int = 0, side: int = 80) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 65535, (side, side), dtype=np.uint16)


def deflated_zeros(size: int) -> bytes:
    """`size` zero bytes, zlib-compressed (about a thousandth of the size)."""
    compressor = zlib.compressobj(9)
    step = 1 << 22
    pieces = [compressor.compress(bytes(min(step, size - start))) for start in range(0, size, step)]
    return b"".join(pieces) + compressor.flush()


def png_with_text(inflated: int) -> bytes:
    """A valid PNG with a compressed text chunk that inflates to `inflated` bytes."""
    image = png_bytes(picture())
    text = png_chunk(b"zTXt", b"note\x00\x00" + deflated_zeros(inflated))
    return image[:33] + text + image[33:]


def jpeg_declaring(width: int, height: int) -> bytes:
    data = bytearray(jpeg_bytes(np.zeros((80, 80), np.uint8)))
    struct.pack_into(">HH", data, data.index(b"\xff\xc0") + 5, height, width)
    return bytes(data)


def tiff_declaring(width: int, height: int) -> bytes:
    """A little-endian TIFF whose one strip of 64 bytes claims to be width x height 8-bit grey."""
    entries = [
        (256, 4, 1, width),  # ImageWidth
        (257, 4, 1, height),  # ImageLength
        (258, 3, 1, 8),  # BitsPerSample
        (259, 3, 1, 1),  # Compression: none
        (262, 3, 1, 1),  # PhotometricInterpretation: black is zero
        (273, 4, 1, 0),  # StripOffsets, set below
        (278, 4, 1, height),  # RowsPerStrip
        (279, 4, 1, 64),  # StripByteCounts
    ]
    ifd_size = 2 + 12 * len(entries) + 4
    strip_at = 8 + ifd_size
    entries[5] = (273, 4, 1, strip_at)
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        packed = struct.pack("<H", value) + b"\x00\x00" if kind == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, count) + packed
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + bytes(64)


def with_pixel_header(data: bytes, rows: int, columns: int) -> bytes:
    """The same file with Rows and Columns changed (explicit VR little endian)."""
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.Rows, ds.Columns = rows, columns
    return saved(ds)


def before_pixel_data(data: bytes, elements: bytes) -> bytes:
    at = data.rindex(PIXEL_DATA_TAG)
    return data[:at] + elements + data[at:]


def long_element(group: int, element: int, vr: bytes, length: int, value: bytes = b"") -> bytes:
    """An explicit VR little endian element with a 32-bit length field (OB, UN, SQ, ...)."""
    return struct.pack("<HH", group, element) + vr + b"\x00\x00" + struct.pack("<I", length) + value


def nested_sequences(levels: int) -> bytes:
    """A valid image whose Content Sequence nests `levels` deep (undefined lengths)."""
    opening = long_element(0x0040, 0xA730, b"SQ", 0xFFFFFFFF) + struct.pack(
        "<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF
    )
    closing = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    return before_pixel_data(dicom_bytes(picture()), opening * levels + closing * levels)


def deflate_bomb() -> bytes:
    """A deflated DICOM of a valid image and 64 MiB of zeros in a private element: about 70 kB."""
    return with_private_zeros(dicom_bytes(picture(), DeflatedExplicitVRLittleEndian), 64 << 20)


def j2k_declaring(side: int) -> bytes:
    """A JPEG 2000 DICOM of 80x80 pixels whose codestream says it is side x side."""
    return with_patched_frame(dicom_bytes(picture(), JPEG2000Lossless), j2k_claims(side))


def upload(client: httpx.Client, person_id: int, data: bytes, name: str = "image", **form: Any):
    files = {"file": (name, data, "application/octet-stream")}
    return client.post(f"{API}/people/{person_id}/images", files=files, data=form)


def upload_named(client: httpx.Client, person_id: int, data: bytes, filename: bytes):
    """An upload whose file name is written into the multipart head byte for byte."""
    head = b'Content-Disposition: form-data; name="file"; filename="' + filename + b'"\r\n\r\n'
    body = multipart([head + data + b"\r\n"])
    return client.post(f"{API}/people/{person_id}/images", content=body, headers=MULTIPART)


def search(client: httpx.Client, data: bytes, **form: Any):
    return client.post(f"{API}/search", files={"file": ("query", data)}, data=form)


# --- bodies ------------------------------------------------------------------------------------

IMAGE = png_bytes(picture())
IMAGES = f"{API}/people/{{person_id}}/images"  # the uploads' person is filled in
BODIES = [
    pytest.param(
        f"{API}/search", b'{"k": 3}', JSON, 422, ("file", "Field required"), id="JSON to a search"
    ),
    pytest.param(IMAGES, b'{"file": "x"}', JSON, 422, ("file",), id="JSON to an upload"),
    pytest.param(
        f"{API}/people",
        multipart([form_field("external_ref", b"X-1")]),
        MULTIPART,
        422,
        ("dictionary",),
        id="multipart where JSON is expected",
    ),
    pytest.param(
        f"{API}/search",
        b"--x\r\n",
        {"content-type": "multipart/form-data"},
        400,
        ("boundary",),
        id="multipart without a boundary",
    ),
    pytest.param(
        f"{API}/search", b"garbage", MULTIPART, 400, ("multipart",), id="multipart of garbage"
    ),
    pytest.param(
        f"{API}/people",
        b'{"external_ref": "X-2", "sex": "\\ud800"}',
        JSON,
        422,
        ("sex",),
        id="a lone surrogate in JSON, echoed back in the refusal",
    ),
    pytest.param(f"{API}/search", b"", MULTIPART, 422, ("file",), id="empty multipart"),
    pytest.param(
        IMAGES,
        b"--hostile-boundary\r\n" + form_field("file", IMAGE[:500], "x.png")[:-2],
        MULTIPART,
        422,
        ("file",),
        id="multipart cut off inside the file",
    ),
    pytest.param(
        IMAGES,
        multipart([form_field("file", IMAGE)]),
        MULTIPART,
        422,
        ("file",),
        id="the file as a plain form field",
    ),
    pytest.param(
        f"{API}/search",
        multipart([form_field(f"f{i}", b"1") for i in range(1001)]),
        MULTIPART,
        400,
        ("Too many fields",),
        id="1001 form fields",
    ),
    pytest.param(
        f"{API}/search",
        multipart([form_field("body_part", b"K" * 1_050_000), form_field("file", IMAGE, "q")]),
        MULTIPART,
        400,
        ("maximum size",),
        id="a form field of 1 MB",
    ),
    pytest.param(
        f"{API}/search",
        b"k=3",
        {"content-type": "application/x-www-form-urlencoded"},
        422,
        ("file",),
        id="a urlencoded form to a search",
    ),
    pytest.param(
        f"{API}/people",
        b"external_ref=X-2",
        {"content-type": "text/plain"},
        422,
        ("dictionary",),
        id="text/plain where JSON is expected",
    ),
    pytest.param(
        f"{API}/people", b'{"external_ref": "X-3",', JSON, 422, ("JSON",), id="JSON cut short"
    ),
    pytest.param(
        f"{API}/people",
        b"[" * 100_000 + b"]" * 100_000,
        JSON,
        400,
        ("body",),
        id="JSON nested 100,000 deep",
    ),
    pytest.param(
        f"{API}/people",
        b'{"external_ref": "X-4", "birth_year": ' + b"9" * 5000 + b"}",
        JSON,
        400,
        ("body",),
        id="JSON with a 5000-digit number",
    ),
]


@pytest.mark.parametrize(("path", "body", "headers", "status", "words"), BODIES)
def test_wrong_and_malformed_bodies(answers, stored, person_id, path, body, headers, status, words):
    """JSON where a multipart upload is expected and the other way round, multipart bodies the
    parser cannot read or that carry no file, more or larger form fields than it takes, JSON that
    is cut short or nests past any parser's depth: a 4xx naming what is wrong."""
    before = stored.now()
    client = answers.examiner()
    response = client.post(path.format(person_id=person_id), content=body, headers=headers)
    assert_refused(response, status, *words)
    assert stored.now() == before
    answers.assert_nothing_revealed()


# --- request heads -------------------------------------------------------------------------------


def raw_exchange(server: Server, request: bytes) -> bytes:
    """Send these bytes on a new connection and read until the server closes it (a server that
    closes with some of the request unread resets the connection after its answer)."""
    answer = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as connection:
        connection.sendall(request)
        try:
            while chunk := connection.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    return answer


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(b"X-Padding: " + b"a" * (HEAD_LIMIT + 4096) + b"\r\n", id="one long header"),
        pytest.param(
            b"".join(b"X-Header-%d: %s\r\n" % (i, b"v" * 20) for i in range(800)),
            id="many headers",
        ),
    ],
)
def test_oversized_request_heads(hostile, answers, headers):
    """A request head that grows past h11's 16 KiB without ending (one long header, or many) is
    answered 400 and the connection closed; uvicorn answers 400 where h11 would suggest 431. The
    head is sent unfinished so that the server has read all of it when it answers."""
    request = b"GET /api/v1/me HTTP/1.1\r\nHost: radmatch\r\n" + headers
    answer = raw_exchange(hostile, request)  # no blank line: the head never ends
    answers.keep("the oversized head", answer)
    assert status_of(answer) in (400, 431), answer[:300]
    answers.assert_nothing_revealed()


def test_heads_within_the_limit_are_answered(answers):
    """A head within the limit, even of many headers or a long key, is read and answered."""
    client = answers.client()
    assert client.get("/healthz", headers={f"X-H{i}": "v" for i in range(300)}).status_code == 200
    long_key = answers.client("rmk_" + "a" * 8000 + "_" + "b" * 40).get(f"{API}/me")
    assert_refused(long_key, 401, "not valid")
    answers.assert_nothing_revealed()


POST_PEOPLE = b"POST /api/v1/people HTTP/1.1\r\nHost: radmatch\r\n"


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(POST_PEOPLE + b"Content-Length: abc\r\n\r\n", id="length not a number"),
        pytest.param(POST_PEOPLE + b"Content-Length: -1\r\n\r\n", id="negative length"),
        pytest.param(
            POST_PEOPLE + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nabcde", id="two lengths"
        ),
        pytest.param(POST_PEOPLE + b"X-A: a\x00b\r\n\r\n", id="NUL in a header"),
        pytest.param(b"NOT HTTP AT ALL\r\n\r\n", id="garbage"),
    ],
)
def test_malformed_http(hostile, answers, request_bytes):
    """Requests h11 cannot frame are refused by it, before the app."""
    answer = raw_exchange(hostile, request_bytes)
    answers.keep("the malformed request", answer)
    assert status_of(answer) == 400, answer[:300]
    answers.assert_nothing_revealed()


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(b"/static/../../app/main.py", id="dot-dot"),
        pytest.param(b"/static/..%2f..%2fapp%2fmain.py", id="encoded slashes"),
        pytest.param(b"/static/%2e%2e/%2e%2e/app/main.py", id="encoded dots"),
        pytest.param(b"/static/..\\..\\app\\main.py", id="backslashes"),
    ],
)
def test_paths_out_of_static_find_nothing(hostile, answers, path):
    """Paths that try to climb out of /static find nothing."""
    answer = raw_exchange(
        hostile, b"GET " + path + b" HTTP/1.1\r\nHost: radmatch\r\nConnection: close\r\n\r\n"
    )
    answers.keep(path.decode(), answer)
    assert status_of(answer) == 404, answer[:300]
    assert b"create_app" not in answer
    answers.assert_nothing_revealed()


# --- the upload limit ----------------------------------------------------------------------------
# Over RADMATCH_MAX_UPLOAD_BYTES: refused by the declared Content-Length before the body is read;
# without one (chunked), cut off once the count passes the limit, and the connection closed so
# that the client stops sending.


def test_an_upload_declared_over_the_limit_is_refused_unread(answers, stored, person_id):
    before = stored.now()
    declared = upload(answers.examiner(), person_id, bytes(2 * UPLOAD_LIMIT))
    assert_refused(declared, 413, f"limited to {UPLOAD_LIMIT} bytes", "RADMATCH_MAX_UPLOAD_BYTES")
    assert declared.headers["connection"] == "close"
    assert stored.now() == before
    answers.assert_nothing_revealed()


def test_an_upload_one_byte_over_the_limit_is_refused(answers, stored, person_id):
    before = stored.now()
    just_over = upload(answers.examiner(), person_id, bytes(UPLOAD_LIMIT + 1))
    assert_refused(just_over, 413, f"limit of {UPLOAD_LIMIT} bytes")
    assert stored.now() == before
    answers.assert_nothing_revealed()


def test_a_chunked_upload_is_cut_off_past_the_limit(answers, stored, person_id):
    before = stored.now()
    sent = 0
    ceiling = 64 << 20

    def endless_file() -> Iterator[bytes]:
        """A multipart upload whose file goes on until 64 MiB, sent chunked."""
        nonlocal sent
        head = b"--hostile-boundary\r\n" + form_field("file", b"", "big.png")[:-2]
        sent += len(head)
        yield head
        chunk = bytes(64 * 1024)
        while sent < ceiling:
            sent += len(chunk)
            yield chunk

    chunked = answers.examiner().post(
        f"{API}/people/{person_id}/images", content=endless_file(), headers=MULTIPART
    )
    assert "content-length" not in chunked.request.headers
    assert_refused(chunked, 413, f"over {UPLOAD_LIMIT + MULTIPART_OVERHEAD} bytes")
    # The client was stopped by the closed connection long before the end of its 64 MiB; what it
    # got out is the limit plus what the sockets' buffers took.
    assert sent < ceiling // 2
    assert stored.now() == before
    answers.assert_nothing_revealed()


def test_a_chunked_json_body_is_cut_off_past_its_limit(answers, stored):
    before = stored.now()

    def endless_json() -> Iterator[bytes]:
        yield b'{"external_ref": "LIMIT-2", "notes": "'
        for _ in range(64):
            yield b"n" * (64 * 1024)
        yield b'"}'

    json_body = answers.examiner().post(f"{API}/people", content=endless_json(), headers=JSON)
    assert_refused(json_body, 413, f"limited to {OTHER_BODY_LIMIT} bytes")
    assert stored.now() == before
    answers.assert_nothing_revealed()


def test_a_json_body_declared_over_its_limit_is_refused(answers, stored):
    before = stored.now()
    client = answers.examiner()
    declared_json = client.post(f"{API}/people", content=bytes(2 * OTHER_BODY_LIMIT), headers=JSON)
    assert_refused(declared_json, 413, "multipart/form-data")
    assert stored.now() == before
    answers.assert_nothing_revealed()


def test_a_chunked_upload_within_the_limit_is_taken(answers, person_id):
    """A chunked upload within the limit is taken like any other."""
    client = answers.examiner()
    body = multipart([form_field("file", png_bytes(picture(7)), "small.png")])
    fine = client.post(
        f"{API}/people/{person_id}/images",
        content=(body[i : i + 1000] for i in range(0, len(body), 1000)),
        headers=MULTIPART,
    )
    assert fine.status_code == 201, fine.text
    assert client.get("/healthz").status_code == 200
    answers.assert_nothing_revealed()


# --- decompression bombs and hostile files --------------------------------------------------------

BOMBS = [
    pytest.param(
        lambda: png_declaring(50000, 50000, deflated_zeros(1000)),
        413,
        ("pixels",),
        id="PNG of 50000x50000",
    ),
    pytest.param(
        lambda: png_declaring(2000, 2000, deflated_zeros(2001 * 2000)),
        413,
        ("2000x2000", OVER_THE_PIXEL_LIMIT),
        id="PNG of 2000x2000 zeros",
    ),
    pytest.param(
        lambda: png_with_text(96 << 20),
        422,
        ("too large",),
        id="PNG text chunk inflating to 96 MiB",
    ),
    pytest.param(lambda: jpeg_declaring(65000, 65000), 413, ("pixels",), id="JPEG of 65000x65000"),
    pytest.param(
        lambda: jpeg_declaring(2000, 2000),
        413,
        ("2000x2000", OVER_THE_PIXEL_LIMIT),
        id="JPEG of 2000x2000",
    ),
    pytest.param(
        lambda: tiff_declaring(100000, 100000), 413, ("pixels",), id="TIFF of 100000x100000"
    ),
    pytest.param(
        lambda: tiff_declaring(2000, 2000),
        413,
        ("2000x2000", OVER_THE_PIXEL_LIMIT),
        id="TIFF of 2000x2000",
    ),
    pytest.param(
        lambda: with_pixel_header(dicom_bytes(picture(), RLELossless), 60000, 60000),
        413,
        ("60000x60000",),
        id="RLE DICOM of 60000x60000",
    ),
    pytest.param(
        lambda: j2k_declaring(60000),
        422,
        ("60000x60000", "80x80"),
        id="JPEG 2000 codestream of 60000x60000 in an 80x80 DICOM",
    ),
    pytest.param(deflate_bomb, 413, ("deflated",), id="deflated DICOM inflating past 64 MiB"),
]


@pytest.mark.parametrize(("bomb", "status", "words"), BOMBS)
def test_decompression_bombs(answers, stored, person_id, bomb, status, words):
    """Files that are small but would expand hugely are refused by what their headers declare, or
    by measuring the expansion in bounded steps, before any pixel buffer that size exists."""
    data = bomb()
    assert len(data) < UPLOAD_LIMIT
    client = answers.examiner()
    before = stored.now()
    assert_refused(upload(client, person_id, data), status, *words)
    assert_refused(search(client, data), status, *words)
    assert stored.now() == before
    answers.assert_nothing_revealed()


def test_image_data_past_its_header_is_read_only_as_far_as_declared(answers, person_id):
    """Image data that inflates far past what its (small) header declares is read only as far as
    the header says, and the picture is taken."""
    overlong = png_declaring(100, 100, deflated_zeros(200 << 20))
    assert len(overlong) < UPLOAD_LIMIT
    taken = upload(answers.examiner(), person_id, overlong)
    assert taken.status_code == 201, taken.text
    assert (taken.json()["image_metadata"]["width"], taken.json()["image_metadata"]["height"]) == (
        100,
        100,
    )
    answers.assert_nothing_revealed()


def hostile_dicom_picture() -> bytes:
    return dicom_bytes(picture(3))


def pixel_data_declaring(image: bytes, length: int) -> bytes:
    """The image with its pixel data element saying `length` bytes, followed by fewer."""
    at = image.rindex(PIXEL_DATA_TAG)
    return image[:at] + long_element(0x7FE0, 0x0010, b"OW", length) + bytes(80 * 80 * 2)


HOSTILE_DICOM = [
    pytest.param(
        lambda image: nested_sequences(10_000),
        422,
        ("nested too deeply",),
        id="10,000 nested sequences",
    ),
    pytest.param(
        lambda image: before_pixel_data(
            image, long_element(0x0009, 0x1010, b"OB", 200_000_000, b"x" * 64)
        ),
        422,
        ("truncated", "(0009,1010)", "200,000,000"),
        id="a private element declaring 200 MB",
    ),
    pytest.param(
        lambda image: before_pixel_data(
            image, long_element(0x0009, 0x1010, b"OB", 0xFFFFFFF0, b"x" * 64)
        ),
        422,
        ("truncated", "4,294,967,280"),
        id="a private element declaring 4 GiB",
    ),
    pytest.param(
        lambda image: pixel_data_declaring(image, 200_000_000),
        422,
        ("truncated", "(7FE0,0010)"),
        id="pixel data declaring 200 MB",
    ),
    pytest.param(
        lambda image: before_pixel_data(
            image, long_element(0x0009, 0x1010, b"UN", 0xFFFFFFFF, b"x" * 64)
        ),
        422,
        ("DICOM",),
        id="a private element of undefined length",
    ),
]


@pytest.mark.parametrize(("damage", "status", "words"), HOSTILE_DICOM)
def test_hostile_dicom_structure(
    answers, stored, person_id, damage: Callable[[bytes], bytes], status, words
):
    """Sequences nested 10,000 deep, elements declaring hundreds of megabytes in a small file, an
    undefined length where none can be: refused as unreadable or truncated, naming the element."""
    data = damage(hostile_dicom_picture())
    client = answers.examiner()
    before = stored.now()
    assert_refused(upload(client, person_id, data), status, *words)
    assert_refused(search(client, data), status, *words)
    assert stored.now() == before
    answers.assert_nothing_revealed()


def test_the_dicom_file_the_hostile_ones_are_made_from_is_taken(answers, person_id):
    assert upload(answers.examiner(), person_id, hostile_dicom_picture()).status_code == 201
    answers.assert_nothing_revealed()


# --- parameters ----------------------------------------------------------------------------------
# Paging values on every listing, k, preview sizes and values outside every enumeration are 422
# with the parameter named; the listings are taken from the server's own OpenAPI document, so a
# new one is covered too.


def operations(spec: dict) -> Iterator[tuple[str, str, dict]]:
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            yield method.upper(), path, operation


def query_enums(operation: dict) -> dict[str, list[str]]:
    """The operation's query parameters that take one of a fixed set of values."""
    found = {}
    for parameter in operation.get("parameters", []):
        schema = parameter["schema"]
        for option in [schema, *schema.get("anyOf", [])]:
            if parameter["in"] == "query" and ("enum" in option or "pattern" in option):
                found[parameter["name"]] = option.get("enum", [option.get("pattern")])
    return found


def listings(spec: dict) -> list[str]:
    """The paths of every listing: GET with limit and offset."""
    found = [
        path
        for method, path, operation in operations(spec)
        if method == "GET"
        and {"limit", "offset"} <= {p["name"] for p in operation.get("parameters", [])}
    ]
    assert {f"{API}/people", f"{API}/cases", f"{API}/admin/jobs"} <= set(found)
    return found


@pytest.mark.parametrize(
    "params",
    [
        {"limit": -1},
        {"limit": 0},
        {"limit": 10**30},
        {"limit": "abc"},
        {"limit": "1e3"},
        {"limit": ""},
        {"offset": -1},
        {"offset": 10**30},
        {"offset": "abc"},
        {"offset": "1.5"},
    ],
    ids=lambda params: "{}={}".format(*next(iter(params.items()))),
)
def test_paging_out_of_range_on_every_listing(answers, params):
    admin = answers.admin()
    (name,) = params
    for path in listings(admin.get("/openapi.json").json()):
        assert_refused(admin.get(path, params=params), 422, name)
    answers.assert_nothing_revealed()


def test_values_outside_every_enumeration(answers):
    admin = answers.admin()
    for method, path, operation in operations(admin.get("/openapi.json").json()):
        if method != "GET" or "{" in path:
            continue
        for name in query_enums(operation):
            assert_refused(admin.get(path, params={name: "no-such-value"}), 422, name)
    answers.assert_nothing_revealed()


QUERY = png_bytes(picture(11))


@pytest.mark.parametrize("k", [-1, 0, 101, 10**30, "abc", "2.5"])
def test_k_out_of_range(answers, k):
    assert_refused(search(answers.examiner(), QUERY, k=k), 422, "k")
    answers.assert_nothing_revealed()


@pytest.mark.parametrize(
    "form",
    [{"sex": "Q"}, {"side": "middle"}, {"birth_year_min": 10**30}],
    ids=["sex", "side", "birth_year_min"],
)
def test_search_filters_out_of_range(answers, form):
    (name,) = form
    assert_refused(search(answers.examiner(), QUERY, **form), 422, name)
    answers.assert_nothing_revealed()


def new_case(client: httpx.Client) -> int:
    response = client.post(f"{API}/cases", json={"number": f"RANGE-{uuid.uuid4().hex[:12]}"})
    assert response.status_code == 201, response.text
    return response.json()["id"]


@pytest.mark.parametrize(
    ("send", "words"),
    [
        pytest.param(
            lambda answers: answers.examiner().patch(
                f"{API}/cases/{new_case(answers.examiner())}", json={"status": "solved"}
            ),
            (),
            id="a case's status",
        ),
        pytest.param(
            lambda answers: answers.examiner().post(
                f"{API}/cases/{new_case(answers.examiner())}/conclusions",
                json={"search_id": 1, "person_id": 1, "conclusion": "maybe"},
            ),
            (),
            id="a conclusion",
        ),
        pytest.param(
            lambda answers: answers.examiner().post(
                f"{API}/people", json={"external_ref": "R", "sex": "?"}
            ),
            ("sex",),
            id="a person's sex",
        ),
        pytest.param(
            lambda answers: answers.admin().post(
                f"{API}/admin/training-jobs", json={"preset": "huge"}
            ),
            ("preset",),
            id="a training preset",
        ),
    ],
)
def test_json_values_out_of_range(answers, send, words):
    assert_refused(send(answers), 422, *words)
    answers.assert_nothing_revealed()


@pytest.mark.parametrize(
    ("form", "words"),
    [
        pytest.param({"side": "up"}, ("side",), id="side"),
        pytest.param({"visit_months": -1}, ("visit_months",), id="visit_months"),
        pytest.param({"acquisition_date": "yesterday"}, (), id="acquisition_date"),
    ],
)
def test_upload_fields_out_of_range(answers, person_id, form, words):
    assert_refused(upload(answers.examiner(), person_id, QUERY, **form), 422, *words)
    answers.assert_nothing_revealed()


@pytest.fixture(scope="module")
def preview(hostile_answers, person_id) -> str:
    """The preview of an image on the hostile server."""
    uploaded = upload(hostile_answers.examiner(), person_id, QUERY)
    assert uploaded.status_code == 201, uploaded.text
    return f"{API}/images/{uploaded.json()['id']}/preview.png"


@pytest.mark.parametrize("size", [-1, 0, 31, 4097, 10**30, "big"])
def test_preview_sizes_out_of_range(answers, preview, size):
    assert_refused(answers.examiner().get(preview, params={"size": size}), 422, "size")
    answers.assert_nothing_revealed()


# --- what the database sees ----------------------------------------------------------------------
# Values that SQLite stores but PostgreSQL refuses (a NUL character, an id past 32 bits, text
# longer than its column) are refused with a 422 before they reach either database; text read
# from a DICOM file that no element can hold is not stored; file names are kept as names. On one
# server on each database.


@dataclass
class OnDatabase:
    """A server on one of the databases: its clients, what it keeps, and a person and a case for
    the requests that name one."""

    server: Server
    answers: Answers
    stored: Stored
    person_id: int
    case_id: int

    @property
    def examiner(self) -> httpx.Client:
        return self.answers.examiner()

    @property
    def admin(self) -> httpx.Client:
        return self.answers.admin()


@pytest.fixture(scope="module")
def on_database(shared_server) -> Iterator[OnDatabase]:
    answers, stored = Answers(shared_server), Stored(shared_server)
    person_id = person(answers.examiner(), "DB-1")
    case = answers.examiner().post(f"{API}/cases", json={"number": "DB-CASE-1"})
    assert case.status_code == 201, case.text
    yield OnDatabase(shared_server, answers, stored, person_id, case.json()["id"])
    answers.close()
    stored.engine.dispose()


@pytest.fixture
def db(on_database) -> OnDatabase:
    """The server on one of the databases, holding this test's answers alone."""
    on_database.answers.bodies.clear()
    return on_database


@pytest.mark.parametrize("bad", [0, -1, 2**31, 2**63, 10**30, "abc"])
def test_ids_out_of_range_in_every_path(db, bad):
    before = db.stored.now()
    for method, path, operation in operations(db.admin.get("/openapi.json").json()):
        # Row ids; other path parameters (a study's UID, a DICOMweb server's name) are not ids.
        ids = [
            p["name"]
            for p in operation.get("parameters", [])
            if p["in"] == "path" and p["name"].endswith("_id")
        ]
        url = path
        for name in ids:
            url = url.replace("{" + name + "}", str(bad))
        if ids:
            response = db.admin.request(method, url, params={"reason": "hostile ids"})
            assert_refused(response, 422, ids[0])
    assert db.stored.now() == before
    db.answers.assert_nothing_revealed()


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"search_id": 2**31, "person_id": 1, "conclusion": "probable"}, "conclusions"),
        ({"search_id": 1, "person_id": 10**30, "conclusion": "probable"}, "conclusions"),
        ({"search_id": 2**40, "reviewer_key_id": 1}, "reviews"),
        ({"search_id": 1, "reviewer_key_id": -1}, "reviews"),
    ],
    ids=["conclusion's search", "conclusion's person", "review's search", "review's reviewer"],
)
def test_ids_out_of_range_in_bodies(db, body, where):
    before = db.stored.now()
    response = db.examiner.post(f"{API}/cases/{db.case_id}/{where}", json=body)
    assert_refused(response, 422, "_id")
    assert db.stored.now() == before
    db.answers.assert_nothing_revealed()


NUL = "A\x00B"
IMAGE_ON_DATABASE = png_bytes(picture(21))
# Every text a client sends, with a NUL character in it.
NUL_REFUSALS = [
    pytest.param(
        lambda db: db.examiner.post(f"{API}/people", json={"external_ref": NUL}),
        id="a person's reference",
    ),
    pytest.param(
        lambda db: db.examiner.post(f"{API}/people", json={"external_ref": "DB-2", "notes": NUL}),
        id="a person's notes",
    ),
    pytest.param(
        lambda db: db.examiner.get(f"{API}/people", params={"external_ref": NUL}),
        id="people by reference",
    ),
    pytest.param(
        lambda db: db.examiner.post(f"{API}/cases", json={"number": NUL}), id="a case's number"
    ),
    pytest.param(
        lambda db: db.examiner.post(
            f"{API}/cases", json={"number": "DB-CASE-2", "description": NUL}
        ),
        id="a new case's description",
    ),
    pytest.param(
        lambda db: db.examiner.patch(f"{API}/cases/{db.case_id}", json={"description": NUL}),
        id="a case's new description",
    ),
    pytest.param(
        lambda db: db.examiner.get(f"{API}/cases", params={"number": NUL}), id="cases by number"
    ),
    pytest.param(
        lambda db: db.examiner.post(
            f"{API}/cases/{db.case_id}/conclusions",
            json={"search_id": 1, "person_id": 1, "conclusion": "probable", "comment": NUL},
        ),
        id="a conclusion's comment",
    ),
    pytest.param(
        lambda db: db.admin.get(f"{API}/admin/jobs", params={"kind": NUL}), id="jobs by kind"
    ),
    pytest.param(
        lambda db: db.admin.post(
            f"{API}/admin/models", json={"checkpoint_path": "/nowhere/" + NUL}
        ),
        id="a model's checkpoint",
    ),
    pytest.param(
        lambda db: db.admin.post(
            f"{API}/admin/training-jobs", json={"manifest": "/nowhere/" + NUL}
        ),
        id="a training manifest",
    ),
    pytest.param(
        lambda db: db.admin.delete(f"{API}/people/{db.person_id}", params={"reason": NUL}),
        id="a deletion's reason",
    ),
    pytest.param(
        lambda db: upload(db.examiner, db.person_id, IMAGE_ON_DATABASE, body_part=NUL),
        id="an upload's body part",
    ),
    pytest.param(
        lambda db: search(db.examiner, IMAGE_ON_DATABASE, body_part=NUL), id="a search's body part"
    ),
]


@pytest.mark.parametrize("send", NUL_REFUSALS)
def test_nul_characters(db, send):
    before = db.stored.now()
    assert_refused(send(db), 422, "NUL")
    assert db.stored.now() == before
    db.answers.assert_nothing_revealed()


@pytest.mark.parametrize(
    ("send", "words"),
    [
        # Upper-casing can lengthen a body part past its column ("ß" becomes "SS").
        pytest.param(
            lambda db: upload(db.examiner, db.person_id, IMAGE_ON_DATABASE, body_part="ß" * 32),
            ("body_part", "32"),
            id="an upload's body part, longer upper-cased",
        ),
        pytest.param(
            lambda db: search(db.examiner, IMAGE_ON_DATABASE, body_part="ß" * 32),
            ("body_part",),
            id="a search's body part, longer upper-cased",
        ),
        # A pixel spacing so small that the crop it implies would not be a number.
        pytest.param(
            lambda db: upload(
                db.examiner, db.person_id, IMAGE_ON_DATABASE, pixel_spacing_mm=5e-324
            ),
            ("pixel_spacing",),
            id="an upload's tiny pixel spacing",
        ),
        pytest.param(
            lambda db: search(db.examiner, IMAGE_ON_DATABASE, pixel_spacing_mm=5e-324),
            ("pixel_spacing",),
            id="a search's tiny pixel spacing",
        ),
    ],
)
def test_values_no_column_can_hold(db, send, words):
    before = db.stored.now()
    assert_refused(send(db), 422, *words)
    assert db.stored.now() == before
    db.answers.assert_nothing_revealed()


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom's, on writing the invalid values
@pytest.mark.parametrize(
    "file",
    [
        pytest.param(
            lambda: dicom_bytes(picture(31), BodyPartExamined="K" * 40, PatientID="P" * 300_000),
            id="too long for their VRs",
        ),
        pytest.param(
            lambda: dicom_bytes(picture(32), BodyPartExamined="KN\x00EE", ViewPosition="A\x1bP"),
            id="control characters",
        ),
        pytest.param(
            lambda: dicom_bytes(picture(33), PixelSpacing=["5e-324", "5e-324"]),
            id="an implausible pixel spacing",
        ),
    ],
)
def test_dicom_text_no_element_can_hold_is_absent(db, file):
    """Text in a DICOM file that its element cannot hold (too long for its VR, control characters)
    counts as absent, and so does an implausible pixel spacing: the image itself is taken."""
    originals = len(db.stored.now()["originals"])
    response = upload(db.examiner, db.person_id, file())
    assert response.status_code == 201, response.text
    taken = response.json()
    assert taken["body_part"] is None and taken["pixel_spacing_mm"] is None
    assert {"body_part", "patient_id", "view_position", "pixel_spacing_mm"}.isdisjoint(
        taken["image_metadata"]
    )
    assert len(db.stored.now()["originals"]) == originals + 1
    db.answers.assert_nothing_revealed()


@pytest.mark.parametrize(
    ("name", "shown", "seed"),
    [
        pytest.param(b"../../etc/passwd", "passwd", 40, id="a relative path"),
        pytest.param(b"C:\\x\\y", "y", 41, id="a Windows path"),
        pytest.param(b"..\\..\\windows\\win.ini", "win.ini", 42, id="a relative Windows path"),
        pytest.param(b"knee\x00.png", "knee.png", 43, id="a NUL character"),
        pytest.param(b"kn\x01\x1bee\x7f.png", "knee.png", 44, id="control characters"),
        pytest.param("r\u00f6ntgen.png".encode(), "r\u00f6ntgen.png", 45, id="UTF-8"),
        pytest.param(b"n" * 4000 + b".png", "n" * 255, 46, id="4004 characters"),
    ],
)
def test_file_names_are_only_shown(db, name, shown, seed):
    """File names are only shown: no folders, no control characters, at most 255 characters. They
    are written into the multipart head as they are (a client library would escape some)."""
    originals = len(db.stored.now()["originals"])
    response = upload_named(db.examiner, db.person_id, png_bytes(picture(seed)), name)
    assert response.status_code == 201, response.text
    assert response.json()["filename"] == shown
    root = Path(db.server.env["RADMATCH_DATA_DIR"]).parent
    assert not list(root.rglob("passwd")) and not list(root.rglob("win.ini"))
    assert len(db.stored.now()["originals"]) == originals + 1
    db.answers.assert_nothing_revealed()


def test_a_part_head_line_too_long_is_not_read(db):
    """A part head line past the multipart parser's 4 KiB is not read at all."""
    before = db.stored.now()
    too_long = upload_named(db.examiner, db.person_id, png_bytes(picture(60)), b"n" * 10_000)
    assert_refused(too_long, 400, "multipart")
    assert db.stored.now() == before
    db.answers.assert_nothing_revealed()
