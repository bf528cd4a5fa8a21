"""Hostile requests against a real `radmatch serve`: malformed multipart bodies, wrong content
types, oversized header blocks, bodies past the upload limit (declared or chunked), decompression
bombs, hostile DICOM structure, out-of-range parameters, and values a database would choke on.

Each is refused with a 4xx that says what was wrong, before more than the limits allow is read or
decoded (memory is bounded by those limits, not measured here), and leaves no row and no stored
original behind. No answer shows a server path or a stack trace.

Most tests share one server on SQLite with small limits: what they send is refused at the HTTP
layer or by the decoders, before anything reaches the database, so the database does not matter
to them. What does reach the database (ids, text, names, metadata read from files) is tested on
SQLite and PostgreSQL (test_values_the_database_sees)."""

from __future__ import annotations

import io
import json
import socket
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pydicom
import pytest
import sqlalchemy as sa
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, get_frame
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
    generate_uid,
)

from app.main import MULTIPART_OVERHEAD, OTHER_BODY_LIMIT
from tests.support.servers import REPO, Server, prepare_database, service_env

API = "/api/v1"
UPLOAD_LIMIT = 1_000_000  # RADMATCH_MAX_UPLOAD_BYTES of the shared server
PIXEL_LIMIT = 1_000_000  # RADMATCH_MAX_PIXELS of the shared server
# h11 (under uvicorn) refuses a request head that grows past this without ending.
HEAD_LIMIT = 16 * 1024
PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"  # (7FE0,0010) in little endian


# --- the server, and what every answer must not show ---------------------------------------------


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, checkpoint) -> Iterator[Server]:
    """One server for the tests below, on SQLite, with a 1 MB upload limit and a one-megapixel
    decode limit."""
    root = tmp_path_factory.mktemp("hostile")
    database_url = f"sqlite:///{root / 'radmatch.db'}"
    admin, examiner = prepare_database(database_url)
    env = service_env(root / "data", database_url, checkpoint)
    env["RADMATCH_MAX_UPLOAD_BYTES"] = str(UPLOAD_LIMIT)
    env["RADMATCH_MAX_PIXELS"] = str(PIXEL_LIMIT)
    server = Server(env=env, log=root / "server.log", admin_key=admin, examiner_key=examiner)
    server.start()
    yield server
    server.stop()


class Answers:
    """Clients that keep every answer's body, and the check that none shows a path of the server
    or a stack trace."""

    def __init__(self, server: Server):
        self.server = server
        self.bodies: list[tuple[str, bytes]] = []
        self.clients: list[httpx.Client] = []

    def client(self, key: str | None = None) -> httpx.Client:
        client = self.server.client(key, event_hooks={"response": [self._keep]})
        self.clients.append(client)
        return client

    def close(self) -> None:
        for client in self.clients:
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


@pytest.fixture
def answers(hostile) -> Iterator[Answers]:
    kept = Answers(hostile)
    yield kept
    kept.close()


def stored(server: Server) -> dict[str, Any]:
    """Every table's row count and every file in the originals store."""
    engine = sa.create_engine(server.env["RADMATCH_DATABASE_URL"])
    try:
        with engine.connect() as connection:
            rows = {
                name: connection.scalar(sa.select(sa.func.count()).select_from(sa.table(name)))
                for name in sa.inspect(connection).get_table_names()
            }
    finally:
        engine.dispose()
    originals = Path(server.env["RADMATCH_DATA_DIR"]) / "originals"
    files = sorted(str(p) for p in originals.rglob("*") if p.is_file())
    return {"rows": rows, "originals": files}


def person(client: httpx.Client, ref: str) -> int:
    response = client.post(f"{API}/people", json={"external_ref": ref})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def detail(response: httpx.Response) -> str:
    return json.dumps(response.json()["detail"])


def assert_refused(response: httpx.Response, status: int, *words: str, case: str = "") -> None:
    """The answer has this status and its detail says these words."""
    where = f"{case or response.request.url}"
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


def png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_declaring(width: int, height: int, idat: bytes) -> bytes:
    """An 8-bit greyscale PNG header with this size, and this (compressed) image data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def deflated_zeros(size: int) -> bytes:
    """`size` zero bytes, zlib-compressed (about a thousandth of the size)."""
    compressor = zlib.compressobj(9)
    step = 1 << 22
    pieces = [compressor.compress(bytes(min(step, size - start))) for start in range(0, size, step)]
    return b"".join(pieces) + compressor.flush()


def jpeg_declaring(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.zeros((80, 80), np.uint8)).save(out, format="JPEG")
    data = bytearray(out.getvalue())
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


def dicom(pixels: np.ndarray, syntax: UID = ExplicitVRLittleEndian, **elements: object) -> bytes:
    """A DX image of these 16-bit pixels, with these elements besides."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.SOPClassUID = DigitalXRayImageStorageForPresentation
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    if syntax.is_compressed:
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.compress(syntax, pixels)
    else:
        ds.file_meta.TransferSyntaxUID = syntax
        ds.PixelData = pixels.astype("<u2").tobytes()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def with_pixel_header(data: bytes, rows: int, columns: int) -> bytes:
    """The same file with Rows and Columns changed (explicit VR little endian)."""
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.Rows, ds.Columns = rows, columns
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


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
    return before_pixel_data(dicom(picture()), opening * levels + closing * levels)


def deflate_bomb() -> bytes:
    """A deflated DICOM of a valid image and 64 MiB of zeros in a private element: about 70 kB."""
    ds = pydicom.dcmread(io.BytesIO(dicom(picture(), DeflatedExplicitVRLittleEndian)))
    ds.add_new(0x00091010, "OB", bytes(64 << 20))
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def j2k_declaring(side: int) -> bytes:
    """A JPEG 2000 DICOM of 80x80 pixels whose codestream says it is side x side."""
    ds = pydicom.dcmread(io.BytesIO(dicom(picture(), JPEG2000Lossless)))
    frame = bytearray(get_frame(ds.PixelData, 0, number_of_frames=1))
    siz = frame.index(b"\xff\x51")  # Xsiz, Ysiz, XOsiz, YOsiz, XTsiz, YTsiz after Lsiz and Rsiz
    struct.pack_into(">IIIIII", frame, siz + 6, side, side, 0, 0, side, side)
    ds.PixelData = encapsulate([bytes(frame)])
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


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


def test_wrong_and_malformed_bodies(hostile, answers):
    """JSON where a multipart upload is expected and the other way round, multipart bodies the
    parser cannot read or that carry no file, more or larger form fields than it takes, JSON that
    is cut short or nests past any parser's depth: a 4xx naming what is wrong."""
    client = answers.examiner()
    person_id = person(client, "BODIES-1")
    before = stored(hostile)
    image = png(picture())
    images = f"{API}/people/{person_id}/images"
    cases: list[tuple[str, str, bytes, dict[str, str], int, tuple[str, ...]]] = [
        ("JSON to a search", f"{API}/search", b'{"k": 3}', JSON, 422, ("file", "Field required")),
        ("JSON to an upload", images, b'{"file": "x"}', JSON, 422, ("file",)),
        (
            "multipart where JSON is expected",
            f"{API}/people",
            multipart([form_field("external_ref", b"X-1")]),
            MULTIPART,
            422,
            ("dictionary",),
        ),
        (
            "multipart without a boundary",
            f"{API}/search",
            b"--x\r\n",
            {"content-type": "multipart/form-data"},
            400,
            ("boundary",),
        ),
        ("multipart of garbage", f"{API}/search", b"garbage", MULTIPART, 400, ("multipart",)),
        (
            "a lone surrogate in JSON, echoed back in the refusal",
            f"{API}/people",
            b'{"external_ref": "X-2", "sex": "\\ud800"}',
            JSON,
            422,
            ("sex",),
        ),
        ("empty multipart", f"{API}/search", b"", MULTIPART, 422, ("file",)),
        (
            "multipart cut off inside the file",
            images,
            b"--hostile-boundary\r\n" + form_field("file", image[:500], "x.png")[:-2],
            MULTIPART,
            422,
            ("file",),
        ),
        (
            "the file as a plain form field",
            images,
            multipart([form_field("file", image)]),
            MULTIPART,
            422,
            ("file",),
        ),
        (
            "1001 form fields",
            f"{API}/search",
            multipart([form_field(f"f{i}", b"1") for i in range(1001)]),
            MULTIPART,
            400,
            ("Too many fields",),
        ),
        (
            "a form field of 1 MB",
            f"{API}/search",
            multipart([form_field("body_part", b"K" * 1_050_000), form_field("file", image, "q")]),
            MULTIPART,
            400,
            ("maximum size",),
        ),
        (
            "a urlencoded form to a search",
            f"{API}/search",
            b"k=3",
            {"content-type": "application/x-www-form-urlencoded"},
            422,
            ("file",),
        ),
        (
            "text/plain where JSON is expected",
            f"{API}/people",
            b"external_ref=X-2",
            {"content-type": "text/plain"},
            422,
            ("dictionary",),
        ),
        ("JSON cut short", f"{API}/people", b'{"external_ref": "X-3",', JSON, 422, ("JSON",)),
        (
            "JSON nested 100,000 deep",
            f"{API}/people",
            b"[" * 100_000 + b"]" * 100_000,
            JSON,
            400,
            ("body",),
        ),
        (
            "JSON with a 5000-digit number",
            f"{API}/people",
            b'{"external_ref": "X-4", "birth_year": ' + b"9" * 5000 + b"}",
            JSON,
            400,
            ("body",),
        ),
    ]
    for case, path, body, headers, status, words in cases:
        response = client.post(path, content=body, headers=headers)
        assert_refused(response, status, *words, case=case)
    assert stored(hostile) == before
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


def test_oversized_request_heads(hostile, answers):
    """A request head that grows past h11's 16 KiB without ending (one long header, or many) is
    answered 400 and the connection closed; uvicorn answers 400 where h11 would suggest 431. The
    head is sent unfinished so that the server has read all of it when it answers."""
    heads = {
        "one long header": b"X-Padding: " + b"a" * (HEAD_LIMIT + 4096) + b"\r\n",
        "many headers": b"".join(b"X-Header-%d: %s\r\n" % (i, b"v" * 20) for i in range(800)),
    }
    for case, headers in heads.items():
        request = b"GET /api/v1/me HTTP/1.1\r\nHost: radmatch\r\n" + headers
        answer = raw_exchange(hostile, request)  # no blank line: the head never ends
        answers.keep(case, answer)
        assert status_of(answer) in (400, 431), (case, answer[:300])
    # A head within the limit, even of many headers or a long key, is read and answered.
    client = answers.client()
    assert client.get("/healthz", headers={f"X-H{i}": "v" for i in range(300)}).status_code == 200
    long_key = answers.client("rmk_" + "a" * 8000 + "_" + "b" * 40).get(f"{API}/me")
    assert_refused(long_key, 401, "not valid")
    answers.assert_nothing_revealed()


def test_malformed_http(hostile, answers):
    """Requests h11 cannot frame are refused by it, before the app; paths that try to climb out of
    /static find nothing."""
    refused = {
        "length not a number": b"Content-Length: abc\r\n\r\n",
        "negative length": b"Content-Length: -1\r\n\r\n",
        "two lengths": b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nabcde",
        "NUL in a header": b"X-A: a\x00b\r\n\r\n",
    }
    for case, rest in refused.items():
        answer = raw_exchange(hostile, b"POST /api/v1/people HTTP/1.1\r\nHost: radmatch\r\n" + rest)
        answers.keep(case, answer)
        assert status_of(answer) == 400, (case, answer[:300])
    answer = raw_exchange(hostile, b"NOT HTTP AT ALL\r\n\r\n")
    answers.keep("garbage", answer)
    assert status_of(answer) == 400
    for path in (
        b"/static/../../app/main.py",
        b"/static/..%2f..%2fapp%2fmain.py",
        b"/static/%2e%2e/%2e%2e/app/main.py",
        b"/static/..\\..\\app\\main.py",
    ):
        answer = raw_exchange(
            hostile, b"GET " + path + b" HTTP/1.1\r\nHost: radmatch\r\nConnection: close\r\n\r\n"
        )
        answers.keep(path.decode(), answer)
        assert status_of(answer) == 404, (path, answer[:300])
        assert b"create_app" not in answer
    answers.assert_nothing_revealed()


# --- the upload limit ----------------------------------------------------------------------------


def test_bodies_over_the_limit_are_cut_off(hostile, answers):
    """Over RADMATCH_MAX_UPLOAD_BYTES: refused by the declared Content-Length before the body is
    read; without one (chunked), cut off once the count passes the limit, and the connection
    closed so that the client stops sending."""
    client = answers.examiner()
    person_id = person(client, "LIMIT-1")
    before = stored(hostile)

    declared = upload(client, person_id, bytes(2 * UPLOAD_LIMIT))
    assert_refused(declared, 413, f"limited to {UPLOAD_LIMIT} bytes", "RADMATCH_MAX_UPLOAD_BYTES")
    assert declared.headers["connection"] == "close"
    just_over = upload(client, person_id, bytes(UPLOAD_LIMIT + 1))
    assert_refused(just_over, 413, f"limit of {UPLOAD_LIMIT} bytes")

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

    chunked = client.post(
        f"{API}/people/{person_id}/images", content=endless_file(), headers=MULTIPART
    )
    assert "content-length" not in chunked.request.headers
    assert_refused(chunked, 413, f"over {UPLOAD_LIMIT + MULTIPART_OVERHEAD} bytes")
    # The client was stopped by the closed connection long before the end of its 64 MiB; what it
    # got out is the limit plus what the sockets' buffers took.
    assert sent < ceiling // 2

    def endless_json() -> Iterator[bytes]:
        yield b'{"external_ref": "LIMIT-2", "notes": "'
        for _ in range(64):
            yield b"n" * (64 * 1024)
        yield b'"}'

    json_body = client.post(f"{API}/people", content=endless_json(), headers=JSON)
    assert_refused(json_body, 413, f"limited to {OTHER_BODY_LIMIT} bytes")
    declared_json = client.post(f"{API}/people", content=bytes(2 * OTHER_BODY_LIMIT), headers=JSON)
    assert_refused(declared_json, 413, "multipart/form-data")
    assert stored(hostile) == before

    # A chunked upload within the limit is taken like any other.
    image = png(picture(7))
    body = multipart([form_field("file", image, "small.png")])
    fine = client.post(
        f"{API}/people/{person_id}/images",
        content=(body[i : i + 1000] for i in range(0, len(body), 1000)),
        headers=MULTIPART,
    )
    assert fine.status_code == 201, fine.text
    assert client.get("/healthz").status_code == 200
    answers.assert_nothing_revealed()


# --- decompression bombs and hostile files --------------------------------------------------------


def test_decompression_bombs(hostile, answers):
    """Files that are small but would expand hugely are refused by what their headers declare, or
    by measuring the expansion in bounded steps, before any pixel buffer that size exists."""
    client = answers.examiner()
    person_id = person(client, "BOMB-1")
    before = stored(hostile)
    over = f"the limit is {PIXEL_LIMIT:,}"
    bombs: list[tuple[str, bytes, int, tuple[str, ...]]] = [
        ("PNG of 50000x50000", png_declaring(50000, 50000, deflated_zeros(1000)), 413, ("pixels",)),
        (
            "PNG of 2000x2000 zeros",
            png_declaring(2000, 2000, deflated_zeros(2001 * 2000)),
            413,
            ("2000x2000", over),
        ),
        (
            "PNG text chunk inflating to 96 MiB",
            png(picture())[:33]
            + png_chunk(b"zTXt", b"note\x00\x00" + deflated_zeros(96 << 20))
            + png(picture())[33:],
            422,
            ("too large",),
        ),
        ("JPEG of 65000x65000", jpeg_declaring(65000, 65000), 413, ("pixels",)),
        ("JPEG of 2000x2000", jpeg_declaring(2000, 2000), 413, ("2000x2000", over)),
        ("TIFF of 100000x100000", tiff_declaring(100000, 100000), 413, ("pixels",)),
        ("TIFF of 2000x2000", tiff_declaring(2000, 2000), 413, ("2000x2000", over)),
        (
            "RLE DICOM of 60000x60000",
            with_pixel_header(dicom(picture(), RLELossless), 60000, 60000),
            413,
            ("60000x60000",),
        ),
        (
            "JPEG 2000 codestream of 60000x60000 in an 80x80 DICOM",
            j2k_declaring(60000),
            422,
            ("60000x60000", "80x80"),
        ),
        ("deflated DICOM inflating past 64 MiB", deflate_bomb(), 413, ("deflated",)),
    ]
    for case, data, status, words in bombs:
        assert len(data) < UPLOAD_LIMIT, case
        assert_refused(upload(client, person_id, data), status, *words, case=case)
        assert_refused(search(client, data), status, *words, case=case)
    assert stored(hostile) == before

    # Image data that inflates far past what its (small) header declares is read only as far as
    # the header says, and the picture is taken.
    overlong = png_declaring(100, 100, deflated_zeros(200 << 20))
    assert len(overlong) < UPLOAD_LIMIT
    taken = upload(client, person_id, overlong)
    assert taken.status_code == 201, taken.text
    assert (taken.json()["image_metadata"]["width"], taken.json()["image_metadata"]["height"]) == (
        100,
        100,
    )
    answers.assert_nothing_revealed()


def test_hostile_dicom_structure(hostile, answers):
    """Sequences nested 10,000 deep, elements declaring hundreds of megabytes in a small file, an
    undefined length where none can be: refused as unreadable or truncated, naming the element."""
    client = answers.examiner()
    person_id = person(client, "DICOM-1")
    before = stored(hostile)
    image = dicom(picture(3))
    at = image.rindex(PIXEL_DATA_TAG)
    files: list[tuple[str, bytes, int, tuple[str, ...]]] = [
        ("10,000 nested sequences", nested_sequences(10_000), 422, ("nested too deeply",)),
        (
            "a private element declaring 200 MB",
            before_pixel_data(image, long_element(0x0009, 0x1010, b"OB", 200_000_000, b"x" * 64)),
            422,
            ("truncated", "(0009,1010)", "200,000,000"),
        ),
        (
            "a private element declaring 4 GiB",
            before_pixel_data(image, long_element(0x0009, 0x1010, b"OB", 0xFFFFFFF0, b"x" * 64)),
            422,
            ("truncated", "4,294,967,280"),
        ),
        (
            "pixel data declaring 200 MB",
            image[:at] + long_element(0x7FE0, 0x0010, b"OW", 200_000_000) + bytes(80 * 80 * 2),
            422,
            ("truncated", "(7FE0,0010)"),
        ),
        (
            "a private element of undefined length",
            before_pixel_data(image, long_element(0x0009, 0x1010, b"UN", 0xFFFFFFFF, b"x" * 64)),
            422,
            ("DICOM",),
        ),
    ]
    for case, data, status, words in files:
        assert_refused(upload(client, person_id, data), status, *words, case=case)
        assert_refused(search(client, data), status, *words, case=case)
    assert stored(hostile) == before
    assert upload(client, person_id, image).status_code == 201  # the file itself is fine
    answers.assert_nothing_revealed()


# --- parameters ----------------------------------------------------------------------------------


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


def test_out_of_range_parameters(hostile, answers):
    """Paging values on every listing, k, preview sizes and values outside every enumeration are
    422 with the parameter named; the listings are taken from the server's own OpenAPI document,
    so a new one is covered too."""
    admin = answers.admin()
    spec = admin.get("/openapi.json").json()
    listings = [
        path
        for method, path, operation in operations(spec)
        if method == "GET"
        and {"limit", "offset"} <= {p["name"] for p in operation.get("parameters", [])}
    ]
    assert {f"{API}/people", f"{API}/cases", f"{API}/admin/jobs"} <= set(listings)
    bad_paging = [
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
    ]
    for path in listings:
        for params in bad_paging:
            (name,) = params
            assert_refused(admin.get(path, params=params), 422, name)
    for method, path, operation in operations(spec):
        if method != "GET" or "{" in path:
            continue
        for name in query_enums(operation):
            assert_refused(admin.get(path, params={name: "no-such-value"}), 422, name)

    client = answers.examiner()
    image = png(picture(11))
    for k in (-1, 0, 101, 10**30, "abc", "2.5"):
        assert_refused(search(client, image, k=k), 422, "k")
    for form in ({"sex": "Q"}, {"side": "middle"}, {"birth_year_min": 10**30}):
        (name,) = form
        assert_refused(search(client, image, **form), 422, name)
    case = client.post(f"{API}/cases", json={"number": "RANGE-1"}).json()
    assert_refused(client.patch(f"{API}/cases/{case['id']}", json={"status": "solved"}), 422)
    conclusion = {"search_id": 1, "person_id": 1, "conclusion": "maybe"}
    assert_refused(client.post(f"{API}/cases/{case['id']}/conclusions", json=conclusion), 422)
    assert_refused(client.post(f"{API}/people", json={"external_ref": "R", "sex": "?"}), 422, "sex")
    assert_refused(admin.post(f"{API}/admin/training-jobs", json={"preset": "huge"}), 422, "preset")
    person_id = person(client, "RANGE-2")
    assert_refused(upload(client, person_id, image, side="up"), 422, "side")
    assert_refused(upload(client, person_id, image, visit_months=-1), 422, "visit_months")
    assert_refused(upload(client, person_id, image, acquisition_date="yesterday"), 422)
    uploaded = upload(client, person_id, image)
    assert uploaded.status_code == 201, uploaded.text
    preview = f"{API}/images/{uploaded.json()['id']}/preview.png"
    for size in (-1, 0, 31, 4097, 10**30, "big"):
        assert_refused(client.get(preview, params={"size": size}), 422, "size")
    answers.assert_nothing_revealed()


# --- what the database sees ----------------------------------------------------------------------


@pytest.fixture
def answers_of_server(server) -> Iterator[Answers]:
    kept = Answers(server)
    yield kept
    kept.close()


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom's, on writing the invalid values
def test_values_the_database_sees(server, answers_of_server, tmp_path):
    """Values that SQLite stores but PostgreSQL refuses (a NUL character, an id past 32 bits, text
    longer than its column) are refused with a 422 before they reach either database; text read
    from a DICOM file that no element can hold is not stored; file names are kept as names."""
    answers = answers_of_server
    admin, client = answers.admin(), answers.examiner()
    spec = admin.get("/openapi.json").json()
    person_id = person(client, "DB-1")
    case_id = client.post(f"{API}/cases", json={"number": "DB-CASE-1"}).json()["id"]
    before = stored(server)

    # Every id in every path, from the OpenAPI document.
    for method, path, operation in operations(spec):
        ids = [p["name"] for p in operation.get("parameters", []) if p["in"] == "path"]
        for bad in (0, -1, 2**31, 2**63, 10**30, "abc"):
            url = path
            for name in ids:
                url = url.replace("{" + name + "}", str(bad))
            if ids:
                response = admin.request(method, url, params={"reason": "hostile ids"})
                assert_refused(response, 422, ids[0])
    for body, where in (
        ({"search_id": 2**31, "person_id": 1, "conclusion": "probable"}, "conclusions"),
        ({"search_id": 1, "person_id": 10**30, "conclusion": "probable"}, "conclusions"),
        ({"search_id": 2**40, "reviewer_key_id": 1}, "reviews"),
        ({"search_id": 1, "reviewer_key_id": -1}, "reviews"),
    ):
        assert_refused(client.post(f"{API}/cases/{case_id}/{where}", json=body), 422, "_id")

    # A NUL character in any text a client sends.
    nul = "A\x00B"
    image = png(picture(21))
    refusals = [
        client.post(f"{API}/people", json={"external_ref": nul}),
        client.post(f"{API}/people", json={"external_ref": "DB-2", "notes": nul}),
        client.get(f"{API}/people", params={"external_ref": nul}),
        client.post(f"{API}/cases", json={"number": nul}),
        client.post(f"{API}/cases", json={"number": "DB-CASE-2", "description": nul}),
        client.patch(f"{API}/cases/{case_id}", json={"description": nul}),
        client.get(f"{API}/cases", params={"number": nul}),
        client.post(
            f"{API}/cases/{case_id}/conclusions",
            json={"search_id": 1, "person_id": 1, "conclusion": "probable", "comment": nul},
        ),
        admin.get(f"{API}/admin/jobs", params={"kind": nul}),
        admin.post(f"{API}/admin/models", json={"checkpoint_path": "/nowhere/" + nul}),
        admin.post(f"{API}/admin/training-jobs", json={"manifest": "/nowhere/" + nul}),
        admin.delete(f"{API}/people/{person_id}", params={"reason": nul}),
        upload(client, person_id, image, body_part=nul),
        search(client, image, body_part=nul),
    ]
    for response in refusals:
        assert_refused(response, 422, "NUL")
    # Upper-casing can lengthen a body part past its column ("ß" becomes "SS").
    assert_refused(upload(client, person_id, image, body_part="ß" * 32), 422, "body_part", "32")
    assert_refused(search(client, image, body_part="ß" * 32), 422, "body_part")
    # A pixel spacing so small that the crop it implies would not be a number.
    assert_refused(upload(client, person_id, image, pixel_spacing_mm=5e-324), 422, "pixel_spacing")
    assert_refused(search(client, image, pixel_spacing_mm=5e-324), 422, "pixel_spacing")
    assert stored(server) == before

    # Text in a DICOM file that its element cannot hold (too long for its VR, control characters)
    # counts as absent, and so does an implausible pixel spacing: the image itself is taken.
    files = [
        dicom(picture(31), BodyPartExamined="K" * 40, PatientID="P" * 300_000),
        dicom(picture(32), BodyPartExamined="KN\x00EE", ViewPosition="A\x1bP"),
        dicom(picture(33), PixelSpacing=["5e-324", "5e-324"]),
    ]
    for data in files:
        response = upload(client, person_id, data)
        assert response.status_code == 201, response.text
        taken = response.json()
        assert taken["body_part"] is None and taken["pixel_spacing_mm"] is None
        assert {"body_part", "patient_id", "view_position", "pixel_spacing_mm"}.isdisjoint(
            taken["image_metadata"]
        )

    # File names are only shown: no folders, no control characters, at most 255 characters. They
    # are written into the multipart head as they are (a client library would escape some).
    names = {
        b"../../etc/passwd": "passwd",
        b"C:\\x\\y": "y",
        b"..\\..\\windows\\win.ini": "win.ini",
        b"knee\x00.png": "knee.png",
        b"kn\x01\x1bee\x7f.png": "knee.png",
        "r\u00f6ntgen.png".encode(): "r\u00f6ntgen.png",
        b"n" * 4000 + b".png": "n" * 255,
    }
    for number, (name, shown) in enumerate(names.items()):
        response = upload_named(client, person_id, png(picture(40 + number)), name)
        assert response.status_code == 201, response.text
        assert response.json()["filename"] == shown
    # A part head line past the multipart parser's 4 KiB is not read at all.
    too_long = upload_named(client, person_id, png(picture(60)), b"n" * 10_000)
    assert_refused(too_long, 400, "multipart")
    assert not list(tmp_path.rglob("passwd")) and not list(tmp_path.rglob("win.ini"))
    assert len(stored(server)["originals"]) == len(files) + len(names)
    answers.assert_nothing_revealed()
