"""A search in the case report: the query's thumbnail and what answered it, the candidates with
their evidence, and the open-set answer, all exactly as the search's stored answer has them."""

from __future__ import annotations

import io
from xml.sax.saxutils import escape

from PIL import Image as PILImage
from reportlab.lib.units import mm
from reportlab.platypus import Flowable, Image, KeepTogether, Spacer, Table

from app.cases.report_layout import (
    CONTENT_WIDTH,
    facts,
    lr_text,
    markup,
    number,
    paragraph,
    table,
    when,
)
from app.evidence.open_set import OpenSet
from app.evidence.weight import Evidence
from app.search.answer import Candidate, SearchAnswer
from model.int8 import ACCURACY_BOUND_PP

NO_CALIBRATION = "no calibration for this model version"
THUMBNAIL_WIDTH = 46 * mm


def search_section(answer: SearchAnswer, preview: bytes | str) -> list[Flowable]:
    heading = paragraph(f"Search #{answer.search_id}", "h2")
    beside = CONTENT_WIDTH - THUMBNAIL_WIDTH - 4 * mm
    # The thumbnail and the search's facts side by side, without rules between them.
    top = Table(
        [[thumbnail(preview), facts(search_facts(answer), 28 * mm, beside)]],
        colWidths=[THUMBNAIL_WIDTH + 4 * mm, beside],
        style=[
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("LEFTPADDING", (0, 0), (-1, -1), 0),
            ("RIGHTPADDING", (0, 0), (-1, -1), 0),
        ],
    )
    section: list[Flowable] = [KeepTogether([heading, top]), Spacer(1, 3 * mm)]
    section.append(candidates_table(answer))
    section += evidence_sentences(answer.candidates)
    section += open_set_paragraphs(answer.open_set)
    return section


def thumbnail(preview: bytes | str) -> Flowable:
    if isinstance(preview, str):
        return paragraph(preview, "note")
    with PILImage.open(io.BytesIO(preview)) as picture:
        width, height = picture.size
    scale = THUMBNAIL_WIDTH / max(width, height)
    return Image(io.BytesIO(preview), width=width * scale, height=height * scale)


def search_facts(answer: SearchAnswer) -> list[tuple[str, str | Flowable]]:
    model = answer.model_version
    parameters = answer.parameters
    calibration = answer.calibration
    asked = f"up to {parameters.get('k', len(answer.candidates))} people"
    filters = {k: v for k, v in (parameters.get("filters") or {}).items() if v is not None}
    if filters:
        asked += "; only " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in filters.items())
    index = f"generation {answer.index_generation}, {answer.index_size} images; "
    rows: list[tuple[str, str | Flowable]] = [
        ("Run at", when(answer.created_at)),
        ("Query sha256", paragraph(answer.query_sha256, "mono")),
        ("Query date", answer.query_date or "not given: years between images unknown"),
        ("Model version", f"#{model.id}, sha256 {model.sha256[:16]}…"),
        ("Index", index + searched_by(answer.index)),
        (
            "Calibration",
            NO_CALIBRATION
            if calibration is None
            else f"#{calibration['id']} ({calibration['method']})",
        ),
        ("Asked for", asked),
    ]
    if answer.inference:
        inference = answer.inference
        # Searches stored before the backend was recorded were embedded by PyTorch.
        backend = inference.get("backend", "torch")
        rows.append(
            ("Embedded on", f"{inference['device']}, {inference['precision']}, by {backend}")
        )
        if "int8_loss_pp" in inference:
            rows.append(("int8 measured", int8_cost(inference["int8_loss_pp"])))
    return rows


def int8_cost(loss_pp: dict[str, float]) -> str:
    """What int8 cost this model against float32, as `radmatch quantize` measured it."""
    return (
        f"lost {loss_pp['cmc_top1']:.2f} points of CMC top-1 and {loss_pp['mAP']:.2f} of mAP to "
        "float32 on test people the model never saw (a negative loss is a gain); int8 is served "
        f"only within {ACCURACY_BOUND_PP:g} point"
    )


def searched_by(index: dict) -> str:
    if index.get("exact", True):
        return f"{index.get('kind', 'flat')} (exact search)"
    settings = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in index["parameters"].items())
    return f"{index['kind']} (approximate search: {settings})"


def candidates_table(answer: SearchAnswer) -> Flowable:
    candidates = answer.candidates
    if not candidates:
        return paragraph("No candidates: no image in the gallery matched the search's options.")
    if all(c.evidence is None for c in candidates):
        rows = [["Rank", "Person", "Similarity", "Distance", "Best image"]]
        rows += [
            [
                str(c.rank),
                c.who,
                number(c.similarity, 4),
                number(c.distance, 4),
                f"image {c.best_image_id}",
            ]
            for c in candidates
        ]
        widths = [14 * mm, 64 * mm, 30 * mm, 30 * mm, CONTENT_WIDTH - 138 * mm]
        note = f"No likelihood ratios: {NO_CALIBRATION} when this search ran."
        return KeepTogether([table(rows, widths), paragraph(note, "note")])
    rows = [
        [
            "Rank",
            "Person",
            "Similarity",
            "log10 LR",
            "LR",
            "Verbal scale (supports)",
            "Bounded",
            "Years apart",
        ]
    ]
    rows += [candidate_row(c) for c in candidates]
    widths = [11 * mm, 33 * mm, 19 * mm, 17 * mm, 19 * mm, 39 * mm, 17 * mm]
    return table(rows, [*widths, CONTENT_WIDTH - sum(widths)])


def candidate_row(candidate: Candidate) -> list[str | Flowable]:
    row: list[str | Flowable] = [
        str(candidate.rank),
        candidate.who,
        number(candidate.similarity, 4),
    ]
    evidence = candidate.evidence
    if evidence is None:
        return [*row, "—", "—", NO_CALIBRATION, "—", "—"]
    years = evidence.years_between
    return [
        *row,
        number(evidence.log10_lr, 2),
        lr_text(evidence.log10_lr),
        f"{evidence.verbal} ({evidence.supports})",
        "yes" if evidence.bounded else "no",
        "unknown" if years is None else f"{years:g}",
    ]


IMAGES = "the query and the candidate's image"


def likelihood_sentence(evidence: Evidence) -> str:
    """How much more probable the similarity is under one proposition than the other, and the
    verbal equivalent stored with it, in the form of the ENFSI guideline."""
    rounded = lr_text(evidence.log10_lr)
    if rounded == "1" or evidence.supports == "neither":
        return (
            f"The similarity observed is about as probable if {IMAGES} are of the same person as "
            "if they are of different people. This supports neither proposition."
        )
    if evidence.log10_lr > 0:
        times, supported, against = rounded, "the same person", "different people"
    else:
        times, supported, against = (
            lr_text(-evidence.log10_lr),
            "different people",
            "the same person",
        )
    return (
        f"The similarity observed is about {times} times more probable if {IMAGES} are of "
        f"{supported} than if they are of {against}. "
        f"This is {evidence.verbal} support for {supported} rather than {against}."
    )


def evidence_sentences(candidates: tuple[Candidate, ...]) -> list[Flowable]:
    """Per weighed candidate: its likelihood ratio in words, the curve and years it came from,
    whether the calibration's empirical bounds capped it, and why the pooled curve was used."""
    sentences: list[Flowable] = []
    for candidate in candidates:
        evidence = candidate.evidence
        if evidence is None:
            continue
        low, high = evidence.elub
        facts = [f"log10 LR {evidence.log10_lr:.2f}", f"curve {evidence.band}"]
        if evidence.years_between is not None:
            facts.append(f"{evidence.years_between:g} years between the images")
        if evidence.bounded:
            facts.append(
                f"bounded: the calibration data support no stronger value (ELUB "
                f"{lr_text(low)} to {lr_text(high)})"
            )
        if evidence.note:
            facts.append(evidence.note)
        sentence = (
            f"<b>Rank {candidate.rank}, {escape(candidate.external_ref)}: likelihood ratio "
            f"{lr_text(evidence.log10_lr)}</b> ({escape('; '.join(facts))}). "
            f"{escape(likelihood_sentence(evidence))}"
        )
        sentences.append(markup(sentence, "note"))
    return [Spacer(1, 2 * mm), *sentences] if sentences else []


def open_set_paragraphs(answer: OpenSet | None) -> list[Flowable]:
    heading = paragraph("Is the person in the gallery? (open-set answer)", "h3")
    if answer is None:
        return [heading, paragraph(f"No open-set answer: {NO_CALIBRATION}.", "body")]
    top = "n/a" if answer.p_top_candidate is None else f"{answer.p_top_candidate:.3f}"
    beyond = (
        ""
        if answer.beyond_log10_lr is None
        else f", each counted at a log10 LR of at most {answer.beyond_log10_lr:.2f}"
    )
    thresholds = answer.thresholds
    figures = (
        f"<b>Open-set decision: {escape(answer.decision)}</b>. Probability that the person is "
        f"in the gallery (p_in_gallery) {answer.p_in_gallery:.3f}, that they are the first "
        f"candidate {top}; prior {answer.prior:g} ({escape(answer.prior_source)}); "
        f"{answer.gallery_people} people searched, {answer.people_beyond_candidates} beyond "
        f"the candidates{beyond}. Thresholds: candidate supported at "
        f"{thresholds.get('candidate_supported', 0.9):g} for the first candidate, probably not "
        f"in the gallery at {thresholds.get('probably_not_in_gallery', 0.1):g} or below."
    )
    return [KeepTogether([heading, markup(figures, "body"), paragraph(answer.statement, "note")])]
