"""Password hashing (argon2id) and the password policy: at least 12 characters, not a commonly breached
password, no composition rules (NIST SP 800-63B and ASVS 5.0 V6)."""

from __future__ import annotations

from functools import cache
from importlib import resources

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from keel.errors import KeelError

MIN_LENGTH = 12
_HASHER = PasswordHasher()  # argon2id with the library's current recommended parameters


@cache
def _breached() -> frozenset[str]:
    text = resources.files("keel.security").joinpath("data/common-passwords.txt").read_text(encoding="utf-8")
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip())


def check_policy(password: str, *, username: str = "") -> None:
    if len(password) < MIN_LENGTH:
        raise KeelError(f"The password must be at least {MIN_LENGTH} characters long.", code="INVALID_NEW_PASSWORD")
    low = password.lower()
    if low in _breached() or (username and username.lower().split("@")[0] in low and len(low) < 20):
        raise KeelError("That password is too common or too close to the username; choose another.",
                        code="INVALID_NEW_PASSWORD")


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(hashed: str, password: str) -> bool:
    try:
        return _HASHER.verify(hashed, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(hashed: str) -> bool:
    return _HASHER.check_needs_rehash(hashed)
