"""What an operator changes from the command line, which has no API key, is attributed in the audit
log to the operating-system user and host and the command they ran."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.audit.entries import command_line_actor
from app.storage.database import make_engine, upgrade
from app.storage.tables import AuditEntry
from tests.support.servers import REPO, service_env
from training.cohorts import read_knee_manifest
from training.phantom.cohort import CohortSpec, synthesize

CLI_TIMEOUT_S = 300  # a subprocess imports torch; the machine may be busy


def radmatch(env: dict[str, str], *args: str) -> str:
    """Run the `radmatch` command as a separate process, as an operator would; its stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def entries(database_url: str) -> list[sa.Row]:
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            return connection.execute(
                sa.select(AuditEntry.action, AuditEntry.key_id, AuditEntry.details).order_by(
                    AuditEntry.sequence
                )
            ).all()
    finally:
        engine.dispose()


def dicom_folder(tmp_path: Path) -> Path:
    """A folder holding one phantom person's radiographs as DICOM files."""
    cohort = synthesize(CohortSpec(out=tmp_path / "cohort", subjects=1, seed=8), progress=False)
    folder = tmp_path / "disc"
    folder.mkdir()
    for record in read_knee_manifest(cohort):
        shutil.copy(record.dicom_path, folder / record.dicom_path.name)
    return folder


def operator(command: str) -> dict[str, str]:
    return {"os_user": getpass.getuser(), "host": socket.gethostname(), "command": command}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_state_change_from_the_command_line_names_who_ran_it(
    database_url: str, tmp_path: Path, checkpoint: Path, phantom_manifest: Path
) -> None:
    upgrade(database_url)
    env = service_env(tmp_path / "data", database_url, checkpoint)

    created = radmatch(env, "keys", "create", "--role", "examiner", "--name", "E. Xaminer")
    key_id = created.split()[3]
    radmatch(env, "keys", "revoke", key_id)
    added = radmatch(env, "dicom-sources", "add", "--ae-title", "MORTUARY1", "--issuer", "MORT")
    radmatch(env, "dicom-sources", "revoke", added.split()[1])
    radmatch(env, "dicomweb-servers", "add", "--name", "pacs", "--url", "http://pacs.lab/dicom-web",
             "--issuer", "HOSP")  # fmt: skip
    radmatch(env, "dicomweb-servers", "remove", "pacs")
    # The first command that opens the service registers and activates RADMATCH_CHECKPOINT,
    # with the calibration it carries.
    radmatch(env, "ingest", "--manifest", str(phantom_manifest), "--baseline-only")
    radmatch(env, "ingest", "--dicom-folder", str(dicom_folder(tmp_path)), "--issuer", "MORT")

    written = entries(database_url)
    by_action = {row.action: row for row in written}
    expected = {
        "key.create": "radmatch keys create",
        "key.revoke": "radmatch keys revoke",
        "dicom.source.register": "radmatch dicom-sources add",
        "dicom.source.revoke": "radmatch dicom-sources revoke",
        "dicomweb.server.register": "radmatch dicomweb-servers add",
        "dicomweb.server.remove": "radmatch dicomweb-servers remove",
        "model.register": "radmatch ingest",
        "model.calibrate": "radmatch ingest",
        "model.activate": "radmatch ingest",
    }
    attributed = {
        action: (by_action[action].key_id, by_action[action].details.get("by"))
        for action in expected
    }
    assert attributed == {action: (None, operator(command)) for action, command in expected.items()}
    ingested = [row for row in written if row.action in ("person.create", "image.upload")]
    assert {row.details.get("via", "cohort") for row in ingested} == {"cohort", "dicom-folder"}
    assert [row for row in ingested if row.details.get("by") != operator("radmatch ingest")] == []
    # What the entries said before stays beside the attribution.
    assert by_action["key.create"].details["name"] == "E. Xaminer"
    assert by_action["dicom.source.register"].details["ae_title"] == "MORTUARY1"

    verified = subprocess.run(
        [sys.executable, "-m", "cli", "audit", "verify"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_user_without_a_name_is_named_by_uid(monkeypatch: pytest.MonkeyPatch) -> None:
    """A container may run as a uid with no passwd entry and no login variables."""

    def no_name() -> str:
        raise OSError("No username set in the environment")

    monkeypatch.setattr(getpass, "getuser", no_name)
    actor = command_line_actor("radmatch keys create")
    assert actor == {
        "os_user": f"uid {os.getuid()}",
        "host": socket.gethostname(),
        "command": "radmatch keys create",
    }
