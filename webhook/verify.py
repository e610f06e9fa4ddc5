"""Signature checks on raw request bytes, one small verifier per provider.

Each raises `InvalidSignatureError`; the view maps it to 401 without detail. GME's
key belongs to a BizID inside the body, so the body is checked against every
configured key before anything parses it; the parsed BizID must then be one whose
key matched.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping

SHA1_DIGEST_SIZE = 20


class InvalidSignatureError(Exception):
    """The request is not signed by a key we hold (or its signature window passed)."""


def _decode_digest(signature: str, size: int) -> bytes:
    """Accept hex (either case) or base64 (standard or URL-safe) encodings of a digest."""
    text = signature.strip()
    if len(text) == size * 2:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    unpadded = text.replace("-", "+").replace("_", "/").rstrip("=")
    try:
        decoded = base64.b64decode(unpadded + "=" * (-len(unpadded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidSignatureError("signature is neither hex nor base64") from None
    if len(decoded) != size:
        raise InvalidSignatureError("signature has the wrong length")
    return decoded


def gme_signature(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, body, hashlib.sha1).digest()


def verify_gme(body: bytes, signature: str | None, keys: Mapping[int, bytes]) -> frozenset[int]:
    """HMAC-SHA1 of the raw body with an application's SecretKey, hex or base64.

    Returns the BizIDs whose key produced the signature; every key is tried, each
    compared in constant time, so timing says nothing about which one matched.
    """
    if not signature or not keys:
        raise InvalidSignatureError("missing signature or no keys configured")
    given = _decode_digest(signature, SHA1_DIGEST_SIZE)
    matched = frozenset(
        biz for biz, key in keys.items() if hmac.compare_digest(given, gme_signature(key, body))
    )
    if not matched:
        raise InvalidSignatureError("signature does not match")
    return matched


def css_sign(key: str, t: int) -> str:
    return hashlib.md5((key + str(t)).encode(), usedforsecurity=False).hexdigest()


def verify_css(
    sign: object,
    t: object,
    key: str | None,
    *,
    now: float | None = None,
    max_future_seconds: float = 600 + 300,
) -> None:
    """`sign` = lowercase hex MD5(key + str(t)); `t` is an expiry that must lie ahead, but
    not further than the vendor's 10 minutes plus clock skew."""
    if key is None or not isinstance(sign, str) or isinstance(t, bool) or not isinstance(t, int):
        raise InvalidSignatureError("missing or malformed sign/t")
    current = time.time() if now is None else now
    if t <= current or t > current + max_future_seconds:
        raise InvalidSignatureError("t is outside the allowed window")
    if not hmac.compare_digest(sign.encode(), css_sign(key, t).encode()):
        raise InvalidSignatureError("sign does not match")


def safe_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers worth keeping with a stored callback: nothing that carries a secret."""
    dropped = {"signature", "sign", "authorization", "cookie", "proxy-authorization"}
    return {k: v for k, v in headers.items() if k.lower() not in dropped and len(v) < 1024}
