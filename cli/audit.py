"""`radmatch audit verify`: the audit log's hash chain, its signed checkpoints and the stored
originals, checked; `audit checkpoint` signs the chain's head now; `audit public-key` prints the
key that verifies the checkpoints."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cli.common import Subcommands, database_sessions, load_settings


def add_commands(commands: Subcommands) -> None:
    audit = commands.add_parser("audit", help="evidence integrity").add_subparsers(
        dest="audit_command", required=True
    )
    verify = audit.add_parser(
        "verify",
        help="check the audit log's hash chain against its signed checkpoints, and every stored "
        "original; exit 1 on a problem",
    )
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.add_argument(
        "--checkpoints",
        type=Path,
        metavar="PATH",
        help="the checkpoint file to check against (default: RADMATCH_AUDIT_CHECKPOINTS), e.g. "
        "an off-site copy",
    )
    verify.add_argument(
        "--public-key",
        type=Path,
        metavar="PEM",
        help="the public key the checkpoints must verify under (default: the signing key's, "
        "RADMATCH_AUDIT_SIGNING_KEY), e.g. one printed by `radmatch audit public-key` earlier",
    )
    verify.set_defaults(run=_verify)

    checkpoint = audit.add_parser(
        "checkpoint", help="sign the audit chain's head now and append it to the checkpoint file"
    )
    checkpoint.add_argument("--json", action="store_true", help="print the checkpoint as JSON")
    checkpoint.set_defaults(run=_checkpoint)

    public_key = audit.add_parser(
        "public-key", help="print the public key that verifies the checkpoints, and its fingerprint"
    )
    public_key.set_defaults(run=_public_key)


def _verify(args: argparse.Namespace) -> int:
    from app.audit.chain import verify
    from app.audit.checkpoint_check import checkpoint_check
    from app.audit.checkpoints import checkpoints_path, read_checkpoint_file
    from app.audit.signing import SigningKeyError, existing_public_key, read_public_key
    from app.storage.originals import OriginalStore

    settings = load_settings()
    sessions = database_sessions("audit verify", settings)
    try:
        key = read_public_key(args.public_key) if args.public_key else existing_public_key(settings)
    except SigningKeyError as error:
        raise SystemExit(f"radmatch audit verify: {error}") from None
    path = args.checkpoints or checkpoints_path(settings)
    if args.checkpoints is not None and not path.is_file():
        raise SystemExit(f"radmatch audit verify: no checkpoint file at {path}")
    try:  # before the database snapshot: see app/audit/checkpoint_check.py
        checkpoints = read_checkpoint_file(path)
    except OSError as error:
        raise SystemExit(f"radmatch audit verify: cannot read {path}: {error}") from None
    store = OriginalStore(settings.originals_dir)
    result = verify(sessions, store, also=[checkpoint_check(checkpoints, key)])
    print(json.dumps(result.as_dict(), indent=2) if args.json else result.summary())
    return 0 if result.ok else 1


def _checkpoint(args: argparse.Namespace) -> int:
    from app.audit.chain import AuditChainError
    from app.audit.checkpointing import Checkpointer
    from app.audit.signing import SigningKeyError

    settings = load_settings()
    sessions = database_sessions("audit checkpoint", settings)
    try:
        checkpointer = Checkpointer.open(settings, sessions)
        checkpoint = checkpointer.sign_current()
    except (SigningKeyError, AuditChainError, OSError) as error:
        raise SystemExit(f"radmatch audit checkpoint: {error}") from None
    if args.json:
        print(json.dumps(checkpoint.as_dict(), indent=2))
    else:
        print(
            f"signed: sequence {checkpoint.sequence}, head {checkpoint.head_hash}, at "
            f"{checkpoint.signed_at}, key {checkpoint.key_fingerprint}\n"
            f"appended to {checkpointer.path}"
        )
    return 0


def _public_key(_: argparse.Namespace) -> int:
    from app.audit.signing import SigningKeyError, load_signer, public_pem

    try:
        signer = load_signer(load_settings())
    except (SigningKeyError, OSError) as error:
        raise SystemExit(f"radmatch audit public-key: {error}") from None
    print(public_pem(signer.public_key), end="")
    print(f"fingerprint (sha256 of the raw key): {signer.fingerprint}")
    return 0
