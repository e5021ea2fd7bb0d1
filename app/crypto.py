"""Authenticated encryption under keys derived from ``SECRET_KEY`` (one place for it).

What the database must hold but no one with only its files, WAL or backups may read
(a rater's pending submission, a private link waiting in the outbox, the rating
cookie's invitation) is sealed here with AES-256-GCM. Each use gets its own key,
derived with HKDF-SHA256 from ``SECRET_KEY``, a purpose string and an optional salt, so
one key never serves two purposes and a leaked derived key opens nothing else.
"""

from __future__ import annotations

import base64
import functools
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

NONCE_BYTES = 12
KEY_CHECK_LABEL = b"peer360 key check"


class DecryptionFailed(ValueError):
    """The data was altered, or sealed under another ``SECRET_KEY``."""


@functools.lru_cache(maxsize=1024)
def derive_key(secret_key: str, purpose: str, *, salt: bytes | None = None) -> bytes:
    """A 256-bit key for one purpose (and one salt, e.g. a cycle's). Kept once derived:
    every rating submit needs two, and the process holds ``SECRET_KEY`` anyway."""
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=salt, info=f"peer360/{purpose}".encode()
    ).derive(secret_key.encode())


@functools.lru_cache(maxsize=1024)
def _aead(key: bytes) -> AESGCM:
    # Kept like the derived keys themselves: the close opens 42,000 pool rows under one.
    return AESGCM(key)


def encrypt(key: bytes, plaintext: bytes, *, context: bytes = b"") -> bytes:
    """``nonce || ciphertext || tag``; ``context`` is authenticated, not stored."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + _aead(key).encrypt(nonce, plaintext, context)


def decrypt(key: bytes, sealed: bytes, *, context: bytes = b"") -> bytes:
    # A view: slicing the bytes would copy each sealed row (10 KiB a rater) once more.
    view = memoryview(sealed)
    try:
        return _aead(key).decrypt(view[:NONCE_BYTES], view[NONCE_BYTES:], context)
    except (InvalidTag, ValueError) as exc:
        raise DecryptionFailed from exc


def encrypt_text(key: bytes, plaintext: str, *, context: bytes = b"") -> str:
    """:func:`encrypt` for text columns: URL-safe base64, no padding."""
    sealed = encrypt(key, plaintext.encode(), context=context)
    return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode()


def decrypt_text(key: bytes, sealed: str, *, context: bytes = b"") -> str:
    try:
        raw = base64.urlsafe_b64decode(sealed + "=" * (-len(sealed) % 4))
    except (ValueError, TypeError) as exc:
        raise DecryptionFailed from exc
    return decrypt(key, raw, context=context).decode()


def key_check(key: bytes) -> bytes:
    """A short fingerprint that tells whether a key is the one data was sealed under,
    without revealing the key (stored beside the data, compared at start-up)."""
    return hmac.digest(key, KEY_CHECK_LABEL, "sha256")[:16]


def pad(data: bytes, size: int) -> bytes:
    """``data`` behind a 4-byte length, zero-filled to ``size`` bytes (``size`` must fit)."""
    framed = len(data).to_bytes(4, "big") + data
    if len(framed) > size:
        raise ValueError("padding size too small")
    return framed + bytes(size - len(framed))


def unpad(padded: bytes) -> bytes:
    length = int.from_bytes(padded[:4], "big")
    if length > len(padded) - 4:
        raise DecryptionFailed("bad padding")
    return padded[4 : 4 + length]
