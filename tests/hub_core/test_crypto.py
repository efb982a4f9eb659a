"""Envelope encryption: round trips, tampering, wrong keys, rotation."""

from __future__ import annotations

import base64
import json

import pytest

from hub.crypto import (
    DecryptionError,
    Keyring,
    KeyringError,
    SealedBatch,
    associated_data,
    open_batch,
    rewrap,
    seal,
)

AAD = associated_data("upload-1", "org-1")


def test_round_trip_and_fresh_data_key_per_batch() -> None:
    ring = Keyring.generate()
    first = seal(ring, b"parquet bytes", AAD)
    second = seal(ring, b"parquet bytes", AAD)
    assert open_batch(ring, first, AAD) == b"parquet bytes"
    assert first.ciphertext != second.ciphertext
    assert first.wrapped_key != second.wrapped_key
    assert b"parquet" not in first.ciphertext


@pytest.mark.parametrize("part", ["ciphertext", "nonce", "wrapped_key"])
def test_any_flipped_bit_fails_loudly(part: str) -> None:
    ring = Keyring.generate()
    sealed = seal(ring, b"x" * 100, AAD)
    damaged = bytearray(getattr(sealed, part))
    damaged[len(damaged) // 2] ^= 0x01
    tampered = SealedBatch(**{**sealed.__dict__, part: bytes(damaged)})
    with pytest.raises(DecryptionError):
        open_batch(ring, tampered, AAD)


def test_batch_bound_to_its_upload_and_partner() -> None:
    ring = Keyring.generate()
    sealed = seal(ring, b"records", AAD)
    with pytest.raises(DecryptionError):
        open_batch(ring, sealed, associated_data("upload-1", "org-2"))
    with pytest.raises(DecryptionError):
        open_batch(ring, sealed, associated_data("upload-2", "org-1"))


def test_wrong_key_fails_loudly() -> None:
    sealed = seal(Keyring.generate("k1"), b"records", AAD)
    with pytest.raises(DecryptionError):
        open_batch(Keyring.generate("k1"), sealed, AAD)
    with pytest.raises(KeyringError, match="no key 'k1'"):
        open_batch(Keyring.generate("other"), sealed, AAD)


def test_rotation_rewraps_without_touching_data() -> None:
    ring = Keyring.generate("k1")
    sealed = seal(ring, b"records", AAD)
    rotated = ring.with_new_active_key("k2")
    wrapped, key_id = rewrap(rotated, sealed.wrapped_key, sealed.key_id, AAD)
    assert key_id == "k2"
    moved = SealedBatch(sealed.ciphertext, sealed.nonce, wrapped, key_id)
    assert open_batch(rotated, moved, AAD) == b"records"
    only_new = Keyring(active="k2", keys={"k2": rotated.keys["k2"]})
    assert open_batch(only_new, moved, AAD) == b"records"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "must be JSON"),
        ('{"active": "k1", "keys": {}}', "active key 'k1' is not in the keyring"),
        ('{"active": "k1", "keys": {"k1": "%%%"}}', "not valid base64"),
        (json.dumps({"active": "k", "keys": {"k": base64.b64encode(b"short").decode()}}), "32"),
    ],
)
def test_malformed_keyrings_are_refused_readably(text: str, message: str) -> None:
    with pytest.raises(KeyringError, match=message):
        Keyring.from_json(text)
