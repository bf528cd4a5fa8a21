"""A serving process writes its temporary files (a multipart upload spooled to disk, a STOW-RS body
over its in-memory limit) under its data directory, never to the system's: here the system's is a
tmpfs too small for either, and both requests still succeed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.app.test_faults import small_tmpfs
from tests.support.images import phantom_dicom, png_bytes
from tests.support.servers import Server, prepare_database, service_env

API = "/api/v1"
SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@SQLITE
def test_large_uploads_need_no_room_outside_the_data_directory(
    database_url: str, checkpoint: Path, tmp_path: Path
) -> None:
    rng = np.random.default_rng(5)
    # Noise does not compress: over python-multipart's 1 MB in memory, and STOW-RS's 8 MiB.
    png = png_bytes(rng.integers(0, 256, (1400, 1400), dtype=np.uint8))
    dicom = phantom_dicom(rng.integers(0, 65536, (2200, 2200), dtype=np.uint16), "scratch-big")
    assert len(png) > 1 << 20 and len(dicom) > 8 << 20
    with small_tmpfs(tmp_path / "system-tmp", "256k") as system_tmp:
        admin, _ = prepare_database(database_url)
        env = service_env(tmp_path / "data", database_url, checkpoint) | {"TMPDIR": str(system_tmp)}
        server = Server(env=env, log=tmp_path / "server.log", admin_key=admin).start()
        try:
            with server.admin() as client:
                person = client.post(f"{API}/people", json={"external_ref": "scratch"}).json()
                uploaded = client.post(
                    f"{API}/people/{person['id']}/images", files={"file": ("big.png", png)}
                )
                assert uploaded.status_code == 201, uploaded.text
                boundary = "scratch-boundary"
                body = (
                    f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
                    + dicom
                    + f"\r\n--{boundary}--\r\n".encode()
                )
                stowed = client.post(
                    "/dicomweb/studies",
                    content=body,
                    headers={
                        "Content-Type": "multipart/related; "
                        f'type="application/dicom"; boundary={boundary}'
                    },
                )
                assert stowed.status_code == 200, stowed.text
        finally:
            server.stop()
        assert not any(system_tmp.iterdir()), list(system_tmp.iterdir())
