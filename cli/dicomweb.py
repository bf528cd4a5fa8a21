"""`radmatch dicomweb-servers add|list|remove` and `radmatch pull`: the DICOMweb servers (a
hospital's PACS) to pull known people's radiographs from, and pulling one patient's, in this
process like `radmatch ingest` (the servers pick up what it commits)."""

from __future__ import annotations

import argparse
import os
import sys

from cli.common import Subcommands, database_sessions, load_settings, open_service

# Where `dicomweb-servers add` reads the password, token or header value from, so that the
# secret is in neither the shell's history nor the process list.
SECRET_VARIABLE = "RADMATCH_DICOMWEB_SECRET"


def add_commands(commands: Subcommands) -> None:
    servers = commands.add_parser(
        "dicomweb-servers", help="DICOMweb servers to pull radiographs from"
    ).add_subparsers(dest="dicomweb_servers_command", required=True)
    add = servers.add_parser(
        "add",
        help=f"register a server; a password, token or header value is read from ${SECRET_VARIABLE}"
        " or asked for",
    )
    add.add_argument("--name", required=True, help="what pulls call it: [A-Za-z0-9._-]{1,64}")
    add.add_argument("--url", required=True, help="its DICOMweb root, where /studies answers")
    add.add_argument("--issuer", required=True, help="whose PatientIDs it holds")
    add.add_argument("--auth", choices=["none", "basic", "bearer", "header"], default="none")
    add.add_argument("--username", help="for --auth basic")
    add.add_argument("--header", help="the header's name, for --auth header (e.g. X-API-Key)")
    add.set_defaults(run=_add)
    servers.add_parser("list", help="list servers (never their secrets)").set_defaults(run=_list)
    remove = servers.add_parser("remove", help="remove a server and its credentials")
    remove.add_argument("name")
    remove.set_defaults(run=_remove)

    pull = commands.add_parser(
        "pull", help="pull one patient's radiographs from a DICOMweb server (resumable)"
    )
    pull.add_argument("--server", required=True, help="a registered server's name")
    pull.add_argument("--patient-id", required=True, help="the PatientID there, matched exactly")
    pull.set_defaults(run=_pull)


def _add(args: argparse.Namespace) -> int:
    from app.audit.entries import command_line_actor
    from app.core.errors import ClientError
    from app.dicom.servers import public_auth, register_server

    auth = _auth(args)
    try:
        with database_sessions("dicomweb-servers add", load_settings()).begin() as session:
            server = register_server(
                session,
                name=args.name,
                base_url=args.url,
                auth=auth,
                issuer=args.issuer,
                key_id=None,
                by=command_line_actor("radmatch dicomweb-servers add"),
            )
            done = (
                f"registered {server.name} at {server.base_url} (PatientIDs of {server.issuer}, "
                f"auth {public_auth(server.auth)})"
            )
    except ClientError as error:
        raise SystemExit(f"radmatch dicomweb-servers add: {error.message}") from None
    print(done)
    return 0


def _auth(args: argparse.Namespace) -> dict[str, str]:
    needs = {"basic": ("username", args.username), "header": ("header", args.header)}
    if args.auth in needs and not needs[args.auth][1]:
        raise SystemExit(
            f"radmatch dicomweb-servers add: --auth {args.auth} needs --{needs[args.auth][0]}"
        )
    if args.auth == "none":
        return {"type": "none"}
    secret = _secret(args.auth)
    if args.auth == "basic":
        return {"type": "basic", "username": args.username, "password": secret}
    if args.auth == "bearer":
        return {"type": "bearer", "token": secret}
    return {"type": "header", "name": args.header, "value": secret}


def _secret(kind: str) -> str:
    secret = os.environ.get(SECRET_VARIABLE)
    if secret:
        return secret
    if not sys.stdin.isatty():
        raise SystemExit(
            f"radmatch dicomweb-servers add: --auth {kind} needs its secret in ${SECRET_VARIABLE}"
        )
    import getpass

    return getpass.getpass(f"{kind} secret: ")


def _list(args: argparse.Namespace) -> int:
    from app.dicom.servers import all_servers, public_auth

    with database_sessions("dicomweb-servers list", load_settings())() as session:
        for server in all_servers(session):
            auth = public_auth(server.auth)
            print(f"{server.name}\t{server.base_url}\t{server.issuer}\t{auth}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    from app.audit.entries import command_line_actor
    from app.core.errors import ClientError
    from app.dicom.servers import remove_server

    try:
        with database_sessions("dicomweb-servers remove", load_settings()).begin() as session:
            server = remove_server(
                session,
                name=args.name,
                key_id=None,
                by=command_line_actor("radmatch dicomweb-servers remove"),
            )
            done = f"removed {server.name} ({server.base_url})"
    except ClientError as error:
        raise SystemExit(f"radmatch dicomweb-servers remove: {error.message}") from None
    print(done)
    return 0


def _pull(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from app.audit.entries import command_line_actor
    from app.core.errors import ClientError
    from app.dicom.pull import pull_patient

    service = open_service("pull", load_settings(), with_index=False)
    bar = tqdm(desc=f"pull {args.patient_id}", unit="instance", disable=None)

    def progress(done: int, total: int | None, message: str) -> None:
        bar.total = total
        bar.n = done
        bar.set_postfix_str(message, refresh=True)

    try:
        report = pull_patient(
            records=service.records,
            matcher=service.matcher,
            metrics=service.metrics,
            server_name=args.server,
            patient_id=args.patient_id,
            key_id=None,
            by=command_line_actor("radmatch pull"),
            progress=progress,
        )
    except ClientError as error:
        raise SystemExit(f"radmatch pull: {error.message}") from None
    finally:
        bar.close()
        service.close()
    people = ", ".join(map(str, sorted(report.person_ids))) or "none"
    print(
        f"{report.server}, PatientID {report.patient_id}: {report.studies} studies, "
        f"{report.instances} instances; {report.stored} stored, {report.already_stored} already "
        f"stored, {len(report.refused)} refused; gallery person {people}"
    )
    for refusal in report.refused:
        print(f"refused {refusal.sop_instance_uid} (0x{refusal.status:04X}): {refusal.reason}")
    return 0
