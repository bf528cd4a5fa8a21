"""A trained embedder as one file: weights, architecture, preprocessing and where it came from.

The file is a torch.save'd dict of plain values and tensors (loadable with weights_only=True: no
pickled code runs on load). Its sha256 is written beside it, in sha256sum's format, as
`<name>.sha256`; loading verifies it when present, so a truncated or altered checkpoint is refused
instead of silently producing other embeddings.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from model.files import write_atomically
from model.network import Architecture, Embedder
from model.preprocess import Preprocessing

FORMAT = "radmatch-embedder/1"


class CheckpointError(ValueError):
    """The file is not a radmatch checkpoint, or not the one its sha256 says."""


@dataclass(frozen=True)
class Checkpoint:
    embedder: Embedder  # in eval mode, on the requested device
    preprocessing: Preprocessing
    info: dict[str, Any]  # training config, manifest hash, metrics, code version, created
    sha256: str


def save_checkpoint(
    path: Path, embedder: Embedder, preprocessing: Preprocessing, **info: Any
) -> str:
    """Write the checkpoint and its .sha256 atomically (temporary name, fsync, rename); return the
    sha256. `info` holds JSON-like values: training config, manifest hash, metrics."""
    payload = {
        "format": FORMAT,
        "architecture": {"name": "resnet18", **asdict(embedder.architecture)},
        "preprocessing": asdict(preprocessing),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in embedder.state_dict().items()},
        "info": {"code_version": code_version(), "created": _now(), **info},
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    write_atomically(path, data)
    write_atomically(sha256_path(path), f"{digest}  {path.name}\n".encode())
    return digest


def load_checkpoint(path: Path | str, device: str | torch.device = "cpu") -> Checkpoint:
    path = Path(path)
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    recorded = sha256_path(path)
    if recorded.exists():
        fields = recorded.read_text().split()
        expected = fields[0] if fields else ""
        if expected != digest:
            raise CheckpointError(
                f"{path}: sha256 {digest} does not match {expected or 'nothing'} recorded in "
                f"{recorded.name}; the file is damaged or was replaced"
            )
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a file that is not its own
        raise CheckpointError(f"{path}: not a torch checkpoint ({error})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a radmatch embedder checkpoint (format {FORMAT})")
    # Options newer than a checkpoint keep the values it was trained with: their defaults.
    options = {k: v for k, v in payload["architecture"].items() if k != "name"}
    embedder = Embedder(Architecture(**options))
    embedder.load_state_dict(payload["state_dict"])
    return Checkpoint(
        embedder=embedder.to(device).eval(),
        preprocessing=Preprocessing(**payload["preprocessing"]),
        info=payload["info"],
        sha256=digest,
    )


def sha256_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def code_version() -> str:
    """The installed radmatch version, with the git commit when run from a checkout."""
    version = metadata.version("radmatch")
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version}+g{commit}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
