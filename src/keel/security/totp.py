"""Time-based one-time passwords (RFC 6238 over RFC 4226 HOTP) with the standard library only.

HMAC-SHA1, 30-second steps, 6 digits: what every authenticator app expects from an ``otpauth://`` URI.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from urllib.parse import quote

STEP = 30
DIGITS = 6


def new_secret() -> str:
    """160 random bits, base32 without padding (RFC 4226 recommends ≥ 128)."""
    return base64.b32encode(secrets.token_bytes(20)).decode().rstrip("=")


def _key(secret: str) -> bytes:
    s = secret.strip().replace(" ", "").upper()
    return base64.b32decode(s + "=" * (-len(s) % 8))


def hotp(secret: str, counter: int, digits: int = DIGITS) -> str:
    mac = hmac.new(_key(secret), struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    code = (struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF) % (10 ** digits)
    return str(code).zfill(digits)


def totp(secret: str, at: float, digits: int = DIGITS) -> str:
    return hotp(secret, int(at // STEP), digits)


def verify(secret: str, code: str, at: float, *, window: int = 1) -> int | None:
    """The matching time step (to refuse replays of the same code), or None. Accepts ±``window`` steps of drift."""
    code = code.strip().replace(" ", "")
    if not code.isdigit() or len(code) != DIGITS:
        return None
    now = int(at // STEP)
    for step in range(now - window, now + window + 1):
        if hmac.compare_digest(hotp(secret, step), code):
            return step
    return None


def provisioning_uri(secret: str, username: str, issuer: str = "Keel") -> str:
    return (f"otpauth://totp/{quote(issuer)}:{quote(username)}?secret={secret}&issuer={quote(issuer)}"
            f"&algorithm=SHA1&digits={DIGITS}&period={STEP}")
