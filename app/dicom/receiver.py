"""The DICOM C-STORE receiver (`radmatch dicom-listen`): a Storage SCP that takes radiographs from
the application entities an admin registered (app/dicom/sources.py), each object through
app.dicom.intake.receive like every other way in.

Who may associate is decided per association from the database, so that registering and revoking
(admin API, `radmatch dicom-sources`) take effect at the next association without a restart; a
C-STORE checks its source again, so a source revoked during an association sends nothing more.
Every storage SOP class is accepted at association, so that a CT or a report sent along with
radiographs gets a refusal with its reason rather than a bare "no presentation context", and the
transfer syntax the sender chose is kept: the original stored is the object as it was sent."""

from __future__ import annotations

import logging
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.events import Event
from pynetdicom.sop_class import Verification
from pynetdicom.transport import ThreadedAssociationServer
from sqlalchemy.exc import SQLAlchemyError

from app.core.config import Settings
from app.core.errors import ClientError
from app.core.metrics import Metrics
from app.dicom.arrival import Arrival, Destination
from app.dicom.intake import Received, receive
from app.dicom.objects import CANNOT_UNDERSTAND, OUT_OF_RESOURCES, Refused
from app.dicom.sources import destination_of, normal_ae_title, source_for
from app.serving.matcher import Matcher, StartupError
from app.serving.model_versions import active_version
from app.storage.records import Records

log = logging.getLogger("radmatch.dicom")

SUCCESS = 0x0000
# PS3.7 C: a sender whose registration was revoked while its association was open.
NOT_AUTHORISED = 0x0124
# ErrorComment is an LO: at most 64 characters, no backslash, no control characters.
ERROR_COMMENT_MAX = 64

# A-ASSOCIATE-RJ (PS3.8 9.3.4): result, source, diagnostic.
CALLING_AE_NOT_RECOGNISED = (0x01, 0x01, 0x03)  # rejected-permanent, by the service user
CALLED_AE_NOT_RECOGNISED = (0x01, 0x01, 0x07)
CANNOT_TELL = (0x02, 0x01, 0x01)  # rejected-transient, no reason given: the database is away


class ReceiverSetupError(ValueError):
    """The receiver's configuration cannot work: the message says what to change."""


@dataclass(frozen=True)
class Listening:
    """Where and as whom the receiver listens, and what it lets in."""

    host: str
    port: int
    ae_title: str
    tls: ssl.SSLContext | None
    max_associations: int
    max_pdu_bytes: int
    max_object_bytes: int


def listening(
    settings: Settings,
    *,
    host: str,
    port: int | None = None,
    ae_title: str | None = None,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    tls_ca: Path | None = None,
) -> Listening:
    """The settings' RADMATCH_DICOM_* values, with the ones given here in their place."""
    title = ae_title if ae_title is not None else settings.dicom_ae_title
    try:
        title = normal_ae_title(title)
    except ClientError as error:
        raise ReceiverSetupError(f"the receiver's AE title: {error.message}") from None
    cert = tls_cert or settings.dicom_tls_cert
    key = tls_key or settings.dicom_tls_key
    ca = tls_ca or settings.dicom_tls_ca
    return Listening(
        host=host,
        port=port if port is not None else settings.dicom_port,
        ae_title=title,
        tls=tls_context(cert, key, ca) if cert or key or ca else None,
        max_associations=settings.dicom_max_associations,
        max_pdu_bytes=settings.dicom_max_pdu_bytes,
        max_object_bytes=settings.max_upload_bytes,
    )


def tls_context(cert: Path | None, key: Path | None, ca: Path | None) -> ssl.SSLContext:
    """A server context with this certificate and key; with a CA, senders must present a
    certificate that chains to it."""
    if cert is None or key is None:
        raise ReceiverSetupError("TLS needs both a certificate and its private key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # BCP 195, as DICOM's TLS profiles ask
    try:
        context.load_cert_chain(certfile=cert, keyfile=key)
        if ca is not None:
            context.load_verify_locations(cafile=ca)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as error:
        raise ReceiverSetupError(f"cannot load the TLS certificate, key or CA: {error}") from None
    return context


def error_comment(reason: str) -> str:
    """The reason as a C-STORE response's ErrorComment can carry it."""
    text = "".join(ch if " " <= ch <= "~" and ch != "\\" else " " for ch in reason)
    if len(text) <= ERROR_COMMENT_MAX:
        return text
    return text[: ERROR_COMMENT_MAX - 3].rstrip() + "..."


class Receiver:
    """The Storage SCP, serving on a thread per association until `stop`."""

    def __init__(
        self, *, records: Records, matcher: Matcher, metrics: Metrics, where: Listening
    ) -> None:
        self.records = records
        self.matcher = matcher
        self.metrics = metrics
        self.where = where
        self.ae = AE(ae_title=where.ae_title)
        self.ae.maximum_associations = where.max_associations
        self.ae.maximum_pdu_size = where.max_pdu_bytes
        for context in AllStoragePresentationContexts:
            self.ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        self.ae.add_supported_context(Verification)  # C-ECHO: pynetdicom answers 0x0000
        self.server: ThreadedAssociationServer | None = None
        self._switching = threading.Lock()

    def start(self) -> None:
        """Listen; OSError when the address is taken."""
        self.server = self.ae.start_server(
            (self.where.host, self.where.port),
            block=False,
            ssl_context=self.where.tls,
            evt_handlers=[
                (evt.EVT_REQUESTED, self.on_requested),
                (evt.EVT_C_STORE, self.on_store),
            ],
        )
        log.info(
            "receiving DICOM as %s on %s:%d%s",
            self.where.ae_title,
            self.where.host,
            self.server.server_address[1],
            " (TLS)" if self.where.tls else "",
        )

    def stop(self, grace_s: float) -> None:
        """Take no new associations; give the established ones `grace_s` to finish, then abort
        them. An aborted sender had no answer for the object in flight, so it sends it again.
        Connections that never asked for an association (a port check) are not waited for."""
        if self.server is not None:
            self.server.shutdown()
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and any(
            association.is_established for association in self.ae.active_associations
        ):
            time.sleep(0.1)
        self.ae.shutdown()
        log.info("stopped receiving DICOM")

    # --- association ------------------------------------------------------------------------------

    def on_requested(self, event: Event) -> None:
        """Reject the association unless it calls this receiver's AE title from a registered,
        unrevoked one. pynetdicom negotiates the association after this unless it is rejected
        here; any failure rejects (transiently), so that no error lets anyone in."""
        request = event.assoc.requestor.primitive
        calling = str(request.calling_ae_title).strip()
        called = str(request.called_ae_title).strip()
        try:
            refusal, why = self._association_refusal(calling, called)
        except Exception:
            log.exception("cannot tell whether %r may send; rejecting its association", calling)
            refusal, why = CANNOT_TELL, "the case database did not answer"
        if refusal is None:
            return
        log.info(
            "rejected an association from %r (%s) to %r: %s",
            calling,
            event.assoc.requestor.address,
            called,
            why,
        )
        event.assoc.acse.send_reject(*refusal)
        # As pynetdicom does after its own rejections: the A-ASSOCIATE-RJ goes out and the
        # connection ends before this association's thread does.
        event.assoc.kill()

    def _association_refusal(
        self, calling: str, called: str
    ) -> tuple[tuple[int, int, int] | None, str]:
        if called != self.where.ae_title:
            return CALLED_AE_NOT_RECOGNISED, f"this receiver is {self.where.ae_title!r}"
        with self.records.sessions() as session:
            if source_for(session, calling) is None:
                return CALLING_AE_NOT_RECOGNISED, "the calling AE title is not a live registration"
        return None, ""

    # --- C-STORE ----------------------------------------------------------------------------------

    def on_store(self, event: Event) -> Dataset:
        """Take one object; answer success (also for one already stored) or the refusal's
        status with its reason."""
        calling = event.assoc.requestor.ae_title.strip()
        instance = str(event.request.AffectedSOPInstanceUID)
        answer = Dataset()
        try:
            received = self._receive(event, calling)
        except Refused as refusal:
            log.info(
                "refused SOP instance %s from %r: 0x%04X %s",
                instance,
                calling,
                refusal.status,
                refusal.reason,
            )
            answer.Status = refusal.status
            answer.ErrorComment = error_comment(refusal.reason)
            return answer
        log.info("received SOP instance %s from %r: %s", instance, calling, _outcome(received))
        answer.Status = SUCCESS
        return answer

    def _receive(self, event: Event, calling: str) -> Received:
        size = event.request.DataSet.getbuffer().nbytes
        if size > self.where.max_object_bytes:
            # A failure, not "out of resources": sending the same object again cannot succeed.
            raise Refused(
                CANNOT_UNDERSTAND,
                f"the object is {size} bytes; this receiver takes at most "
                f"{self.where.max_object_bytes} (RADMATCH_MAX_UPLOAD_BYTES)",
            )
        try:
            destination = self._destination(calling)
            self._follow_active_model()
            return receive(
                records=self.records,
                matcher=self.matcher,
                metrics=self.metrics,
                data=event.encoded_dataset(include_meta=True),
                destination=destination,
                arrival=Arrival("c-store", calling),
            )
        except (SQLAlchemyError, OSError, StartupError) as error:
            log.warning("could not take an object from %r", calling, exc_info=True)
            raise Refused(
                OUT_OF_RESOURCES,
                f"radmatch could not store it ({type(error).__name__}); send it again later",
            ) from None

    def _destination(self, calling: str) -> Destination:
        with self.records.sessions() as session:
            source = source_for(session, calling)
            if source is None:
                raise Refused(
                    NOT_AUTHORISED,
                    f"AE title {calling!r} was revoked during this association",
                )
            return destination_of(source)

    def _follow_active_model(self) -> None:
        """Embed with the model active now. A receiver runs for months and keeps no index, so
        nothing else tells it that an admin activated another model; images embedded with the
        previous one only would be missing from the servers' index of the new one."""
        with self.records.sessions() as session:
            active = active_version(session)
        if active is None or self._serves(active.id):
            return
        with self._switching:
            if not self._serves(active.id):
                # Loads the active version and embeds what it lacks: what this receiver took
                # with the previous model while the switch was under way.
                self.matcher.start()

    def _serves(self, version_id: int) -> bool:
        serving = self.matcher.serving
        return serving is not None and serving.version.id == version_id


def _outcome(received: Received) -> str:
    already = "" if received.stored else "already there: "
    if received.inbox_item_id is not None:
        return f"{already}inbox item {received.inbox_item_id}"
    return f"{already}image {received.image_id} of person {received.person_id}"
