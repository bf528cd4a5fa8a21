"""The DICOM application entities an admin has allowed to send radiographs by C-STORE, each with
where its images go. The receiver accepts an association only from a calling AE title registered
here and not revoked; registering and revoking are audited."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.audit.entries import record_entry
from app.cases.service import live_case
from app.core.errors import Conflict, NotFound, Unprocessable
from app.dicom.arrival import Destination, check_issuer
from app.storage.tables import DicomSource, utcnow

AE_TITLE_MAX = 16


def normal_ae_title(text: str) -> str:
    """An AE title as DICOM compares it: without leading and trailing spaces (PS3.5 AE VR), at
    most 16 characters of the default repertoire, no backslash."""
    title = text.strip(" ")
    if not title:
        raise Unprocessable("an AE title needs at least one character other than a space")
    if len(title) > AE_TITLE_MAX:
        raise Unprocessable(
            f"AE title {title!r} is {len(title)} characters; at most {AE_TITLE_MAX}"
        )
    if any(ch == "\\" or not (" " <= ch <= "~") for ch in title):
        raise Unprocessable(
            f"AE title {title!r} may hold only printable ASCII characters, and no backslash"
        )
    return title


def destination_of(source: DicomSource) -> Destination:
    return Destination(case_id=source.case_id, issuer=source.issuer)


def register_source(
    session: Session,
    *,
    ae_title: str,
    destination: Destination,
    description: str,
    key_id: int | None,
    by: dict[str, str] | None = None,
) -> DicomSource:
    title = normal_ae_title(ae_title)
    if destination.case_id is not None:
        live_case(session, destination.case_id)
    else:
        check_issuer(destination.issuer)
    source = DicomSource(
        ae_title=title,
        case_id=destination.case_id,
        issuer=destination.issuer,
        description=description,
        created_by_key_id=key_id,
    )
    session.add(source)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(
            f"AE title {title!r} is registered already; revoke it first to send its images "
            "elsewhere"
        ) from None
    _audit(
        session,
        "dicom.source.register",
        source,
        key_id,
        by,
        destination=destination.describe(),
    )
    return source


def revoke_source(
    session: Session, *, source_id: int, key_id: int | None, by: dict[str, str] | None = None
) -> DicomSource:
    source = session.get(DicomSource, source_id)
    if source is None or source.revoked_at is not None:
        raise NotFound(f"no registered DICOM source with id {source_id}")
    source.revoked_at = utcnow()
    _audit(session, "dicom.source.revoke", source, key_id, by)
    return source


def live_sources(session: Session) -> list[DicomSource]:
    return list(
        session.scalars(
            select(DicomSource).where(DicomSource.revoked_at.is_(None)).order_by(DicomSource.id)
        )
    )


def source_for(session: Session, ae_title: str) -> DicomSource | None:
    """The live registration of a calling AE title, if any."""
    return session.scalar(
        select(DicomSource).where(
            DicomSource.ae_title == ae_title.strip(" "), DicomSource.revoked_at.is_(None)
        )
    )


def _audit(
    session: Session,
    action: str,
    source: DicomSource,
    key_id: int | None,
    by: dict[str, str] | None,
    **details: str,
) -> None:
    record_entry(
        session,
        action=action,
        target_type="dicom_source",
        target_id=source.id,
        details={"ae_title": source.ae_title, **details},
        key_id=key_id,
        by=by,
    )
