"""Cases, conclusions and reviews."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.api.schemas.common import (
    CASE_NUMBER_LENGTH,
    CaseNumber,
    OptionalText,
    Page,
    RowId,
    Text,
)
from app.api.schemas.marks import FindingsIn, Mark, Measurement
from app.api.schemas.searches import (
    SearchOut,
)

CaseStatus = Literal["open", "identified", "closed"]


PriorInGallery = Annotated[
    float | None,
    Field(
        gt=0,
        lt=1,
        description="Probability, before any search, that this person is in the gallery; "
        "searches in the case use it unless they give their own (default 0.5)",
    ),
]

ConclusionScale = Literal["identification", "probable", "possible", "insufficient", "excluded"]


class CaseCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    number: Annotated[Text, CaseNumber] = Field(
        min_length=1,
        max_length=CASE_NUMBER_LENGTH,
        description="The lab's case number: compared after Unicode NFKC and with surrounding "
        "spaces removed; case matters",
    )
    description: Text = Field(default="", max_length=10_000)
    prior_in_gallery: PriorInGallery = None


class CaseUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: CaseStatus | None = None
    description: OptionalText = Field(default=None, max_length=10_000)
    prior_in_gallery: PriorInGallery = None


class CaseOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    number: str
    description: str
    status: str
    prior_in_gallery: float | None = None
    created_at: datetime
    updated_at: datetime


class CasesPage(Page[CaseOut]):
    pass


class ConclusionCreate(FindingsIn):
    model_config = ConfigDict(extra="forbid")

    search_id: RowId
    person_id: RowId = Field(description="The candidate the conclusion is about")
    conclusion: ConclusionScale
    comment: Text = Field(default="", max_length=10_000)


class ConclusionOut(BaseModel):
    id: int
    search_id: int
    person_id: int
    conclusion: str
    comment: str
    key_id: int = Field(description="The key that signed it")
    examiner: str = Field(description="That key's owner")
    created_at: datetime
    made_blind: bool = Field(
        description="Signed while its examiner reviewed a search of the case blind, seeing no "
        "one else's conclusions"
    )
    blind_review_id: int | None = Field(description="The open review it was made under")
    ranking_seen: bool = Field(
        description="False when signed under sequential unmasking: before its examiner was "
        "shown the ranking, scores and evidence"
    )
    candidate_image_id: int | None = Field(
        description="The candidate's image its marks and measurements were made on"
    )
    marks: list[Mark]
    measurements: list[Measurement]


class Conclusions(BaseModel):
    items: list[ConclusionOut] = Field(description="Oldest first; a change is a later entry")
    hidden: int = Field(
        description="Others' conclusions in the case withheld while you review it blind"
    )
    blind_searches: list[int] = Field(
        description="Searches you review blind and have not concluded on; while there is one, "
        "the case's status and description are shown as they were when you were asked"
    )


class ReviewCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    search_id: RowId
    reviewer_key_id: RowId = Field(description="The second examiner's key (GET /examiners)")
    sequential_unmasking: bool = Field(
        default=False,
        description="Show the reviewer only the query and one candidate's images, without "
        "rank, score or evidence, until they record their conclusion on it",
    )
    person_id: RowId | None = Field(
        default=None,
        description="With sequential unmasking: the candidate the reviewer is shown (required)",
    )

    @model_validator(mode="after")
    def a_candidate_goes_with_unmasking(self) -> ReviewCreate:
        if self.sequential_unmasking and self.person_id is None:
            raise ValueError("sequential unmasking needs person_id: the candidate to show")
        if not self.sequential_unmasking and self.person_id is not None:
            raise ValueError("person_id goes with sequential_unmasking: true")
        return self


class ReviewOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    case_id: int | None = None
    search_id: int
    reviewer_key_id: int
    reviewer: str = Field(description="The reviewing key's owner")
    requested_by_key_id: int
    requested_by: str
    created_at: datetime
    state: Literal["open", "completed", "withdrawn"] = Field(
        description="open until the reviewer concludes on the search (completed) or the request "
        "is withdrawn"
    )
    completed_at: datetime | None
    withdrawn_at: datetime | None
    withdrawn_by: str | None = Field(description="Who withdrew it: the asker or an admin")
    sequential_unmasking: bool = False
    person_id: int | None = Field(
        default=None, description="With sequential unmasking: the candidate the reviewer is shown"
    )


class ReviewWaiting(ReviewOut):
    case_number: str
    number_in_case: int = Field(
        description="The search's place among its case's searches, oldest first (1 = the first); "
        'the case page calls it "Search N (#search_id)"'
    )


class CaseDetail(CaseOut):
    searches: list[SearchOut] = Field(description="Searches run in the case, oldest first")
    conclusions: Conclusions
    reviews: list[ReviewOut]
