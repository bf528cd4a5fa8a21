"""The case report: a PDF of a case for an identification board (report_contents.py says what it
holds). Laid out from what was read, without the database: the case; each search with its query,
candidates, evidence and open-set answer; the conclusions and reviews; the validation of the
calibrations used; and where the audit chain stood, with that head signed as a checkpoint
(report_checkpoint.py), so that a reader can check that nothing changed since."""

from __future__ import annotations

import functools
import io
from collections.abc import Callable

from app.audit.checkpointing import Checkpointer
from app.audit.checkpoints import Checkpoint
from app.cases import report_layout as layout
from app.cases.report_checkpoint import checkpoint_section
from app.cases.report_contents import ReportContents
from app.cases.report_search import search_section
from app.cases.report_sections import (
    audit_section,
    case_section,
    conclusions_section,
    validation_section,
)
from app.core.errors import ClientError
from app.gallery.previews import preview_png
from app.serving.matcher import Matcher
from app.storage.originals import OriginalStore
from model.checkpoint import code_version

# The query thumbnail's longest side, in pixels: sharp at the size it is printed.
PREVIEW_PIXELS = 360
# A stored query's bytes (sha256) -> a PNG preview, or a sentence saying why there is none.
QueryPreview = Callable[[str], bytes | str]


def stored_query_preview(originals: OriginalStore, matcher: Matcher) -> QueryPreview:
    """Previews of stored queries; an original that is gone, or no longer decodes under the
    server's limits, is said so instead."""

    def preview(sha256: str) -> bytes | str:
        if not originals.exists(sha256):
            return "The query original is no longer stored: no thumbnail."
        try:
            return preview_png(matcher, originals.read(sha256), PREVIEW_PIXELS)
        except ClientError as error:  # refused by the decode limits or the decode budget
            return f"The query original cannot be previewed: {error.message}"

    return preview


@functools.cache
def server_code_version() -> str:
    """The running code's version, read once (it asks git when run from a checkout)."""
    return code_version()


def sign_report_checkpoint(checkpointer: Checkpointer, contents: ReportContents) -> Checkpoint:
    """A checkpoint of the chain head the report prints (read from the committed head row with
    the report's contents), signed and appended to the checkpoint file."""
    return checkpointer.sign(
        sequence=contents.audit.chain_sequence, head_hash=contents.audit.chain_head_hash
    )


def case_report_pdf(
    contents: ReportContents,
    preview: QueryPreview,
    version: str | None = None,
    checkpoint: Checkpoint | None = None,
) -> bytes:
    """The report as PDF bytes: A4, a footer with the case number and page on every page.
    `version` is the code version it names, by default the running server's; `checkpoint` the
    signed chain head it prints (sign_report_checkpoint)."""
    story = case_section(contents, version or server_code_version())
    for answer in contents.searches:
        story += search_section(answer, preview(answer.query_sha256))
    if not contents.searches:
        story.append(layout.paragraph("No searches were run in this case.", "note"))
    story += conclusions_section(contents)
    story += validation_section(contents.calibrations)
    story += audit_section(contents.audit)
    if checkpoint is not None:
        story += checkpoint_section(checkpoint)
    buffer = io.BytesIO()
    layout.build(
        buffer,
        story,
        title=f"Case report {contents.number}",
        footer=f"radmatch case report · case {footer_number(contents.number)} · "
        f"generated {layout.when(contents.generated_at)}",
    )
    return buffer.getvalue()


def footer_number(number: str, longest: int = 40) -> str:
    """The case number as the footer has room for it; the title gives it whole."""
    return number if len(number) <= longest else number[: longest - 1] + "…"


def report_filename(number: str) -> str:
    """A download name from the case number: letters, digits, '.', '-' and '_' only."""
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in number)
    return f"case-{safe.strip('._') or 'report'}-report.pdf"
