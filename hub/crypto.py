"""Envelope encryption of record batches: AES-GCM under a fresh data key per upload.

Each data key is wrapped (AES-GCM too) by a key-encryption key (KEK) from the keyring. The
keyring lives outside the database, so a copy of the database alone reads nothing. Rotating the
KEK re-wraps the data keys and never touches the data.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hub.domain_errors import ServiceUnavailable

if TYPE_CHECKING:
    # Only the app's settings, instance path and extensions are read: services and jobs import
    # this module without the web framework.
    from flask import Flask

NONCE_BYTES = 12
KEY_BYTES = 32


class KeyringError(Exception):
    """Raised when the keyring is missing, malformed or lacks a key that is needed."""


class DecryptionError(Exception):
    """Raised when a batch or data key fails authentication: tampering or the wrong key."""


@dataclass(frozen=True)
class Keyring:
    """The key-encryption keys by id, and which one wraps new data keys."""

    active: str
    keys: dict[str, bytes]

    @classmethod
    def from_json(cls, text: str) -> Keyring:
        """Parse ``{"active": id, "keys": {id: base64 of 32 bytes}}``.

        >>> ring = Keyring.from_json('{"active": "k1", "keys": {"k1": "' + "A" * 43 + '="}}')
        >>> ring.active, len(ring.keys["k1"])
        ('k1', 32)
        """
        try:
            document = json.loads(text)
            active = document["active"]
            raw = document["keys"]
        except (ValueError, KeyError, TypeError):
            raise KeyringError(
                'the keyring must be JSON of the form {"active": id, "keys": {id: base64}}'
            ) from None
        keys: dict[str, bytes] = {}
        for key_id, encoded in raw.items():
            try:
                key = base64.b64decode(encoded, validate=True)
            except (binascii.Error, TypeError):
                raise KeyringError(f"keyring key {key_id!r} is not valid base64") from None
            if len(key) != KEY_BYTES:
                raise KeyringError(f"keyring key {key_id!r} must be {KEY_BYTES} bytes")
            keys[key_id] = key
        if active not in keys:
            raise KeyringError(f"the active key {active!r} is not in the keyring")
        return cls(active=active, keys=keys)

    def to_json(self) -> str:
        """Serialise the keyring (for writing the keyring file)."""
        return json.dumps(
            {
                "active": self.active,
                "keys": {k: base64.b64encode(v).decode() for k, v in self.keys.items()},
            },
            indent=2,
        )

    @staticmethod
    def generate(key_id: str = "k1") -> Keyring:
        """Return a keyring with one fresh random key."""
        return Keyring(active=key_id, keys={key_id: AESGCM.generate_key(bit_length=256)})

    def with_new_active_key(self, key_id: str) -> Keyring:
        """Return a keyring with a fresh key ``key_id`` made active; old keys are kept."""
        if key_id in self.keys:
            raise KeyringError(f"key id {key_id!r} is already in the keyring")
        keys = dict(self.keys)
        keys[key_id] = AESGCM.generate_key(bit_length=256)
        return Keyring(active=key_id, keys=keys)

    def only_active(self) -> Keyring:
        """Return the keyring without its retired keys (every key but the active one).

        >>> ring = Keyring.generate("k1").with_new_active_key("k2").only_active()
        >>> ring.active, sorted(ring.keys)
        ('k2', ['k2'])
        """
        return Keyring(active=self.active, keys={self.active: self.keys[self.active]})


@dataclass(frozen=True)
class SealedBatch:
    """What is stored for one batch: ciphertext, nonce, the wrapped data key and its KEK id."""

    ciphertext: bytes
    nonce: bytes
    wrapped_key: bytes
    key_id: str


def associated_data(upload_id: str, organisation_id: str) -> bytes:
    """Bind a batch to its upload and partner: a batch moved to another row fails to open."""
    return f"ctdhub:record-batch:v1:upload={upload_id}:org={organisation_id}".encode()


def wrap_key(keyring: Keyring, data_key: bytes, aad: bytes) -> tuple[bytes, str]:
    """Wrap ``data_key`` under the active KEK; return (nonce + ciphertext, key id)."""
    nonce = os.urandom(NONCE_BYTES)
    wrapped = AESGCM(keyring.keys[keyring.active]).encrypt(nonce, data_key, aad)
    return nonce + wrapped, keyring.active


def unwrap_key(keyring: Keyring, wrapped: bytes, key_id: str, aad: bytes) -> bytes:
    """Unwrap a data key; raise :class:`DecryptionError` if it was tampered with."""
    if key_id not in keyring.keys:
        raise KeyringError(f"the keyring has no key {key_id!r} to unwrap this batch's data key")
    try:
        return AESGCM(keyring.keys[key_id]).decrypt(
            wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], aad
        )
    except InvalidTag:
        raise DecryptionError("a data key failed authentication (tampered or wrong key)") from None


def seal(keyring: Keyring, plaintext: bytes, aad: bytes) -> SealedBatch:
    """Encrypt ``plaintext`` under a fresh data key wrapped by the active KEK.

    >>> ring = Keyring.generate()
    >>> sealed = seal(ring, b"records", b"aad")
    >>> open_batch(ring, sealed, b"aad")
    b'records'
    """
    data_key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = AESGCM(data_key).encrypt(nonce, plaintext, aad)
    wrapped, key_id = wrap_key(keyring, data_key, aad)
    return SealedBatch(ciphertext=ciphertext, nonce=nonce, wrapped_key=wrapped, key_id=key_id)


def open_batch(keyring: Keyring, sealed: SealedBatch, aad: bytes) -> bytes:
    """Decrypt a sealed batch; raise :class:`DecryptionError` on any tampering or wrong key."""
    data_key = unwrap_key(keyring, sealed.wrapped_key, sealed.key_id, aad)
    try:
        return AESGCM(data_key).decrypt(sealed.nonce, sealed.ciphertext, aad)
    except InvalidTag:
        raise DecryptionError(
            "a record batch failed authentication (tampered or wrong key)"
        ) from None


def rewrap(keyring: Keyring, wrapped: bytes, key_id: str, aad: bytes) -> tuple[bytes, str]:
    """Re-wrap a data key under the active KEK, without touching the data it protects."""
    return wrap_key(keyring, unwrap_key(keyring, wrapped, key_id, aad), aad)


def keyring_path(app: Flask) -> Path:
    """Return where the app's keyring file lives."""
    name: str = app.config["KEYRING_FILE"]
    return Path(app.instance_path) / name


def load_keyring(app: Flask) -> Keyring | None:
    """Read the keyring from the KEYRING setting or the keyring file; None if neither exists."""
    if app.config["KEYRING"]:
        return Keyring.from_json(app.config["KEYRING"])
    path = keyring_path(app)
    if path.exists():
        return Keyring.from_json(path.read_text())
    return None


def init_app(app: Flask) -> None:
    """Load and check the keyring at start, so a malformed one fails fast."""
    app.extensions["ctdhub.keyring_stamp"] = _stamp(app)
    app.extensions["ctdhub.keyring"] = load_keyring(app)


def _stamp(app: Flask) -> tuple[int, int] | None:
    """Identify the keyring file's current version (None: no file, or a KEYRING setting)."""
    if app.config["KEYRING"]:
        return None
    try:
        status = keyring_path(app).stat()
    except FileNotFoundError:
        return None
    return status.st_ino, status.st_mtime_ns


def keyring(app: Flask) -> Keyring:
    """Return ``app``'s keyring; without one, refuse (503) and say how to make one.

    A keyring file replaced by ``ctdhub keys rotate`` (another process) is read again, so a
    running hub seals new uploads under the new key at once and never under a retired one.
    """
    stamp = _stamp(app)
    if stamp != app.extensions.get("ctdhub.keyring_stamp"):
        app.extensions["ctdhub.keyring"] = load_keyring(app)
        app.extensions["ctdhub.keyring_stamp"] = stamp
    ring: Keyring | None = app.extensions.get("ctdhub.keyring")
    if ring is None:
        raise ServiceUnavailable(
            "no key-encryption key is configured: run `ctdhub keys init` or set CTDHUB_KEYRING"
        )
    return ring


def write_keyring(app: Flask, ring: Keyring) -> Path:
    """Write ``ring`` to the keyring file with owner-only permissions, atomically.

    The previous file's bytes are overwritten with zeros once the new file has replaced it, so
    a key left out (retired) is gone from this file system's copy, as far as the operating
    system lets a program reach (a journal or a copy-on-write disk may keep older blocks).
    """
    path = keyring_path(app)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(ring.to_json())
        handle.flush()
        os.fsync(handle.fileno())
    previous = os.open(path, os.O_RDWR) if path.exists() else None
    os.replace(tmp, path)
    if previous is not None:
        # Keys left out of the new file (retired ones) must not survive in the old file's
        # blocks: overwrite them, now that the new file is safely in place.
        _overwrite(previous)
    app.extensions["ctdhub.keyring"] = ring
    app.extensions["ctdhub.keyring_stamp"] = _stamp(app)
    return path


def _overwrite(fd: int) -> None:
    try:
        size = os.fstat(fd).st_size
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, b"\0" * size)
        os.fsync(fd)
    finally:
        os.close(fd)
