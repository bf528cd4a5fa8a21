"""`radmatch audit verify`: the audit log's hash chain and the stored originals, checked."""

from __future__ import annotations

import argparse
import json

from cli.common import Subcommands, database_sessions, load_settings


def add_commands(commands: Subcommands) -> None:
    audit = commands.add_parser("audit", help="evidence integrity").add_subparsers(
        dest="audit_command", required=True
    )
    verify = audit.add_parser(
        "verify",
        help="check the audit log's hash chain and every stored original; exit 1 on a problem",
    )
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.set_defaults(run=_verify)


def _verify(args: argparse.Namespace) -> int:
    from app.audit.chain import verify
    from app.storage.originals import OriginalStore

    settings = load_settings()
    sessions = database_sessions("audit verify", settings)
    result = verify(sessions, OriginalStore(settings.originals_dir))
    print(json.dumps(result.as_dict(), indent=2) if args.json else result.summary())
    return 0 if result.ok else 1
