import base64
import hashlib
import hmac

import pytest

from webhook.verify import InvalidSignatureError, css_sign, safe_headers, verify_css, verify_gme

BODY = b'{"BizID":1400000000,"TaskID":446946705284000000}'
KEYS = {1400000000: b"secret-a", 1400000001: b"secret-b"}


def digest(key: bytes, body: bytes = BODY) -> bytes:
    return hmac.new(key, body, hashlib.sha1).digest()


@pytest.mark.parametrize(
    "encode",
    [
        lambda d: base64.b64encode(d).decode(),
        lambda d: base64.b64encode(d).decode().rstrip("="),
        lambda d: base64.urlsafe_b64encode(d).decode(),
        lambda d: d.hex(),
        lambda d: d.hex().upper(),
    ],
    ids=["base64", "base64-unpadded", "base64-urlsafe", "hex", "HEX"],
)
def test_gme_signature_accepts_each_encoding(encode):
    assert verify_gme(BODY, encode(digest(b"secret-a")), KEYS) == {1400000000}


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        base64.b64encode(digest(b"other-key")).decode(),
        base64.b64encode(digest(b"secret-a", BODY + b" ")).decode(),
        base64.b64encode(digest(b"secret-a")[:-1]).decode(),
        "not base64 at all!",
        "zz" * 20,
    ],
    ids=["missing", "empty", "other-key", "other-body", "short", "garbage", "bad-hex"],
)
def test_gme_signature_rejects(signature):
    with pytest.raises(InvalidSignatureError):
        verify_gme(BODY, signature, KEYS)


def test_gme_signature_rejected_when_no_keys_configured():
    with pytest.raises(InvalidSignatureError):
        verify_gme(BODY, base64.b64encode(digest(b"secret-a")).decode(), {})


def test_css_sign_is_lowercase_md5_of_key_and_t():
    expected = hashlib.md5(b"key1700000000", usedforsecurity=False).hexdigest()
    assert css_sign("key", 1700000000) == expected


def test_css_verification_window():
    now = 1_700_000_000
    t = now + 600
    verify_css(css_sign("k", t), t, "k", now=now)
    with pytest.raises(InvalidSignatureError):
        verify_css(css_sign("k", now - 1), now - 1, "k", now=now)  # expired
    with pytest.raises(InvalidSignatureError):
        verify_css(css_sign("k", now + 3600), now + 3600, "k", now=now)  # too far ahead
    with pytest.raises(InvalidSignatureError):
        verify_css(css_sign("k", t).upper(), t, "k", now=now)  # case tricks
    with pytest.raises(InvalidSignatureError):
        verify_css(css_sign("k", t), str(t), "k", now=now)  # t must be an integer
    with pytest.raises(InvalidSignatureError):
        verify_css(css_sign("k", t), t, None, now=now)  # no key configured


def test_safe_headers_drop_secrets():
    kept = safe_headers({"Signature": "x", "Content-Type": "application/json", "Cookie": "c"})
    assert kept == {"Content-Type": "application/json"}
