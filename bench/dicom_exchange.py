"""DICOM exchange throughput: radiographs per second into the gallery by DICOM C-STORE (dcmtk's
storescu sending to `radmatch dicom-listen`) and by DICOMweb STOW-RS, against the HTTP upload of
the same kind of files, all measured in one run on one database.

A real `radmatch serve` and a real `radmatch dicom-listen` share the embedded defaults (SQLite) and
a seeded model; every path gets its own phantom DX files (512 x 512, 16-bit), made before the clock
starts, so nothing is "already stored". Each path sends from one client, then from `--clients`
clients at once (storescu processes, one association each; HTTP threads). Prints one JSON object.

    .venv/bin/python -m bench.dicom_exchange                     # 48 files per path and mode
    .venv/bin/python -m bench.dicom_exchange --input-size 256 --images 96
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.service_bench import API, new_database, radiograph_pixels, start_server
from tests.support.dicom_peers import storescu
from tests.support.images import phantom_dicom
from tests.support.servers import REPO, Server, free_port, seeded_checkpoint

CALLING_AE = "BENCHPACS"
ISSUER = "BENCH"
STOW_PARTS = 8  # objects per STOW-RS request


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-size", type=int, default=128)
    parser.add_argument("--images", type=int, default=48, help="per path and mode")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result: dict = {
        "bench": "dicom_exchange",
        "cpu_cores": os.cpu_count(),
        "input_size": args.input_size,
        "image": "512 x 512, 16-bit DX (phantom)",
        "images_per_path_and_mode": args.images,
    }
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        files = Files(scratch / "files", np.random.default_rng(0))
        checkpoint = seeded_checkpoint(scratch / "model.pt", args.input_size)
        database_url, key = new_database(scratch)
        server = start_server(scratch, database_url, key, checkpoint)
        listener = None
        try:
            listener = start_listener(server, scratch)
            register_sender(server)
            files.make(8, "warm-up")
            send_c_store(listener, files.batch("warm-up"), clients=1)
            for clients in (1, args.clients):
                mode = f"{clients}_client" + ("s" if clients > 1 else "")
                result[mode] = {
                    name: timed(send, files.make(args.images, f"{name}-{mode}"), clients)
                    for name, send in (
                        ("http_upload", lambda batch, n: send_http(server, batch, n)),
                        ("c_store", lambda batch, n: send_c_store(listener, batch, n)),
                        ("stow_rs", lambda batch, n: send_stow(server, batch, n)),
                    )
                }
                http = result[mode]["http_upload"]["images_per_s"]
                for name in ("c_store", "stow_rs"):
                    ratio = result[mode][name]["images_per_s"] / http
                    result[mode][name]["ratio_to_http_upload"] = round(ratio, 3)
        finally:
            if listener is not None:
                listener.stop()
            server.stop()
    print(json.dumps(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


class Files:
    """Phantom DX files on disk (storescu sends files), a new person for every file."""

    def __init__(self, folder: Path, rng: np.random.Generator):
        self.folder = folder
        self.rng = rng
        self.batches: dict[str, list[Path]] = {}

    def make(self, count: int, name: str) -> list[Path]:
        folder = self.folder / name
        folder.mkdir(parents=True)
        paths = []
        for number in range(count):
            key = f"{name}-{number}"
            path = folder / f"{number:05d}.dcm"
            path.write_bytes(phantom_dicom(radiograph_pixels(self.rng), key, person_id=key))
            paths.append(path)
        self.batches[name] = paths
        return paths

    def batch(self, name: str) -> list[Path]:
        return self.batches[name]


class Listener:
    """`radmatch dicom-listen` on the server's database and files."""

    def __init__(self, server: Server, log: Path):
        self.port = free_port()
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cli", "dicom-listen", "--port", str(self.port)],
                env=server.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
        self.log = log

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_listener(server: Server, scratch: Path) -> Listener:
    listener = Listener(server, scratch / "listener.log")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if listener.process.poll() is not None:
            raise SystemExit(f"dicom-listen exited:\n{listener.log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", listener.port), 1):
                return listener
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"dicom-listen did not start:\n{listener.log.read_text()}")


def register_sender(server: Server) -> None:
    with server.admin() as client:
        response = client.post(
            f"{API}/admin/dicom/sources", json={"ae_title": CALLING_AE, "issuer": ISSUER}
        )
    if response.status_code != 201:
        raise SystemExit(f"registering the sender failed: {response.text}")


def timed(send: Callable[[list[Path], int], None], batch: list[Path], clients: int) -> dict:
    began = time.perf_counter()
    send(batch, clients)
    seconds = time.perf_counter() - began
    return {
        "images": len(batch),
        "seconds": round(seconds, 2),
        "images_per_s": round(len(batch) / seconds, 2),
    }


def in_parallel(batch: list[Path], clients: int, send: Callable[[list[Path]], None]) -> None:
    failures: list[BaseException] = []

    def run(shard: list[Path]) -> None:
        try:
            send(shard)
        except BaseException as error:  # reported after all threads finish
            failures.append(error)

    threads = [threading.Thread(target=run, args=(batch[i::clients],)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(f"{len(failures)} senders failed, first: {failures[0]}")


def send_c_store(listener: Listener, batch: list[Path], clients: int) -> None:
    def send(shard: list[Path]) -> None:
        sent = storescu(listener.port, shard, calling_aet=CALLING_AE)
        if sent.returncode != 0:
            raise RuntimeError(f"storescu exited {sent.returncode}: {sent.stderr[-2000:]}")

    in_parallel(batch, clients, send)


def send_http(server: Server, batch: list[Path], clients: int) -> None:
    def send(shard: list[Path]) -> None:
        with server.admin() as client:
            for path in shard:
                ref = f"{ISSUER}-http:{path.stem}-{path.parent.name}"
                person = client.post(f"{API}/people", json={"external_ref": ref}).json()["id"]
                response = client.post(
                    f"{API}/people/{person}/images", files={"file": (path.name, path.read_bytes())}
                )
                if response.status_code != 201:
                    raise RuntimeError(f"upload: {response.status_code} {response.text[:200]}")

    in_parallel(batch, clients, send)


def send_stow(server: Server, batch: list[Path], clients: int) -> None:
    def send(shard: list[Path]) -> None:
        with server.admin() as client:
            for start in range(0, len(shard), STOW_PARTS):
                body, content_type = multipart(shard[start : start + STOW_PARTS])
                response = client.post(
                    "/dicomweb/studies",
                    content=body,
                    headers={"Content-Type": content_type, "Accept": "application/dicom+json"},
                )
                if response.status_code != 200:
                    raise RuntimeError(f"STOW-RS: {response.status_code} {response.text[:300]}")

    in_parallel(batch, clients, send)


def multipart(paths: list[Path]) -> tuple[bytes, str]:
    boundary = f"radmatch-bench-{time.monotonic_ns()}"
    parts = [
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + path.read_bytes()
        for path in paths
    ]
    body = b"\r\n".join(parts) + f"\r\n--{boundary}--\r\n".encode()
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


if __name__ == "__main__":
    main()
