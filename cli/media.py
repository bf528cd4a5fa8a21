"""`radmatch ingest --dicomdir` and `--dicom-folder`: a CD's or a folder's radiographs into the
gallery, and what became of every file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cli.common import open_service

if TYPE_CHECKING:
    from app.core.config import Settings
    from app.dicom.media import MediaSummary

# IssuerOfPatientID is an LO: at most 64 characters.
ISSUER_CHARS = 64


def ingest_media(
    settings: Settings, *, dicomdir: Path | None, folder: Path | None, issuer: str | None
) -> int:
    """Exit status 0 once every file was read, whatever was refused; a run that cannot start,
    or that a transient refusal stops (no active model, a full disk), exits with the reason."""
    from app.audit.entries import command_line_actor
    from app.core.errors import ClientError
    from app.dicom.media import MediaError, dicomdir_media, folder_media
    from app.dicom.media import ingest_media as ingest

    issuer = settings.dicom_issuer if issuer is None else issuer.strip()
    if not issuer or len(issuer) > ISSUER_CHARS:
        raise SystemExit(f"radmatch ingest: --issuer takes 1 to {ISSUER_CHARS} characters")
    try:
        media = dicomdir_media(dicomdir) if dicomdir is not None else folder_media(folder)
    except MediaError as error:
        raise SystemExit(f"radmatch ingest: {error}") from None
    service = open_service("ingest", settings, with_index=False)
    try:
        summary = ingest(
            records=service.records,
            matcher=service.matcher,
            metrics=service.metrics,
            media=media,
            issuer=issuer,
            max_bytes=settings.max_upload_bytes,
            by=command_line_actor("radmatch ingest"),
        )
    except ClientError as error:
        raise SystemExit(f"radmatch ingest: {error.message}") from None
    finally:
        service.close()
    print_summary(summary, len(media.files))
    if summary.stopped is not None:
        raise SystemExit(
            f"radmatch ingest: stopped at {summary.stopped}\n"
            "Run the same command again once that is resolved: it resumes where it stopped."
        )
    return 0


def print_summary(summary: MediaSummary, files: int) -> None:
    print(
        f"{summary.people_added} people and {summary.images_added} images added; "
        f"{summary.already_stored} images were already stored; "
        f"{len(summary.refused)} files refused, {len(summary.skipped)} skipped"
    )
    for heading, entries in (("refused", summary.refused), ("skipped", summary.skipped)):
        if entries:
            print(f"{heading}:")
            for name, reason in entries:
                print(f"  {name}: {reason}")
    if summary.stopped is None:
        left_out = (
            " (the files listed above are left out)" if summary.refused or summary.skipped else ""
        )
        print(f"completed: all {files} files read{left_out}")
