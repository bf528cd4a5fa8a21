"""The case report's page and type: A4, DejaVu Sans (matplotlib, a dependency, ships it, so every
install has it; it covers the Latin, Greek and Cyrillic scripts that case numbers, names and
comments come in, which the PDF standard fonts do not), the paragraph and table styles, and how
times and numbers are written.

Text from the database is always escaped before reportlab reads it as markup, so that a comment
holding "<b>" or "&" prints as written."""

from __future__ import annotations

import functools
import importlib.util
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import IO
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import Flowable, Paragraph, SimpleDocTemplate, Table, TableStyle

MARGIN = 16 * mm
CONTENT_WIDTH = A4[0] - 2 * MARGIN
RULE = colors.HexColor("#b3b9c1")
SHADE = colors.HexColor("#eef1f4")
MUTED = colors.HexColor("#4a5561")
# Fonts by role; the PDF standard fonts where matplotlib's copies cannot be found.
FONT_FILES = {
    "ReportSans": "DejaVuSans.ttf",
    "ReportSans-Bold": "DejaVuSans-Bold.ttf",
    "ReportMono": "DejaVuSansMono.ttf",
}
STANDARD_FONTS = {
    "ReportSans": "Helvetica",
    "ReportSans-Bold": "Helvetica-Bold",
    "ReportMono": "Courier",
}


@functools.cache
def fonts() -> dict[str, str]:
    """The font name to use for each role, registering the TrueType fonts once."""
    spec = importlib.util.find_spec("matplotlib")
    folders = [] if spec is None else list(spec.submodule_search_locations or [])
    found = {}
    for role, name in FONT_FILES.items():
        paths = [Path(f) / "mpl-data" / "fonts" / "ttf" / name for f in folders]
        path = next((p for p in paths if p.is_file()), None)
        if path is None:
            found[role] = STANDARD_FONTS[role]
            continue
        pdfmetrics.registerFont(TTFont(role, str(path)))
        found[role] = role
    pdfmetrics.registerFontFamily(
        found["ReportSans"], normal=found["ReportSans"], bold=found["ReportSans-Bold"]
    )
    return found


@functools.cache
def styles() -> dict[str, ParagraphStyle]:
    font = fonts()
    sans, bold, mono = font["ReportSans"], font["ReportSans-Bold"], font["ReportMono"]
    body = ParagraphStyle("body", fontName=sans, fontSize=9.5, leading=12.5, spaceAfter=4)
    cell = ParagraphStyle("cell", parent=body, fontSize=8.5, leading=10.5, spaceAfter=0)
    return {
        "title": ParagraphStyle("title", parent=body, fontName=bold, fontSize=17, leading=21),
        "h2": ParagraphStyle(
            "h2", parent=body, fontName=bold, fontSize=13, leading=16, spaceBefore=10
        ),
        "h3": ParagraphStyle(
            "h3", parent=body, fontName=bold, fontSize=10.5, leading=13, spaceBefore=6
        ),
        "body": body,
        "note": ParagraphStyle("note", parent=body, fontSize=8.5, leading=11, textColor=MUTED),
        "cell": cell,
        "head": ParagraphStyle("head", parent=cell, fontName=bold, fontSize=8),
        "label": ParagraphStyle("label", parent=cell, fontName=bold, textColor=MUTED),
        "mono": ParagraphStyle("mono", parent=cell, fontName=mono, fontSize=7, leading=9),
    }


def paragraph(text: str, style: str = "body") -> Paragraph:
    """Plain text, printed as written."""
    return Paragraph(escape(text), styles()[style])


def markup(xml: str, style: str = "body") -> Paragraph:
    """reportlab markup (<b>, <super>): the caller has escaped every piece of data in it."""
    return Paragraph(xml, styles()[style])


Cell = str | Flowable


def table(
    rows: list[list[Cell]],
    widths: list[float],
    *,
    header: bool = True,
    label_column: bool = False,
) -> Table:
    """A ruled table; strings become wrapping cells. The first row is the header, or with
    label_column the first column holds the labels of a list of facts."""

    def cell(value: Cell, row: int, column: int) -> Flowable:
        if not isinstance(value, str):
            return value
        if header and row == 0:
            return paragraph(value, "head")
        return paragraph(value, "label" if label_column and column == 0 else "cell")

    cells = [[cell(v, r, c) for c, v in enumerate(row)] for r, row in enumerate(rows)]
    commands = [
        ("GRID", (0, 0), (-1, -1), 0.4, RULE),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("TOPPADDING", (0, 0), (-1, -1), 2.5),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2.5),
        ("LEFTPADDING", (0, 0), (-1, -1), 4),
        ("RIGHTPADDING", (0, 0), (-1, -1), 4),
    ]
    if header:
        commands.append(("BACKGROUND", (0, 0), (-1, 0), SHADE))
    if label_column:
        commands.append(("BACKGROUND", (0, 0), (0, -1), SHADE))
    # Rows may split across pages: a 10,000-character description or comment is taller than one.
    return Table(
        cells,
        colWidths=widths,
        style=TableStyle(commands),
        repeatRows=1 if header else 0,
        splitInRow=1,
    )


def facts(
    pairs: list[tuple[str, Cell]], label_width: float = 42 * mm, width: float = CONTENT_WIDTH
) -> Table:
    """A list of facts: a label and its value per row."""
    return table(
        [[label, value] for label, value in pairs],
        [label_width, width - label_width],
        header=False,
        label_column=True,
    )


def when(value: datetime | str | None) -> str:
    """A moment in UTC, to the second."""
    if value is None:
        return "—"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def number(value: float | None, digits: int = 3) -> str:
    """A measure; n/a where it could not be computed (null in the stored JSON)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def rate(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def two_figures(value: float) -> str:
    """A positive number to two significant figures, with thousands separators: 2,300 · 1.3."""
    rounded = float(f"{value:.2g}")
    return f"{rounded:,.0f}" if rounded >= 10 else f"{rounded:g}"


def lr_text(log10_lr: float) -> str:
    """A likelihood ratio as the case page writes it: "2,300" above 1, "1/40" below, "1" where
    it rounds to 1."""
    if log10_lr >= 0:
        return two_figures(10.0**log10_lr)
    inverse = two_figures(10.0**-log10_lr)
    return "1" if inverse == "1" else f"1/{inverse}"


def build(target: IO[bytes], story: list[Flowable], *, title: str, footer: str) -> None:
    """Lay the story out on A4 pages, each with the footer and its page number."""
    font = fonts()["ReportSans"]

    def on_page(canvas, document) -> None:
        canvas.saveState()
        canvas.setFont(font, 7.5)
        canvas.setFillColor(MUTED)
        canvas.drawString(MARGIN, MARGIN / 2, footer)
        canvas.drawRightString(A4[0] - MARGIN, MARGIN / 2, f"page {document.page}")
        canvas.restoreState()

    document = SimpleDocTemplate(
        target,
        pagesize=A4,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=MARGIN,
        bottomMargin=MARGIN,
        title=title,
        author="radmatch",
        creator="radmatch",
        subject="Case report for an identification board",
    )
    document.build(story, onFirstPage=on_page, onLaterPages=on_page)
