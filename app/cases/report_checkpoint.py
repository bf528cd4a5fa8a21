"""The case report's signed checkpoint: the audit chain's head the report printed, signed with
the service's key when the report was made (app/audit/checkpoints.py), so that a reader can later
show that the chain up to that point is still the one the report saw, with nothing but the report,
the public key and `radmatch audit verify --checkpoints`."""

from __future__ import annotations

import json

from reportlab.lib.units import mm
from reportlab.platypus import Flowable, KeepTogether

from app.audit.checkpoints import Checkpoint
from app.cases.report_layout import facts, paragraph, when

NOTE = (
    "The checkpoint line below is signed (Ed25519) by the service's audit key; the key's "
    "fingerprint is above. Saved as a line of a file, it is checked with `radmatch audit verify "
    "--checkpoints FILE --public-key PEM`: the audit log must still hold this chain head, so "
    "that no entry up to it can have been rewritten, nor the log cut back, since this report."
)


def checkpoint_section(checkpoint: Checkpoint) -> list[Flowable]:
    rows = [
        ("Chain head signed", f"sequence {checkpoint.sequence}"),
        ("Head hash", paragraph(checkpoint.head_hash, "mono")),
        ("Signed at", when(checkpoint.signed_at)),
        ("Key fingerprint", paragraph(checkpoint.key_fingerprint, "mono")),
        ("Signature (base64)", paragraph(checkpoint.signature, "mono")),
    ]
    line = json.dumps(checkpoint.as_dict(), sort_keys=True, separators=(",", ":"))
    return [
        KeepTogether(
            [
                paragraph("Signed audit checkpoint", "h2"),
                facts(rows, 50 * mm),
                paragraph(NOTE, "note"),
                paragraph(line, "mono"),
            ]
        )
    ]
