"""What the command groups share: settings, the service and its database, logging, and the
options that name a cohort."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.orm import sessionmaker

    from app.core.config import Settings
    from app.serving.service import Service
    from training.records import ImageRecord

# What add_subparsers returns, to which each command group adds its commands; argparse gives the
# type no public name.
Subcommands = argparse._SubParsersAction


def load_settings() -> Settings:
    """The service's settings, from the RADMATCH_* environment variables."""
    from app.core.config import Settings

    return Settings()


def add_backend_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        choices=["torch", "onnxruntime"],
        help="what runs the network (default RADMATCH_INFERENCE_BACKEND: onnxruntime on the "
        "CPU, torch on a GPU)",
    )


def with_backend(settings: Settings, backend: str | None) -> Settings:
    """The settings with --backend, when given, as the inference backend."""
    if backend is None:
        return settings
    return settings.model_copy(update={"inference_backend": backend})


def open_service(
    command: str, settings: Settings, with_index: bool, with_model: bool = True
) -> Service:
    import tempfile

    from app.audit.entries import command_line_actor
    from app.serving.matcher import StartupError
    from app.serving.service import Service
    from app.storage.database import SchemaOutOfDate

    # The process's temporary files (python-multipart's, pydicom's, our own) go to the data
    # directory: a process that serves the case database writes nowhere else.
    try:
        settings.scratch_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SystemExit(f"radmatch {command}: cannot use the data directory: {error}") from None
    tempfile.tempdir = str(settings.scratch_dir)
    try:
        return Service.open(
            settings,
            with_index=with_index,
            with_model=with_model,
            started_by=command_line_actor(f"radmatch {command}"),
        )
    except (SchemaOutOfDate, StartupError) as error:
        raise SystemExit(f"radmatch {command}: {error}") from None


def database_sessions(command: str, settings: Settings) -> sessionmaker:
    """Sessions on the case database, once its schema is known to be the newest."""
    from app.storage.database import SchemaOutOfDate, check_schema, make_engine, session_factory

    engine = make_engine(settings.sqlalchemy_url)
    try:
        check_schema(engine)
    except SchemaOutOfDate as error:
        raise SystemExit(f"radmatch {command}: {error}") from None
    return session_factory(engine)


def log_to_stderr() -> None:
    import logging

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def add_cohort_options(
    parser: argparse.ArgumentParser, split: str
) -> argparse._MutuallyExclusiveGroup:
    """--manifest or --chestxray14; `split` says which of a ChestX-ray14 release's people count.
    Returns the group, to which a command may add other sources, one of which is required."""
    cohort = parser.add_mutually_exclusive_group(required=True)
    cohort.add_argument("--manifest", type=Path, help="knee manifest (phantom or OAI-style)")
    cohort.add_argument(
        "--chestxray14", type=Path, metavar="ROOT", help=f"NIH ChestX-ray14 release: {split}"
    )
    return cohort


def read_cohort_records(
    command: str, manifest: Path | None, chestxray14: Path | None
) -> tuple[list[ImageRecord], str]:
    """The records of a knee manifest, or of a ChestX-ray14 release's test split, and the sha256
    of the file that lists them."""
    from training.cohorts import CohortFormatError, read_cohort

    try:
        records, sha256 = read_cohort(manifest or chestxray14)
    except (CohortFormatError, OSError) as error:
        raise SystemExit(f"radmatch {command}: {error}") from None
    if chestxray14 is not None:  # training leaves these people out: they are the ones to match
        records = [r for r in records if r.split == "test"]
    return records, sha256
