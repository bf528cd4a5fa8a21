"""`radmatch dicom-listen` and `dicom-sources`: the DICOM C-STORE receiver, and the application
entities allowed to send to it."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.common import Subcommands, database_sessions, load_settings, log_to_stderr, open_service

# How long a stopping receiver lets open associations finish the objects they are sending.
STOP_GRACE_S = 20.0


def add_commands(commands: Subcommands) -> None:
    listen = commands.add_parser(
        "dicom-listen",
        help="receive radiographs by DICOM C-STORE from registered AE titles (foreground)",
    )
    listen.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    listen.add_argument("--port", type=int, help="default RADMATCH_DICOM_PORT (11112)")
    listen.add_argument("--ae-title", help="this receiver's AE title (RADMATCH_DICOM_AE_TITLE)")
    listen.add_argument("--tls-cert", type=Path, help="PEM certificate: listen with TLS")
    listen.add_argument("--tls-key", type=Path, help="the certificate's PEM private key")
    listen.add_argument(
        "--tls-ca", type=Path, help="PEM CA certificates that senders' certificates must chain to"
    )
    listen.set_defaults(run=_listen)

    sources = commands.add_parser(
        "dicom-sources", help="the AE titles allowed to send by C-STORE, and where their images go"
    ).add_subparsers(dest="dicom_sources_command", required=True)
    add = sources.add_parser("add", help="allow a calling AE title to send")
    add.add_argument("--ae-title", required=True)
    where = add.add_mutually_exclusive_group(required=True)
    where.add_argument("--case-number", help="into this case's inbox (the lab's case number)")
    where.add_argument("--case-id", type=int, help="into this case's inbox")
    where.add_argument("--issuer", help="into the gallery: people are <issuer>:<PatientID>")
    add.add_argument("--description", default="", help="whose system it is")
    add.set_defaults(run=_add_source)
    sources.add_parser("list", help="the live registrations").set_defaults(run=_list_sources)
    revoke = sources.add_parser("revoke", help="refuse an AE title from its next association")
    revoke.add_argument("id", type=int)
    revoke.set_defaults(run=_revoke_source)


def _listen(args: argparse.Namespace) -> int:
    import logging
    import signal
    import threading

    from app.dicom.receiver import Receiver, ReceiverSetupError, listening

    log_to_stderr()
    # pynetdicom narrates every association at INFO; the receiver logs what matters itself.
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    settings = load_settings()
    try:
        where = listening(
            settings,
            host=args.host,
            port=args.port,
            ae_title=args.ae_title,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            tls_ca=args.tls_ca,
        )
    except ReceiverSetupError as error:
        raise SystemExit(f"radmatch dicom-listen: {error}") from None
    stop = threading.Event()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signal_number, lambda *_: stop.set())
    service = open_service("dicom-listen", settings, with_index=False)
    receiver = Receiver(
        records=service.records, matcher=service.matcher, metrics=service.metrics, where=where
    )
    try:
        receiver.start()
    except OSError as error:
        service.close()
        raise SystemExit(f"radmatch dicom-listen: cannot listen on {args.host}: {error}") from None
    try:
        while not stop.wait(1.0):
            pass
    finally:
        receiver.stop(grace_s=STOP_GRACE_S)
        service.close()
    return 0


def _add_source(args: argparse.Namespace) -> int:
    from app.audit.entries import command_line_actor
    from app.core.errors import ClientError
    from app.dicom.arrival import Destination
    from app.dicom.sources import register_source

    with database_sessions("dicom-sources add", load_settings()).begin() as session:
        try:
            case_id = args.case_id
            if args.case_number is not None:
                case_id = _case_numbered(session, args.case_number)
            source = register_source(
                session,
                ae_title=args.ae_title,
                destination=Destination(case_id=case_id, issuer=args.issuer),
                description=args.description,
                key_id=None,
                by=command_line_actor("radmatch dicom-sources add"),
            )
        except ClientError as error:
            raise SystemExit(f"radmatch dicom-sources add: {error.message}") from None
    print(f"registered {source.id}\t{_row(source)}")
    return 0


def _case_numbered(session, number: str) -> int:
    from sqlalchemy import select

    from app.core.errors import NotFound
    from app.storage.tables import Case

    case_id = session.scalar(select(Case.id).where(Case.number == number))
    if case_id is None:
        raise NotFound(f"no case numbered {number!r}")
    return case_id


def _list_sources(args: argparse.Namespace) -> int:
    from app.dicom.sources import live_sources

    with database_sessions("dicom-sources list", load_settings())() as session:
        for source in live_sources(session):
            print(f"{source.id}\t{_row(source)}")
    return 0


def _revoke_source(args: argparse.Namespace) -> int:
    from app.audit.entries import command_line_actor
    from app.core.errors import ClientError
    from app.dicom.sources import revoke_source

    with database_sessions("dicom-sources revoke", load_settings()).begin() as session:
        try:
            source = revoke_source(
                session,
                source_id=args.id,
                key_id=None,
                by=command_line_actor("radmatch dicom-sources revoke"),
            )
        except ClientError as error:
            raise SystemExit(f"radmatch dicom-sources revoke: {error.message}") from None
    print(f"revoked {source.id} ({source.ae_title})")
    return 0


def _row(source) -> str:
    """A registration on one line: AE title, destination, description."""
    from app.dicom.sources import destination_of

    return f"{source.ae_title}\t{destination_of(source).describe()}\t{source.description}"
