"""The original store's write beside the caller's work (`OriginalStore.storing`): the bytes are on
disk when its wait returns, a failed write surfaces there, and a caller that fails meanwhile still
leaves nothing behind once its hold on the digest ends."""

from __future__ import annotations

import pytest

from app.core.errors import InsufficientStorage
from app.storage.originals import PENDING, OriginalStore, sha256_of

DATA = b"radiograph bytes"
SHA256 = sha256_of(DATA)


def test_the_original_is_on_disk_once_the_wait_returns(tmp_path) -> None:
    store = OriginalStore(tmp_path)
    with store.storing(SHA256, DATA, lambda _: False) as writing:
        assert writing.stored() is True  # new
        assert store.read(SHA256) == DATA
        writing.needed = True
    with store.storing(SHA256, DATA, lambda _: True) as writing:
        assert writing.stored() is False  # already there
    assert store.read(SHA256) == DATA
    assert list((tmp_path / PENDING).iterdir()) == []


def test_a_caller_that_fails_meanwhile_leaves_nothing_behind(tmp_path) -> None:
    store = OriginalStore(tmp_path)
    with (
        pytest.raises(RuntimeError, match="the forward pass failed"),
        store.storing(SHA256, DATA, lambda _: False),
    ):
        raise RuntimeError("the forward pass failed")
    assert not store.exists(SHA256)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_a_store_that_cannot_take_the_original_says_so_at_the_wait(tmp_path) -> None:
    store = OriginalStore(tmp_path)
    (tmp_path / SHA256[:2]).write_bytes(b"")  # where the original's folder would go
    with (
        store.storing(SHA256, DATA, lambda _: False) as writing,
        pytest.raises(InsufficientStorage, match="could not be stored"),
    ):
        writing.stored()
    assert list((tmp_path / PENDING).iterdir()) == []  # the hold ended
