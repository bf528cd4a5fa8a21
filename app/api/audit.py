"""The audit chain's signing key: the public half, so that anyone holding a case report or a copy
of the checkpoint file can check its checkpoints (`radmatch audit verify --public-key`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from app.api import API_PREFIX
from app.api.deps import AnyKey
from app.api.schemas.audit import PublicKeyOut
from app.api.schemas.common import refusals
from app.audit.checkpointing import Checkpointer
from app.audit.signing import public_pem

router = APIRouter(prefix=f"{API_PREFIX}/audit", tags=["audit"], responses=refusals(401, 503))


def get_checkpointer(request: Request) -> Checkpointer:
    return request.app.state.checkpointer


CheckpointerDep = Annotated[Checkpointer, Depends(get_checkpointer)]


@router.get("/public-key", response_model=PublicKeyOut)
def public_key(checkpointer: CheckpointerDep, _: AnyKey) -> dict:
    """The public key that verifies the audit checkpoints, and its fingerprint (which every
    checkpoint names)."""
    signer = checkpointer.signer
    return {
        "algorithm": "Ed25519",
        "public_key_pem": public_pem(signer.public_key),
        "fingerprint": signer.fingerprint,
    }
