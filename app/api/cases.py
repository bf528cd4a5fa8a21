"""Cases: searches run for an unidentified person, examiners' conclusions, blind reviews."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlalchemy.exc import IntegrityError

from app.access.keys import key_names
from app.api import API_PREFIX
from app.api.audit import CheckpointerDep
from app.api.deps import AnyKey, PathId, ServiceDep
from app.api.paging import Limit, Offset
from app.api.schemas.cases import (
    CaseCreate,
    CaseDetail,
    CaseOut,
    CasesPage,
    CaseStatus,
    CaseUpdate,
    ConclusionCreate,
    ConclusionOut,
    Conclusions,
    ReviewCreate,
    ReviewOut,
    ReviewWaiting,
)
from app.api.schemas.common import CASE_NUMBER_LENGTH, CaseNumber, NoNul, refusals
from app.api.schemas.searches import SearchOut
from app.api.searches import SearchForm, run_search
from app.cases.marks import Findings, ImageFrame
from app.cases.report import (
    case_report_pdf,
    report_filename,
    sign_report_checkpoint,
    stored_query_preview,
)
from app.cases.report_contents import report_contents
from app.cases.reviews import (
    request_review,
    review_json,
    reviews_waiting_for,
    withdraw_review,
)
from app.cases.service import (
    audit,
    case_detail,
    case_search,
    cases_page,
    conclusion_json,
    conclusions_for,
    live_case,
    record_conclusion,
    update_case,
)
from app.core.errors import Conflict
from app.dicom.export import export_case
from app.search.service import stored_query_facts
from app.serving.service import Service
from app.storage.tables import Case

router = APIRouter(prefix=API_PREFIX, tags=["cases"], responses=refusals(401, 503))


@router.post("/cases", status_code=201, response_model=CaseOut, responses=refusals(400, 409))
def create_case(body: CaseCreate, service: ServiceDep, key: AnyKey) -> Case:
    try:
        with service.records.sessions.begin() as session:
            case = Case(
                number=body.number,
                description=body.description,
                prior_in_gallery=body.prior_in_gallery,
                created_by_key_id=key.id,
            )
            session.add(case)
            session.flush()
            audit(session, key.id, "case.create", case.id, number=case.number)
    except IntegrityError:
        raise Conflict(f"a case numbered {body.number!r} exists already") from None
    return case


@router.get("/cases", response_model=CasesPage)
def list_cases(
    service: ServiceDep,
    key: AnyKey,
    status: CaseStatus | None = None,
    number: Annotated[
        str | None,
        Query(max_length=CASE_NUMBER_LENGTH, description="exact match, after normalisation"),
        NoNul,
        CaseNumber,
    ] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> dict:
    """Cases, newest first; a case you review blind as it was when you were asked."""
    with service.records.sessions() as session:
        return cases_page(
            session, key_id=key.id, status=status, number=number, limit=limit, offset=offset
        )


@router.get("/cases/{case_id}", response_model=CaseDetail, responses=refusals(404))
def get_case(case_id: PathId, service: ServiceDep, key: AnyKey) -> dict:
    with service.records.sessions() as session:
        return case_detail(session, live_case(session, case_id), key.id)


@router.patch("/cases/{case_id}", response_model=CaseOut, responses=refusals(400, 404, 409))
def change_case(case_id: PathId, body: CaseUpdate, service: ServiceDep, key: AnyKey) -> Case:
    """Change the case's status, description or prior; not while you review it blind (409).
    "identified" needs an identification among the examiners' standing conclusions (409)."""
    changes = body.model_dump(exclude_none=True)
    with service.records.sessions.begin() as session:
        return update_case(session, case=live_case(session, case_id), changes=changes, key=key)


@router.post(
    "/cases/{case_id}/searches",
    response_model=SearchOut,
    responses=refusals(400, 404, 413, 415, 422, 429),
)
def search_in_case(case_id: PathId, service: ServiceDep, key: AnyKey, form: SearchForm) -> dict:
    """A search (as POST /search) kept with the case."""
    with service.records.sessions() as session:
        live_case(session, case_id)
    return run_search(service, form, key.id, case_id).as_json()


@router.get("/cases/{case_id}/conclusions", response_model=Conclusions, responses=refusals(404))
def list_conclusions(case_id: PathId, service: ServiceDep, key: AnyKey) -> dict:
    with service.records.sessions() as session:
        return conclusions_for(session, live_case(session, case_id), key.id)


@router.post(
    "/cases/{case_id}/conclusions",
    status_code=201,
    response_model=ConclusionOut,
    responses=refusals(400, 404, 410, 413, 422, 429),
)
def add_conclusion(
    case_id: PathId, body: ConclusionCreate, service: ServiceDep, key: AnyKey
) -> dict:
    """Record a conclusion about one candidate of one of the case's searches, signed by your key,
    with the features you marked on both images and what you measured (points in the originals'
    pixels; each value is computed from its points and the image's pixel spacing). Nothing is
    overwritten: a changed conclusion is a new entry. Under sequential unmasking, only the
    candidate you were shown."""
    findings = Findings(
        candidate_image_id=body.candidate_image_id,
        marks=[mark.model_dump() for mark in body.marks],
        measurements=[measurement.model_dump() for measurement in body.measurements],
    )
    query = query_frame(service, case_id, body.search_id) if findings.on_query else None
    with service.records.sessions.begin() as session:
        entry = record_conclusion(
            session,
            case=live_case(session, case_id),
            search_id=body.search_id,
            person_id=body.person_id,
            conclusion=body.conclusion,
            comment=body.comment,
            key=key,
            findings=findings,
            query=query,
        )
        return conclusion_json(entry, {key.id: key.name})


def query_frame(service: Service, case_id: int, search_id: int) -> ImageFrame:
    """The query's size and pixel spacing, for the points marked and measured on it; the search
    is checked to be the case's before its query is decoded."""
    with service.records.sessions() as session:
        case_search(session, live_case(session, case_id), search_id)
    facts = stored_query_facts(
        records=service.records, matcher=service.matcher, search_id=search_id
    )
    return ImageFrame("query", facts.width, facts.height, facts.pixel_spacing_mm)


@router.post(
    "/cases/{case_id}/reviews",
    status_code=201,
    response_model=ReviewOut,
    responses=refusals(400, 403, 404, 409, 422),
)
def ask_for_review(case_id: PathId, body: ReviewCreate, service: ServiceDep, key: AnyKey) -> dict:
    """Ask another examiner to review a search blind. You must have worked on the case (created
    it, searched or concluded in it); the reviewer is an examiner's active key, not an admin's
    and not yours, with no open request for this search and no conclusion on it yet. With
    sequential unmasking the reviewer is shown the query and the candidate `person_id` only,
    without rank, score or evidence, until they record their conclusion on it."""
    with service.records.sessions.begin() as session:
        case = live_case(session, case_id)
        review = request_review(
            session,
            case=case,
            search=case_search(session, case, body.search_id),
            reviewer_key_id=body.reviewer_key_id,
            key=key,
            sequential_person_id=body.person_id,
        )
        return review_json(review, key_names(session))


@router.get("/reviews", response_model=list[ReviewWaiting])
def reviews_waiting(service: ServiceDep, key: AnyKey) -> list[dict]:
    """The blind reviews asked of you and still open, oldest first: your inbox."""
    with service.records.sessions() as session:
        return reviews_waiting_for(session, key.id)


@router.post(
    "/cases/{case_id}/reviews/{review_id}/withdraw",
    response_model=ReviewOut,
    responses=refusals(403, 404, 409),
)
def withdraw(case_id: PathId, review_id: PathId, service: ServiceDep, key: AnyKey) -> dict:
    """Withdraw an open request for a blind review: by the examiner who asked, or an admin.
    Audited; the reviewer is no longer blind to the case unless another request is open."""
    with service.records.sessions.begin() as session:
        case = live_case(session, case_id)
        review = withdraw_review(session, case=case, review_id=review_id, key=key)
        return review_json(review, key_names(session))


@router.get(
    "/cases/{case_id}/report.pdf",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}}, **refusals(404, 409, 413, 429)},
)
def get_case_report(
    case_id: PathId, service: ServiceDep, checkpointer: CheckpointerDep, key: AnyKey
) -> Response:
    """The case as a PDF for an identification board: its searches with their candidates,
    evidence and open-set answers, the conclusions and reviews you may see, the calibrations'
    validation and the audit chain's head, signed as a checkpoint. The report is itself an audit
    entry, naming the head it printed. Refused (409) while you review a search of the case with
    sequential unmasking: the report shows its ranking."""
    with service.records.sessions() as session:
        contents = report_contents(session, live_case(session, case_id), key.id)
    pdf = case_report_pdf(
        contents,
        stored_query_preview(service.records.originals, service.matcher),
        checkpoint=sign_report_checkpoint(checkpointer, contents),
    )
    with service.records.sessions.begin() as session:
        audit(session, key.id, "case.report", case_id, **contents.audit.as_details())
    filename = report_filename(contents.number)
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get(
    "/cases/{case_id}/export.zip",
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}}, **refusals(404, 409, 410, 413, 422, 429)},
)
def export_case_zip(
    case_id: PathId,
    service: ServiceDep,
    key: AnyKey,
    deidentify: Annotated[
        bool,
        Query(
            description="De-identify with PS3.15 Annex E's Basic Application Level "
            "Confidentiality Profile, keeping the intervals between dates but not the dates"
        ),
    ] = True,
) -> Response:
    """The case for another lab: a zip of a DICOM File-set (DICOMDIR and objects) holding, for
    each conclusion you may see, the query radiograph of its search and the candidate's image
    it compared. DICOM originals go in as stored, PNG, JPEG and TIFF ones as Secondary Capture
    images. 409 for a case without conclusions, or an object with burned-in annotation when
    de-identifying; 410 when an original was purged. The export is an audit entry."""
    exported = export_case(
        records=service.records,
        matcher=service.matcher,
        case_id=case_id,
        key_id=key.id,
        deidentify=deidentify,
    )
    return Response(
        exported.data,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{exported.filename}"'},
    )
