"""`radmatch db upgrade` and `db downgrade`: the case database's schema."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from cli.common import Subcommands, load_settings

if TYPE_CHECKING:
    from app.core.config import Settings


def add_commands(commands: Subcommands) -> None:
    db = commands.add_parser("db", help="the case database's schema").add_subparsers(
        dest="db_command", required=True
    )
    upgrade = db.add_parser("upgrade", help="migrate to the newest schema (or --revision)")
    upgrade.add_argument("--revision", default="head")
    upgrade.set_defaults(run=_upgrade)
    downgrade = db.add_parser("downgrade", help="migrate back to --revision (base: empty)")
    downgrade.add_argument("--revision", required=True)
    downgrade.set_defaults(run=_downgrade)


def upgrade_schema(settings: Settings, revision: str = "head") -> None:
    from app.storage.database import upgrade

    upgrade(settings.sqlalchemy_url, revision)
    print(f"database at revision {revision}")


def _upgrade(args: argparse.Namespace) -> int:
    upgrade_schema(load_settings(), args.revision)
    return 0


def _downgrade(args: argparse.Namespace) -> int:
    from app.storage.database import downgrade

    downgrade(load_settings().sqlalchemy_url, args.revision)
    print(f"database at revision {args.revision}")
    return 0
