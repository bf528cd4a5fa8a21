"""Service configuration from environment variables prefixed RADMATCH_, with defaults that let
`radmatch serve` run with none set: a SQLite file and the originals under ./data."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.serving.index_options import IndexOptions


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RADMATCH_", env_ignore_empty=True)

    data_dir: Path = Path("data")
    # Empty means a SQLite file in data_dir; production sets a PostgreSQL URL.
    database_url: str = ""
    # A checkpoint from `radmatch train` to serve; empty means the database's active model version.
    checkpoint: Path | None = None
    device: str = ""  # empty: the GPU when there is one
    # auto: bfloat16 autocast on a GPU, float32 on the CPU. int8 (CPU, ONNX Runtime) serves only a
    # model whose int8 file `radmatch quantize` made and measured within its accuracy bound.
    precision: Literal["auto", "fp32", "bf16", "int8"] = "auto"
    # What runs the network's forward pass (model/backends.py); auto: onnxruntime on the CPU
    # (faster than PyTorch eager, the same embeddings), torch on a GPU. The ONNX file
    # is exported beside the checkpoint, or under <data_dir>/models/onnx where that is read-only.
    inference_backend: Literal["auto", "torch", "onnxruntime"] = "auto"
    # Threads of torch, ONNX Runtime and FAISS alike (model/threads.py); empty: the CPUs this
    # process may run on.
    threads: int | None = Field(default=None, gt=0)
    # Concurrent uploads and searches are embedded together: a batch waits at most this long
    # for company after its first image arrives, and holds at most this many images.
    embed_wait_ms: float = Field(default=2.0, ge=0)
    embed_batch_max: int = Field(default=32, gt=0)
    # Searches are exact below approximate_index_from gallery images; from there on an index
    # build makes the approximate kind, searched with the effort set here (see app/serving/index.py).
    approximate_index_from: int = Field(default=250_000, ge=0)
    approximate_index: Literal["hnsw", "ivf"] = "hnsw"
    hnsw_m: int = Field(default=32, ge=4)
    hnsw_ef_construction: int = Field(default=200, gt=0)
    hnsw_ef_search: int = Field(default=256, gt=0)
    ivf_lists: int = Field(default=0, ge=0)
    ivf_nprobe: int = Field(default=64, gt=0)
    max_upload_bytes: int = Field(default=256 * 1024 * 1024, gt=0)
    max_pixels: int = Field(default=60_000_000, gt=0)
    # The most memory one image's decode may take, estimated from its header before any pixel
    # is decoded (model.memory; the default's reasons are in model.image.DecodeLimits): 512 MB
    # passes every detector's radiograph, a 7740x7740 RGB PNG (1.9 GB) is refused with 413.
    max_decode_bytes: int = Field(default=512 * 1024 * 1024, gt=0)
    # The most memory all of a server process's decodes at once may take (estimates summed,
    # app/serving/decode_budget.py): four images at the per-image limit, or some 40 ordinary
    # 2048x2048 16-bit radiographs (about 50 MB each), as many as the request threads. A decode
    # that does not fit waits up to decode_wait_seconds for others to finish, then gets 429.
    decode_budget_bytes: int = Field(default=4 * 512 * 1024 * 1024, gt=0)
    decode_wait_seconds: float = Field(default=5.0, ge=0)
    max_search_k: int = Field(default=100, gt=0)
    # After this many wrong API keys from one client address within the window, the address gets
    # 429 until the window frees up (app.access.throttle: each server process counts its own).
    key_failures_allowed: int = Field(default=10, gt=0)
    key_failure_window_seconds: float = Field(default=60.0, gt=0)
    # POST /admin/models registers checkpoint files from this directory only (empty:
    # <data_dir>/models), of at most max_checkpoint_bytes; `radmatch serve`'s own checkpoint
    # setting above may name any file.
    models_dir: Path | None = None
    max_checkpoint_bytes: int = Field(default=512 * 1024 * 1024, gt=0)
    # How often a server looks for images that other processes committed.
    index_sync_seconds: float = Field(default=1.0, gt=0)
    # Jobs: a running job's worker writes a heartbeat this often; a job whose heartbeat is older
    # than job_stale_seconds is presumed orphaned and re-queued (or failed) by another worker.
    job_heartbeat_seconds: float = Field(default=5.0, gt=0)
    job_stale_seconds: float = Field(default=60.0, gt=0)
    worker_poll_seconds: float = Field(default=1.0, gt=0)
    # The DICOM C-STORE receiver (`radmatch dicom-listen`): its port and AE title, the most
    # associations it serves at once and the largest PDU it takes. TLS when a certificate and key
    # are given; with a CA as well, a sender must present a certificate that chains to it.
    dicom_port: int = Field(default=11112, gt=0, lt=65536)
    dicom_ae_title: str = "RADMATCH"
    dicom_max_associations: int = Field(default=10, gt=0)
    dicom_max_pdu_bytes: int = Field(default=65536, ge=0)  # 0: as large as the sender likes
    dicom_tls_cert: Path | None = None
    dicom_tls_key: Path | None = None
    dicom_tls_ca: Path | None = None
    # Whose PatientIDs received DICOM objects carry when they name no IssuerOfPatientID: gallery
    # people are "<issuer>:<PatientID>", so two hospitals' patient 123 stay two people.
    dicom_issuer: str = Field(default="LOCAL", min_length=1, max_length=64)
    # Which of the endpoints outside /api/v1 answer without a key (/healthz always does): the
    # orchestrator's readiness probe by default; the metrics and the API document show the
    # service's workings, and need one unless named here, e.g. '["readyz", "metrics"]'.
    open_endpoints: set[Literal["readyz", "metrics", "openapi"]] = {"readyz"}
    # The audit chain's head is signed (Ed25519) and appended to a file outside the database, so
    # that rewriting the log with direct database access shows (app/audit/checkpoints.py).
    # The signing key: empty means <data_dir>/audit/signing_key.pem, made on first use (mode
    # 0600); a path given here must exist. Keep it where the database's owner cannot read it.
    audit_signing_key: Path | None = None
    # The append-only file of signed checkpoints: empty means <data_dir>/audit/checkpoints.jsonl.
    # Put it on WORM storage or a separately owned mount (append-only for the service's user),
    # so that whoever can write the database cannot also rewrite the checkpoints.
    audit_checkpoints: Path | None = None
    # A running server signs the head this often when it moved (and at start and shutdown).
    audit_checkpoint_interval_s: float = Field(default=300.0, gt=0)

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'radmatch.db').resolve()}"

    @property
    def index_options(self) -> IndexOptions:
        return IndexOptions(
            approximate_from=self.approximate_index_from,
            approximate_kind=self.approximate_index,
            hnsw_m=self.hnsw_m,
            hnsw_ef_construction=self.hnsw_ef_construction,
            hnsw_ef_search=self.hnsw_ef_search,
            ivf_lists=self.ivf_lists,
            ivf_nprobe=self.ivf_nprobe,
        )

    @property
    def originals_dir(self) -> Path:
        return self.data_dir / "originals"

    @property
    def registrable_models_dir(self) -> Path:
        return self.models_dir or self.data_dir / "models"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"

    @property
    def scratch_dir(self) -> Path:
        """Where a radmatch process keeps its temporary files (uploads and STOW-RS bodies while
        they arrive, an export while it is zipped): radiographs are never written outside the
        data directory, and a full or read-only /tmp cannot fail a request."""
        return self.data_dir / "scratch"
