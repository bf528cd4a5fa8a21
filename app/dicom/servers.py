"""The DICOMweb servers (a hospital's PACS) an admin has registered to pull a person's radiographs
from: where each is, how to authenticate there, and whose PatientIDs it holds. The credentials
stay in the database; listings and the audit log say only which kind of authentication is used.
Registering and removing are audited."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.audit.entries import record_entry
from app.core.errors import Conflict, NotFound, Unprocessable
from app.dicom.arrival import check_issuer
from app.storage.tables import DicomWebServer

NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
URL_MAX = 2000
CREDENTIAL_MAX = 4096
# The fields each kind of authentication takes, and which of them are secret.
AUTH_FIELDS = {
    "none": (),
    "basic": ("username", "password"),
    "bearer": ("token",),
    "header": ("name", "value"),
}
SECRET_FIELDS = frozenset({"password", "token", "value"})
# An HTTP header name (RFC 9110 token), which must not be one the HTTP client sets itself.
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}")
RESERVED_HEADERS = frozenset({"host", "content-length", "content-type", "transfer-encoding"})
PATIENT_ID_MAX = 64  # the LO VR
# QIDO-RS wildcards: a PatientID holding one would match other patients.
WILDCARDS = frozenset("*?")


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise Unprocessable(
            f"server name {name!r} must be 1 to 64 letters, digits, dots, hyphens or underscores"
        )
    return name


def check_base_url(url: str) -> str:
    """The DICOMweb root (where /studies is), without a trailing slash."""
    if len(url) > URL_MAX:
        raise Unprocessable(f"the base URL is {len(url)} characters; at most {URL_MAX}")
    try:
        parts = urlsplit(url)
        port = parts.port  # a ValueError for a port that is not a number up to 65535
    except ValueError as error:
        raise Unprocessable(f"base URL {url!r} is not a URL: {error}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
        raise Unprocessable(f"base URL {url!r} must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise Unprocessable(
            "the base URL may not hold credentials, which listings would show: give them as auth"
        )
    if parts.query or parts.fragment or any(ch.isspace() for ch in url):
        raise Unprocessable(f"base URL {url!r} may have no query, fragment or spaces")
    return url.rstrip("/")


def check_auth(auth: dict[str, Any]) -> dict[str, str]:
    """The authentication as stored: {"type": "none"}, {"type": "basic", "username",
    "password"}, {"type": "bearer", "token"} or {"type": "header", "name", "value"}."""
    kind = auth.get("type")
    if kind not in AUTH_FIELDS:
        raise Unprocessable(f"auth type must be one of {', '.join(AUTH_FIELDS)}, not {kind!r}")
    expected = {"type", *AUTH_FIELDS[kind]}
    if set(auth) != expected:
        raise Unprocessable(f"{kind} auth takes exactly the fields {', '.join(sorted(expected))}")
    for name in AUTH_FIELDS[kind]:
        value = auth[name]
        if not isinstance(value, str) or not 1 <= len(value) <= CREDENTIAL_MAX:
            raise Unprocessable(f"auth {name} must be text of 1 to {CREDENTIAL_MAX} characters")
        # Sent in an HTTP header: ASCII, and no line break, which would start another header.
        if not all(" " <= ch <= "~" for ch in value):
            raise Unprocessable(f"auth {name} may hold only printable ASCII characters")
    if kind == "basic" and ":" in auth["username"]:
        raise Unprocessable("a basic auth username may not contain ':' (RFC 7617)")
    if kind == "header" and (
        not HEADER_NAME.fullmatch(auth["name"]) or auth["name"].lower() in RESERVED_HEADERS
    ):
        raise Unprocessable(f"{auth['name']!r} is not a header name radmatch can send")
    return {name: auth[name] for name in sorted(expected)}


def public_auth(auth: dict[str, str]) -> dict[str, str]:
    """The authentication without its secrets: what listings and the audit log show."""
    return {name: value for name, value in auth.items() if name not in SECRET_FIELDS}


def register_server(
    session: Session,
    *,
    name: str,
    base_url: str,
    auth: dict[str, Any],
    issuer: str,
    key_id: int | None,
    by: dict[str, str] | None = None,
) -> DicomWebServer:
    check_issuer(issuer)
    server = DicomWebServer(
        name=check_name(name),
        base_url=check_base_url(base_url),
        auth=check_auth(auth),
        issuer=issuer,
        created_by_key_id=key_id,
    )
    session.add(server)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(
            f"a DICOMweb server named {name!r} is registered already; remove it first to change it"
        ) from None
    _audit(session, "dicomweb.server.register", server, key_id, by)
    return server


def server_named(session: Session, name: str) -> DicomWebServer:
    server = session.scalar(select(DicomWebServer).where(DicomWebServer.name == name))
    if server is None:
        raise NotFound(f"no DICOMweb server named {name!r} is registered")
    return server


def all_servers(session: Session) -> list[DicomWebServer]:
    return list(session.scalars(select(DicomWebServer).order_by(DicomWebServer.name)))


def remove_server(
    session: Session, *, name: str, key_id: int | None, by: dict[str, str] | None = None
) -> DicomWebServer:
    """Forget a server and its credentials; what was pulled from it stays."""
    server = server_named(session, name)
    _audit(session, "dicomweb.server.remove", server, key_id, by)
    session.delete(server)
    return server


def _audit(
    session: Session,
    action: str,
    server: DicomWebServer,
    key_id: int | None,
    by: dict[str, str] | None,
) -> None:
    record_entry(
        session,
        action=action,
        target_type="dicomweb_server",
        target_id=server.id,
        details={
            "name": server.name,
            "base_url": server.base_url,
            "issuer": server.issuer,
            "auth": public_auth(server.auth),
        },
        key_id=key_id,
        by=by,
    )


def check_patient_id(text: str) -> str:
    """A PatientID to pull, as DICOM compares it: without leading and trailing spaces."""
    patient_id = text.strip(" ")
    if not 1 <= len(patient_id) <= PATIENT_ID_MAX or not patient_id.isprintable():
        raise Unprocessable(f"a PatientID is 1 to {PATIENT_ID_MAX} printable characters")
    if "\\" in patient_id or WILDCARDS & set(patient_id):
        raise Unprocessable(
            f"PatientID {patient_id!r} holds a backslash or a wildcard (* ?), which a DICOMweb "
            "search would not match exactly"
        )
    return patient_id
