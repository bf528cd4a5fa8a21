"""Checks of the Dockerfile and docker-compose.yml that need no Docker engine, which our machines
and CI lack: hadolint, the structure that deployment relies on, and that every command they run is
one the radmatch CLI accepts (the commands themselves are tested outside a container)."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"


def assert_radmatch_accepts(args: list[str], where: str) -> None:
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            build_parser().parse_args(args)
    except SystemExit:  # argparse's answer to an unknown subcommand or option
        error = stderr.getvalue().strip().splitlines()[-1]
    else:
        return
    pytest.fail(f"{where}: radmatch does not accept {args}: {error}")


def hadolint() -> str:
    beside_python = Path(sys.executable).parent / "hadolint"
    found = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is not installed: it is a test dependency (pip install '.[test]')")
    return found


def test_dockerfile_passes_hadolint():
    result = subprocess.run(
        [hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"hadolint:\n{result.stdout}{result.stderr}"


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (INSTRUCTION, arguments), continuation lines joined."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def final_stage() -> list[tuple[str, str]]:
    """The last stage's instructions."""
    every = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(every) if keyword == "FROM")
    return every[last_from:]


def test_dockerfile_runs_radmatch_as_non_root_with_a_health_check():
    stage = final_stage()
    arguments = {keyword: rest for keyword, rest in stage}  # the last of each counts

    assert "USER" in arguments, "the image would run as root"
    assert arguments["USER"].split(":")[0] not in ("root", "0")

    _, _, health = arguments["HEALTHCHECK"].partition("CMD ")
    health = json.loads(health)
    assert health[:2] == ["radmatch", "health"]
    assert_radmatch_accepts(health[1:], "the Dockerfile's HEALTHCHECK")

    assert json.loads(arguments["ENTRYPOINT"]) == ["radmatch"]
    assert_radmatch_accepts(json.loads(arguments["CMD"]), "the Dockerfile's CMD")


def test_compose_structure():
    compose = yaml.safe_load(COMPOSE.read_text())
    services, volumes = compose["services"], compose["volumes"]
    assert {"postgres", "migrate", "api", "worker", "dicom"} <= services.keys()

    postgres = services["postgres"]
    assert "healthcheck" in postgres
    assert any(mount.split(":")[0] in volumes for mount in postgres["volumes"])

    for name in ("migrate", "api", "worker", "dicom"):
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy", name
    for name in ("api", "worker", "dicom"):
        migrate = services[name]["depends_on"]["migrate"]
        assert migrate["condition"] == "service_completed_successfully", name
    assert "test" in services["api"]["healthcheck"]

    data_mounts = set()
    for name in ("migrate", "api", "worker", "dicom"):
        data_dir = services[name]["environment"]["RADMATCH_DATA_DIR"]
        mounted_there = [
            m.split(":")[0] for m in services[name]["volumes"] if m.split(":")[1] == data_dir
        ]
        assert mounted_there, f"{name}: nothing is mounted at RADMATCH_DATA_DIR ({data_dir})"
        data_mounts.update(mounted_there)
    assert len(data_mounts) == 1, (
        f"the services keep their data in different volumes: {data_mounts}"
    )
    assert data_mounts <= volumes.keys(), "the data volume is not declared at the top level"

    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in device["capabilities"] for device in devices)

    radmatch_services = {name: s for name, s in services.items() if "build" in s}
    assert {"migrate", "api", "worker", "dicom"} <= radmatch_services.keys()
    for name, service in radmatch_services.items():
        assert_radmatch_accepts(service["command"], f"service {name}'s command")
        health = service.get("healthcheck", {}).get("test", [])
        if health[1:2] == ["radmatch"]:  # ["CMD", "radmatch", ...]
            assert_radmatch_accepts(health[2:], f"service {name}'s healthcheck")


def test_compose_dicom_receiver_listens_where_it_is_published_and_checked():
    dicom = yaml.safe_load(COMPOSE.read_text())["services"]["dicom"]
    command = build_parser().parse_args(dicom["command"])
    assert command.command == "dicom-listen"
    assert command.host == "0.0.0.0", "the receiver would be unreachable from outside its container"
    assert f"{command.port}:{command.port}" in dicom["ports"]
    health = dicom["healthcheck"]["test"]
    assert health[:3] == ["CMD", "python", "-c"]
    assert f'("127.0.0.1", {command.port})' in health[3]


def test_dockerfile_copies_every_package_it_installs():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [
        pattern.rstrip("*")
        for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    ]
    copied = {rest.split()[0] for keyword, rest in instructions() if keyword == "COPY"}
    missing = [package for package in packages if package not in copied]
    assert not missing, f"the image would lack these packages: {missing}"
