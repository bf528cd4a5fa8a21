"""What the audit routes answer."""

from __future__ import annotations

from pydantic import BaseModel, Field


class PublicKeyOut(BaseModel):
    algorithm: str = Field(description="Ed25519")
    public_key_pem: str = Field(description="SubjectPublicKeyInfo, PEM")
    fingerprint: str = Field(description="sha256 (hex) of the raw 32-byte public key")
