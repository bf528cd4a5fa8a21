"""Service configuration from environment variables prefixed RADMATCH_, with defaults that let
`radmatch serve` run with none set: a SQLite file and the originals under ./data."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RADMATCH_", env_ignore_empty=True)

    data_dir: Path = Path("data")
    # Empty means a SQLite file in data_dir; production sets a PostgreSQL URL.
    database_url: str = ""
    # A checkpoint from `radmatch train` to serve; empty means the database's active model version.
    checkpoint: Path | None = None
    device: str = ""  # empty: the GPU when there is one
    max_upload_bytes: int = Field(default=256 * 1024 * 1024, gt=0)
    max_pixels: int = Field(default=60_000_000, gt=0)
    max_search_k: int = Field(default=100, gt=0)
    # How often a server looks for images that other processes committed.
    index_sync_seconds: float = Field(default=1.0, gt=0)
    # Jobs: a running job's worker writes a heartbeat this often; a job whose heartbeat is older
    # than job_stale_seconds is presumed orphaned and re-queued (or failed) by another worker.
    job_heartbeat_seconds: float = Field(default=5.0, gt=0)
    job_stale_seconds: float = Field(default=60.0, gt=0)
    worker_poll_seconds: float = Field(default=1.0, gt=0)

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'radmatch.db').resolve()}"

    @property
    def originals_dir(self) -> Path:
        return self.data_dir / "originals"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"
