"""`radmatch keys create`, `list` and `revoke`: the API keys of examiners and admins."""

from __future__ import annotations

import argparse

from cli.common import Subcommands, database_sessions, load_settings


def add_commands(commands: Subcommands) -> None:
    keys = commands.add_parser("keys", help="API keys").add_subparsers(
        dest="keys_command", required=True
    )
    create = keys.add_parser("create", help="create a key; it is printed once, as the last line")
    create.add_argument("--role", choices=["examiner", "admin"], required=True)
    create.add_argument("--name", required=True, help="whose key it is")
    create.set_defaults(run=_create)
    keys.add_parser("list", help="list keys (never the keys themselves)").set_defaults(run=_list)
    revoke = keys.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("id", type=int)
    revoke.set_defaults(run=_revoke)


def _create(args: argparse.Namespace) -> int:
    from app.access.keys import create_key
    from app.audit.entries import command_line_actor

    with database_sessions("keys create", load_settings()).begin() as session:
        row, key = create_key(
            session, args.name, args.role, by=command_line_actor("radmatch keys create")
        )
    print(f"created {row.role} key {row.id} for {row.name!r}; it is shown only now:")
    print(key)
    return 0


def _list(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from app.storage.tables import ApiKey

    with database_sessions("keys list", load_settings())() as session:
        for row in session.scalars(select(ApiKey).order_by(ApiKey.id)):
            state = f"revoked {row.revoked_at:%Y-%m-%d}" if row.revoked_at else "active"
            print(f"{row.id}\t{row.role}\t{row.name}\t{state}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    from app.access.keys import revoke_key
    from app.audit.entries import command_line_actor

    with database_sessions("keys revoke", load_settings()).begin() as session:
        try:
            row = revoke_key(session, args.id, by=command_line_actor("radmatch keys revoke"))
        except LookupError as error:
            raise SystemExit(f"radmatch keys revoke: {error}") from None
    print(f"revoked key {row.id} ({row.name!r})")
    return 0
