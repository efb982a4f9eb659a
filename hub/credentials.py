"""Client credentials without the web framework: ids, secrets, their hashes, token digests.

Client secrets are kept only as Argon2id hashes (argon2-cffi) and access tokens only as SHA-256
digests. Hashes made by the hub's earlier scrypt format still verify, and are replaced by
Argon2id at the client's next good login (:func:`needs_rehash`), so no migration is needed.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# Argon2id at OWASP's lower profile (19 MiB, 2 passes, 1 lane): secrets are 256 random bits,
# so the hash is slow to blunt a stolen table, not because a secret could be guessed, and a
# cheaper hash keeps each refused guess from costing the hub much memory. The parameters are
# stored with each hash; a hash made with other ones is redone at the next good login.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
_LEGACY_SCRYPT = "scrypt$"


def new_client_id() -> str:
    """Return a fresh, unguessable client id (not a secret, but not a counter either)."""
    return "ctdhub-" + secrets.token_hex(16)


def new_secret() -> str:
    """Return a fresh client secret: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """Hash a client secret with Argon2id and a fresh salt, parameters included.

    :param secret: the plaintext secret; it is never stored.

    >>> stored = hash_secret("correct horse")
    >>> stored.startswith("$argon2id$"), "correct horse" in stored
    (True, False)
    >>> hash_secret("correct horse") == stored  # a fresh salt each time
    False
    """
    return _HASHER.hash(secret)


def verify_secret(secret: str, stored: str) -> bool:
    """Tell whether ``secret`` matches the stored hash (Argon2id, or the hub's old scrypt).

    :param secret: the secret the client presented.
    :param stored: a value made by :func:`hash_secret`, or by the hub's scrypt hashing of
        before Argon2id (verified until the client's next good login rehashes it).
    :raises ValueError: if ``stored`` is neither (a corrupt row, not a wrong secret).

    >>> stored = hash_secret("s3cret")
    >>> verify_secret("s3cret", stored), verify_secret("s3cret ", stored)
    (True, False)
    """
    if stored.startswith(_LEGACY_SCRYPT):
        return _verify_legacy_scrypt(secret, stored)
    try:
        return _HASHER.verify(stored, secret)
    except VerifyMismatchError:
        return False
    except (InvalidHashError, VerificationError):
        raise ValueError("the stored client secret hash is not an Argon2id hash") from None


def needs_rehash(stored: str) -> bool:
    """Tell whether a stored hash should be redone with the current hasher (at a good login).

    >>> needs_rehash(hash_secret("s3cret")), needs_rehash("scrypt$16384$8$1$AAAA$AAAA")
    (False, True)
    """
    return stored.startswith(_LEGACY_SCRYPT) or _HASHER.check_needs_rehash(stored)


def _verify_legacy_scrypt(secret: str, stored: str) -> bool:
    parts = stored.split("$")
    if len(parts) != 6:
        raise ValueError("the stored client secret hash is not an scrypt hash made by the hub")
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt = base64.b64decode(parts[4], validate=True)
        expected = base64.b64decode(parts[5], validate=True)
    except (ValueError, binascii.Error):
        raise ValueError("the stored client secret hash has malformed parameters") from None
    if not (n <= 2**16 and r <= 16 and p <= 4):
        # A stored row must not make one login cost more than the hub ever used.
        raise ValueError("the stored client secret hash has out-of-range parameters")
    candidate = hashlib.scrypt(
        secret.encode("utf-8"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=256 * r * n + (1 << 20),
        dklen=len(expected),
    )
    return hmac.compare_digest(candidate, expected)


@functools.cache
def dummy_hash() -> str:
    # Verified against when a client id is unknown, so that answer costs what a wrong secret
    # costs: timing must not tell which client ids exist.
    return hash_secret(secrets.token_urlsafe(32))


def token_digest(token: str) -> str:
    """Return the SHA-256 (hex) under which an access token is stored and looked up.

    >>> token_digest("abc")
    'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
