"""The case report's sections about the case as a whole, each a list of flowables: the case, the
conclusions and reviews, the validation of the calibrations its searches used, and the audit
chain (a search's own section is report_search.py's)."""

from __future__ import annotations

from reportlab.lib.units import mm
from reportlab.platypus import Flowable, KeepTogether, Spacer

from app.cases.report_contents import AuditHead, CalibrationShown, ReportContents
from app.cases.report_layout import CONTENT_WIDTH, facts, number, paragraph, rate, table, when
from app.cases.report_search import NO_CALIBRATION

INTRODUCTION = (
    "radmatch ranks the gallery's people by how similar their radiographs are to the query and, "
    "where the model version is calibrated, weighs each candidate's similarity as a likelihood "
    "ratio: how much more probable that similarity is if the candidate is the same person than "
    "if they are different people. It never declares an identification: that is the examiners' "
    "conclusion, recorded under Conclusions and reviews."
)


def case_section(contents: ReportContents, version: str) -> list[Flowable]:
    prior = contents.prior_in_gallery
    return [
        paragraph(f"Case report: {contents.number}", "title"),
        paragraph(INTRODUCTION, "note"),
        Spacer(1, 2 * mm),
        facts(
            [
                ("Case number", contents.number),
                ("Status", contents.status),
                ("Description", contents.description or "none"),
                (
                    "Prior in the gallery",
                    "not set: searches take 0.5 unless they give their own"
                    if prior is None
                    else f"{prior:g}, for searches that give none of their own",
                ),
                ("Opened", when(contents.created_at)),
                ("Last changed", when(contents.updated_at)),
                ("Searches", str(len(contents.searches))),
                ("Report generated", when(contents.generated_at)),
                ("Requested by", contents.requested_by),
                ("radmatch version", version),
            ]
        ),
    ]


# ---- Conclusions and reviews -------------------------------------------------------------------


def conclusions_section(contents: ReportContents) -> list[Flowable]:
    refs = {
        (answer.search_id, c.person_id): c
        for answer in contents.searches
        for c in answer.candidates
    }
    conclusions = contents.conclusions
    section: list[Flowable] = [
        paragraph("Conclusions and reviews", "h2"),
        paragraph(
            "Each conclusion is signed by the examiner's key and never changed: a later entry "
            "about the same candidate supersedes an earlier one, and both stay. A conclusion "
            "marked (blind) was made while its examiner reviewed the case blind, shown no one "
            "else's conclusions; one marked (before the ranking) under sequential unmasking, "
            "before its examiner was shown the ranking, scores and evidence.",
            "note",
        ),
    ]
    if conclusions["hidden"]:
        section.append(
            paragraph(
                f"Blind review: {conclusions['hidden']} conclusion(s) by other examiners are left "
                "out, and the case's status and description are as they were when the review was "
                "asked, until the requesting examiner records their own on search "
                + ", ".join(f"#{i}" for i in conclusions["blind_searches"])
                + ".",
                "note",
            )
        )
    rows = [["Recorded", "Examiner", "Search", "Candidate", "Conclusion", "Comment"]]
    for entry in conclusions["items"]:
        candidate = refs.get((entry["search_id"], entry["person_id"]))
        who = f"person {entry['person_id']}" if candidate is None else candidate.who
        rank = "" if candidate is None else f", rank {candidate.rank}"
        rows.append(
            [
                when(entry["created_at"]),
                entry["examiner"],
                f"#{entry['search_id']}",
                who + rank,
                entry["conclusion"]
                + (" (blind)" if entry["made_blind"] else "")
                + ("" if entry["ranking_seen"] else " (before the ranking)"),
                entry["comment"] or "no comment",
            ]
        )
    widths = [30 * mm, 30 * mm, 14 * mm, 36 * mm, 21 * mm]
    if len(rows) > 1:
        section.append(table(rows, [*widths, CONTENT_WIDTH - sum(widths)]))
    else:
        section.append(paragraph("No conclusions recorded."))
    for entry in conclusions["items"]:
        section += findings(entry)
    section += reviews_table(contents.reviews)
    return section


def findings(entry: dict) -> list[Flowable]:
    """A conclusion's marked features and measurements, as recorded with it."""
    if not entry["marks"] and not entry["measurements"]:
        return []
    image = entry["candidate_image_id"]
    flowables: list[Flowable] = [
        paragraph(
            f"Marked and measured with the conclusion of {when(entry['created_at'])} by "
            f"{entry['examiner']} (search #{entry['search_id']}, person {entry['person_id']}"
            + (f", candidate image #{image}" if image else "")
            + "). Points are in the originals' pixels, from the top left.",
            "h3",
        )
    ]
    if entry["marks"]:
        rows = [["Mark", "Feature", "On the query", "On the candidate"]]
        rows += [
            [str(m["number"]), m["label"], point(m["query"]), point(m["candidate"])]
            for m in entry["marks"]
        ]
        widths = [12 * mm, 70 * mm, 40 * mm]
        flowables.append(table(rows, [*widths, CONTENT_WIDTH - sum(widths)]))
    if entry["measurements"]:
        rows = [["Image", "Measured", "Value", "Points", "Label"]]
        rows += [
            [
                m["image"],
                m["kind"],
                f"{m['value']:g} {m['unit']}",
                ", ".join(point(p) for p in m["points"]),
                m["label"] or "",
            ]
            for m in entry["measurements"]
        ]
        widths = [20 * mm, 20 * mm, 24 * mm, 60 * mm]
        flowables.append(table(rows, [*widths, CONTENT_WIDTH - sum(widths)]))
    return flowables


def point(at: dict) -> str:
    return f"({at['x']:.0f}, {at['y']:.0f})"


def reviews_table(reviews: tuple[dict, ...]) -> list[Flowable]:
    heading = paragraph("Blind reviews", "h3")
    if not reviews:
        return [heading, paragraph("No blind reviews were asked for.")]
    rows = [["Search", "Reviewer", "Asked by", "Asked", "Ended"]]
    rows += [
        [
            f"#{r['search_id']}" + (" (sequential unmasking)" if r["sequential_unmasking"] else ""),
            r["reviewer"],
            r["requested_by"],
            when(r["created_at"]),
            ended(r),
        ]
        for r in reviews
    ]
    widths = [30 * mm, 36 * mm, 36 * mm, 34 * mm]
    return [heading, table(rows, [*widths, CONTENT_WIDTH - sum(widths)])]


def ended(review: dict) -> str:
    if review["completed_at"]:
        return f"concluded {when(review['completed_at'])}"
    if review["withdrawn_at"]:
        return f"withdrawn by {review['withdrawn_by']} {when(review['withdrawn_at'])}"
    return "awaiting their conclusion"


# ---- Validation and audit ----------------------------------------------------------------------

MEASURES_NOTE = (
    "Cross-validated over people the model never trained on. Cllr is the log-likelihood-ratio "
    "cost (0 perfect, 1 no better than giving no evidence), Cllr min what a perfect recalibration "
    "would reach, Cllr cal the difference; EER is the similarities' equal error rate; ELUB the "
    "empirical bounds on log10 LR; the last two columns the rates of misleading evidence: "
    "same-person pairs with LR below 1, different-people pairs with LR above 1."
)


def validation_section(calibrations: tuple[CalibrationShown, ...]) -> list[Flowable]:
    section: list[Flowable] = [
        paragraph("Validation of the calibrations", "h2"),
        paragraph(MEASURES_NOTE, "note"),
    ]
    if not calibrations:
        section.append(paragraph("No searches, so no model version to report on."))
    for shown in calibrations:
        section += calibration_block(shown)
    return section


def calibration_block(shown: CalibrationShown) -> list[Flowable]:
    version = f"Model version #{shown.model_version_id}"
    if shown.calibration_id is None:
        return [
            paragraph(version, "h3"),
            paragraph(f"{NO_CALIBRATION}: its searches carry no likelihood ratios."),
        ]
    current = ", current" if shown.current else ""
    heading = paragraph(
        f"{version}: calibration #{shown.calibration_id} ({shown.method}{current}), fitted "
        f"{when(shown.created_at)}",
        "h3",
    )
    used = (
        "Used by search " + ", ".join(f"#{i}" for i in shown.used_by)
        if shown.used_by
        else "Used by none of this case's searches: they ran before it, or with another."
    )
    source = shown.source or {}
    validation = shown.validation or {}
    fitted_on = (
        f"Fitted on {source.get('images', '?')} images of {source.get('people', '?')} people "
        f"({source.get('manifest') or source.get('kind', 'unknown source')}); validated in "
        f"{validation.get('folds', '?')} folds of people. {used}."
    )
    rows = [
        [
            "Pairs",
            "Same / different",
            "Cllr",
            "Cllr min",
            "Cllr cal",
            "EER",
            "ELUB (log10)",
            "Same, LR < 1",
            "Different, LR > 1",
        ]
    ]
    rows.append(measures_row("All", validation))
    rows += [measures_row(label, band) for label, band in validation.get("bands", {}).items()]
    widths = [22, 24, 14, 16, 16, 14, 27, 22]
    widths_mm = [w * mm for w in widths]
    return [
        KeepTogether([heading, paragraph(fitted_on, "note")]),
        table(rows, [*widths_mm, CONTENT_WIDTH - sum(widths_mm)]),
    ]


def measures_row(label: str, measures: dict) -> list[str]:
    elub = measures.get("elub")
    misleading = measures.get("misleading") or {}
    return [
        label,
        f"{measures.get('same_pairs', 0)} / {measures.get('different_pairs', 0)}",
        number(measures.get("cllr")),
        number(measures.get("cllr_min")),
        number(measures.get("cllr_cal")),
        rate(measures.get("eer")),
        "n/a" if not elub else f"[{elub[0]:.2f}, {elub[1]:.2f}]",
        rate(misleading.get("same_person_below_1")),
        rate(misleading.get("different_people_above_1")),
    ]


def audit_section(head: AuditHead) -> list[Flowable]:
    latest = (
        "none"
        if head.case_sequence is None
        else f"sequence {head.case_sequence}: {head.case_action}, {when(head.case_at)}"
    )
    rows: list[tuple[str, str | Flowable]] = [
        ("Latest entry about this case", latest),
        ("Its entry hash", paragraph(head.case_entry_hash or "none", "mono")),
        ("Chain head", f"sequence {head.chain_sequence}"),
        ("Chain head hash", paragraph(head.chain_head_hash, "mono")),
    ]
    note = (
        "Every change to the case and every search is an entry in radmatch's hash-chained audit "
        "log; `radmatch audit verify` recomputes the chain. This report is recorded as an entry "
        "of its own (case.report), after the head above, naming both hashes."
    )
    return [
        KeepTogether(
            [paragraph("Audit trail", "h2"), facts(rows, 50 * mm), paragraph(note, "note")]
        )
    ]
