"""DICOMweb servers to pull from, and a pull."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.api.schemas.common import Text
from app.dicom.servers import public_auth

Credential = Annotated[Text, Field(min_length=1, max_length=4096)]


class NoAuth(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["none"]


class BasicAuth(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["basic"]
    username: Credential
    password: Credential


class BearerAuth(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["bearer"]
    token: Credential


class HeaderAuth(BaseModel):
    """A header sent with every request: an API key, say."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["header"]
    name: Annotated[Text, Field(min_length=1, max_length=64, description="e.g. X-API-Key")]
    value: Credential


Auth = Annotated[NoAuth | BasicAuth | BearerAuth | HeaderAuth, Field(discriminator="type")]


class DicomWebServerCreate(BaseModel):
    """A DICOMweb server radiographs can be pulled from: `base_url` is its root, where QIDO-RS
    answers /studies; `issuer` says whose PatientIDs it holds (gallery people are
    "<issuer>:<PatientID>")."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[Text, Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
    base_url: Annotated[Text, Field(min_length=1, max_length=2000)]
    auth: Auth = NoAuth(type="none")
    issuer: Annotated[Text, Field(min_length=1, max_length=64)]


class DicomWebServerOut(BaseModel):
    """A registered server; its auth without the password, token or header value."""

    id: int
    name: str
    base_url: str
    auth: dict[str, str]
    issuer: str
    created_at: datetime

    @model_validator(mode="before")
    @classmethod
    def without_secrets(cls, server: Any) -> Any:
        if not isinstance(server, dict):
            server = {name: getattr(server, name) for name in cls.model_fields}
        return {**server, "auth": public_auth(server["auth"])}


class PullCreate(BaseModel):
    """Whose radiographs to pull: a PatientID as the server knows it, matched exactly."""

    model_config = ConfigDict(extra="forbid")

    patient_id: Annotated[Text, Field(min_length=1, max_length=64)]
