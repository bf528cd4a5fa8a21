"""The `radmatch` command. Each command group's module adds its subcommands; heavy imports happen
inside the subcommands so that `radmatch --help` stays instant."""

from __future__ import annotations

import argparse

from app.core.allocator import limit_heap_growth
from cli import audit, cohorts, database, demo, dicom, dicomweb, gallery, keys, service
from model.threads import wait_passively

# In the order `radmatch --help` lists them.
COMMAND_GROUPS = (cohorts, service, database, keys, audit, gallery, dicom, dicomweb, demo)


def main(argv: list[str] | None = None) -> int:
    # Importing the commands loads neither torch nor faiss: their OpenMP runtime, which reads
    # this once when it loads, is still to come (model/threads.py).
    wait_passively()
    args = build_parser().parse_args(argv)
    limit_heap_growth()  # before the model and the first images are loaded
    return args.run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="radmatch", description=__doc__.split(".")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.add_commands(commands)
    return parser
