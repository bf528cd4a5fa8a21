"""`radmatch ingest` and `search`: loading known people into the case database, and searching a
running service for an unknown person."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cli.common import (
    Subcommands,
    add_backend_option,
    add_cohort_options,
    load_settings,
    open_service,
    read_cohort_records,
    with_backend,
)

if TYPE_CHECKING:
    from app.core.config import Settings
    from training.records import ImageRecord


def add_commands(commands: Subcommands) -> None:
    ingest = commands.add_parser(
        "ingest",
        help="bulk-load a cohort, a CD's DICOMDIR or a folder of DICOM files into the case "
        "database (resumable)",
    )
    source = add_cohort_options(ingest, split="its test split")
    source.add_argument(
        "--dicomdir",
        type=Path,
        metavar="PATH",
        help="a CD or DVD's DICOMDIR, or the folder with it",
    )
    source.add_argument(
        "--dicom-folder",
        type=Path,
        metavar="PATH",
        help="every DICOM file in a folder tree, whatever the names; other files are skipped",
    )
    ingest.add_argument(
        "--baseline-only",
        action="store_true",
        help="only each person's first visit (a gallery; with --manifest or --chestxray14)",
    )
    ingest.add_argument(
        "--issuer",
        help="whose PatientIDs DICOM objects without IssuerOfPatientID carry; people are "
        "<issuer>:<PatientID> (default RADMATCH_DICOM_ISSUER, LOCAL)",
    )
    add_backend_option(ingest)
    ingest.set_defaults(run=_ingest)

    search = commands.add_parser(
        "search", help="search a running service with a radiograph; prints the ranked people"
    )
    search.add_argument("file", type=Path, help="the unknown person's radiograph")
    search.add_argument("--k", type=int, default=10, help="how many people (default 10)")
    search.add_argument("--url", default="http://127.0.0.1:8000", help="the service")
    search.add_argument("--pixel-spacing-mm", type=float, help="when the file does not say")
    search.add_argument(
        "--query-date", help="YYYY-MM-DD the radiograph was taken, when the file does not say"
    )
    search.add_argument(
        "--prior", type=float, help="probability that the person is in the gallery (0.5)"
    )
    search.set_defaults(run=_search)


def ingest(settings: Settings, records: Sequence[ImageRecord], baseline_only: bool) -> None:
    """Add the records' people and images that the case database lacks; print how many."""
    from app.audit.entries import command_line_actor
    from app.core.errors import ClientError
    from app.gallery.bulk import ingest_images
    from training.protocol import split_gallery_queries

    if baseline_only:
        gallery, _ = split_gallery_queries(records)
        records = [records[i] for i in gallery]
    service = open_service("ingest", settings, with_index=False)
    try:
        summary = ingest_images(
            records=service.records,
            matcher=service.matcher,
            metrics=service.metrics,
            images=[bulk_image(record) for record in records],
            by=command_line_actor("radmatch ingest"),
        )
    except ClientError as error:
        raise SystemExit(f"radmatch ingest: {error.message}") from None
    finally:
        service.close()
    print(
        f"{summary.people_added} people and {summary.images_added} images added; "
        f"{summary.images_already_stored} images were already stored"
    )


def print_ranking(answer: dict) -> None:
    """A search's ranked people with their evidence, and the open-set answer, for a terminal."""
    print(
        f"search {answer['search_id']}: model version {answer['model_version']['id']}, "
        f"{answer['index_size']} images"
    )
    print(
        "rank  similarity  log10 LR  evidence                          person (external reference)"
    )
    for c in answer["candidates"]:
        print(
            f"{c['rank']:>4}  {c['similarity']:>10.4f}  {_evidence(c.get('evidence'))}  "
            f"{c['person_id']} ({c['external_ref']})"
        )
    open_set = answer.get("open_set")
    if open_set is not None:
        print(f"open set: {open_set['decision']}. {open_set['statement']}")
    else:
        print("no calibration for this model version: similarities only")


def _evidence(evidence: dict | None) -> str:
    if evidence is None:
        return f"{'-':>8}  {'no calibration':<32}"
    words = f"{evidence['verbal']}: {evidence['supports']}"
    if evidence["bounded"]:
        words += " (bounded)"
    return f"{evidence['log10_lr']:>8.2f}  {words:<32}"


def _ingest(args: argparse.Namespace) -> int:
    settings = with_backend(load_settings(), args.backend)
    if args.dicomdir is not None or args.dicom_folder is not None:
        if args.baseline_only:
            raise SystemExit("radmatch ingest: --baseline-only applies to a cohort, not to DICOM")
        from cli.media import ingest_media

        return ingest_media(
            settings, dicomdir=args.dicomdir, folder=args.dicom_folder, issuer=args.issuer
        )
    if args.issuer is not None:
        raise SystemExit("radmatch ingest: --issuer applies to --dicomdir and --dicom-folder")
    records, _ = read_cohort_records("ingest", args.manifest, args.chestxray14)
    ingest(settings, records, args.baseline_only)
    return 0


def _search(args: argparse.Namespace) -> int:
    import os

    import httpx

    key = os.environ.get("RADMATCH_API_KEY")
    if not key:
        raise SystemExit(
            "radmatch search: set RADMATCH_API_KEY to an API key (radmatch keys create)"
        )
    form = {"k": args.k}
    optional = {
        "pixel_spacing_mm": args.pixel_spacing_mm,
        "query_date": args.query_date,
        "prior": args.prior,
    }
    form |= {name: value for name, value in optional.items() if value is not None}
    try:
        with args.file.open("rb") as file:
            response = httpx.post(
                f"{args.url.rstrip('/')}/api/v1/search",
                headers={"X-API-Key": key},
                files={"file": (args.file.name, file)},
                data=form,
                timeout=120,
            )
    except (OSError, httpx.HTTPError) as error:
        raise SystemExit(f"radmatch search: {error}") from None
    if response.status_code != 200:
        detail = response.json().get("detail", response.text) if response.content else ""
        raise SystemExit(f"radmatch search: {response.status_code}: {detail}")
    print_ranking(response.json())
    return 0


def bulk_image(record: ImageRecord):
    """A cohort record as the case database takes it: the cohort's person id is the person's
    external reference, and the acquisition date is its DICOM twin's, where it has one (the
    years between images choose a search's calibration)."""
    from app.gallery.bulk import BulkImage
    from app.gallery.images import ImageFields
    from model.dicom import file_acquisition_date

    fields = ImageFields(
        body_part=record.body_part,
        side=record.side,
        acquisition_date=file_acquisition_date(record.dicom_path) if record.dicom_path else None,
        visit_months=record.visit_months,
        pixel_spacing_mm=record.pixel_spacing_mm,
        filename=record.path.name,
    )
    return BulkImage(person_ref=record.person_id, sex=record.sex, path=record.path, fields=fields)
