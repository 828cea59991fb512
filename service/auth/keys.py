"""Key format and hashing.

Keys are ``osk_<random>_<crc32>``: the prefix and checksum let secret scanners find a
leaked key, and let us reject a mistyped one without a database lookup. Only
``HMAC-SHA256(SECRET_KEY, key)`` is stored, so a database dump reveals no usable key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import zlib

PREFIX = "osk_"


def _checksum(body: str) -> str:
    return f"{zlib.crc32(body.encode()):08x}"


def generate_key() -> str:
    body = secrets.token_urlsafe(30).replace("_", "x").replace("-", "y")
    return f"{PREFIX}{body}_{_checksum(body)}"


def well_formed(key: str) -> bool:
    if not key.startswith(PREFIX) or key.count("_") != 2:
        return False
    body, _, crc = key[len(PREFIX) :].partition("_")
    return hmac.compare_digest(crc, _checksum(body))


def hash_key(key: str, secret: str) -> str:
    return hmac.new(secret.encode(), key.encode(), hashlib.sha256).hexdigest()


def display_prefix(key: str) -> str:
    return key[: len(PREFIX) + 6]
