"""The key that signs the audit chain's checkpoints (app/audit/checkpoints.py): Ed25519.

By default the key lives in the data directory (`<data_dir>/audit/signing_key.pem`) and is made
on first use; RADMATCH_AUDIT_SIGNING_KEY names a key kept elsewhere (a mount the database's
owner cannot read, say), which must then exist. The public key is what a verifier needs: `radmatch
audit public-key` prints it, GET /api/v1/audit/public-key serves it, and its fingerprint (sha256
of the 32 raw bytes, hex) names it in every checkpoint."""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from app.core.config import Settings

DEFAULT_KEY_NAME = "signing_key.pem"
KEY_FILE_MODE = 0o600


class SigningKeyError(RuntimeError):
    """The signing key (or a public key to verify with) cannot be read or used."""


@dataclass(frozen=True)
class AuditSigner:
    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)

    def sign(self, data: bytes) -> bytes:
        return self.private_key.sign(data)


def fingerprint(public_key: Ed25519PublicKey) -> str:
    """sha256 (hex) of the raw 32-byte public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def public_pem(public_key: Ed25519PublicKey) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def signature_valid(public_key: Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
    try:
        public_key.verify(signature, data)
    except InvalidSignature:
        return False
    return True


def signing_key_path(settings: Settings) -> Path:
    return settings.audit_signing_key or settings.data_dir / "audit" / DEFAULT_KEY_NAME


def load_signer(settings: Settings) -> AuditSigner:
    """The signing key: the configured one, which must exist, or the data directory's, made now
    if there is none yet."""
    path = signing_key_path(settings)
    if settings.audit_signing_key is None and not path.exists():
        _create_key_file(path)
    return read_signer(path)


def read_signer(path: Path) -> AuditSigner:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise SigningKeyError(
            f"cannot read the audit signing key {path} (RADMATCH_AUDIT_SIGNING_KEY): "
            f"{error.strerror or error}"
        ) from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as error:
        raise SigningKeyError(
            f"the audit signing key {path} is not an unencrypted PEM private key: {error}"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"the audit signing key {path} is not an Ed25519 key")
    return AuditSigner(key)


def existing_public_key(settings: Settings) -> Ed25519PublicKey | None:
    """The signing key's public half, without making a key when there is none."""
    path = signing_key_path(settings)
    if settings.audit_signing_key is None and not path.exists():
        return None
    return read_signer(path).public_key


def read_public_key(path: Path) -> Ed25519PublicKey:
    """A public key from a PEM file (as `radmatch audit public-key` prints it)."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise SigningKeyError(f"cannot read the public key {path}: {error.strerror}") from None
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as error:
        raise SigningKeyError(f"{path} is not a PEM public key: {error}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"the public key {path} is not an Ed25519 key")
    return key


def _create_key_file(path: Path) -> None:
    """A new key at `path`, readable by this user only: written to a temporary name, fsynced,
    then linked into place, so that of two processes starting at once the second keeps the
    first's key rather than replacing it (a rename would, and orphan what the first signed)."""
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
    try:
        os.fchmod(descriptor, KEY_FILE_MODE)  # whatever the umask
        os.write(descriptor, pem)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass  # another process made it first: use theirs
    except OSError:  # a file system without hard links
        if not path.exists():
            os.rename(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
