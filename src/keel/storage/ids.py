"""Salesforce-style record ids over integer primary keys.

A public id is the object's 3-character key prefix, then the integer in base 62 padded to 12 characters (15 in all),
then a 3-character checksum that makes the id safe in case-insensitive places (18 in all). The database only ever
sees the integer; the prefix tells which object an id belongs to, so a wrong-object id is caught at decode time.
"""

from __future__ import annotations

from functools import lru_cache

from keel.errors import MalformedIdError

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_INDEX = {c: i for i, c in enumerate(ALPHABET)}
_CHECKSUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
BODY_LENGTH = 12
MAX_INT = 62**BODY_LENGTH - 1


_UPPER_BITS = str.maketrans({c: ("1" if "A" <= c <= "Z" else "0") for c in ALPHABET})


def checksum(id15: str) -> str:
    """The 3-character suffix: one character per 5-character chunk, a bit per upper-case letter (the first
    character of a chunk is the lowest bit)."""
    bits = id15.translate(_UPPER_BITS)
    if len(bits.strip("01")) or len(bits) != 15:
        raise MalformedIdError(f"Invalid id: {id15!r}.")
    return _CHECKSUM[int(bits[4::-1], 2)] + _CHECKSUM[int(bits[9:4:-1], 2)] + _CHECKSUM[int(bits[14:9:-1], 2)]


def to18(id15: str) -> str:
    return id15 + checksum(id15)


def _encode_full(prefix: str, n: int) -> str:
    if not 0 <= n <= MAX_INT:
        raise ValueError(f"id {n} is out of range")
    digits = []
    while n:
        n, r = divmod(n, 62)
        digits.append(ALPHABET[r])
    body = "".join(reversed(digits)).rjust(BODY_LENGTH, "0")
    return to18(prefix + body)


_PAIRS = [a + b for a in ALPHABET for b in ALPHABET]
_PAIR_BITS = [(1 if "A" <= p[0] <= "Z" else 0) | (2 if "A" <= p[1] <= "Z" else 0) for p in _PAIRS]
_LOW = 3844 * 3844
# A record's owner column holds a User pk or, for a record owned by a queue, the queue's Group pk plus
# ``QUEUE_OWNER`` (the group principal of ``security/principals.py``). Every owner id is read back through
# ``encode("005", n)``, which turns those into the queue's ``00G`` id, so read paths need no owner special case;
# ``split_owner`` is the write side.
QUEUE_OWNER = 1 << 40


@lru_cache(maxsize=4096)
def _head(prefix: str, hi: int) -> tuple[str, str, int]:
    """The first 11 characters of an id (prefix + 8 body digits), its first two checksum characters, and the
    upper-case bit of its 11th character: shared by every id in one block of 3844² keys."""
    full = _encode_full(prefix, hi * _LOW)
    return full[:11], full[15:17], 1 if "A" <= full[10] <= "Z" else 0


def encode(prefix: str, n: int) -> str:
    """The 18-character id of integer ``n`` on the object with key ``prefix``.

    Ids written or read together share their high digits, so only the last four digits and the last checksum
    character are computed per id (the property tests check it against the plain algorithm)."""
    if n >= QUEUE_OWNER and prefix == "005" and n < 2 * QUEUE_OWNER:
        prefix, n = "00G", n - QUEUE_OWNER
    if not 0 <= n <= MAX_INT:
        raise ValueError(f"id {n} is out of range")
    head, c01, hb = _head(prefix, n // _LOW)
    p1, p2 = divmod(n % _LOW, 3844)
    return head + _PAIRS[p1] + _PAIRS[p2] + c01 + _CHECKSUM[hb | _PAIR_BITS[p1] << 1 | _PAIR_BITS[p2] << 3]


_PAIR_INDEX = {p: i for i, p in enumerate(_PAIRS)}


class CanonicalId(str):
    """An id known to be the canonical 18-character form: a lookup coercer checked it, or Keel encoded it.

    Only Keel's own code makes one (values parsed from requests are plain ``str``), so the row builder can take
    its integer with ``trusted`` instead of checking it again, and a coercer given one returns it at once. It is
    a ``str`` in every other respect (equality, hashing, JSON, database drivers)."""

    __slots__ = ()


def trusted(public_id: CanonicalId) -> tuple[str, int]:
    """``(prefix, integer)`` of a ``CanonicalId``, without the checks ``split`` makes."""
    pi = _PAIR_INDEX
    return public_id[:3], ((((pi[public_id[3:5]] * 3844 + pi[public_id[5:7]]) * 3844 + pi[public_id[7:9]]) * 3844
                            + pi[public_id[9:11]]) * 3844 + pi[public_id[11:13]]) * 3844 + pi[public_id[13:15]]


def canonical(public_id: str) -> tuple[str, int] | None:
    """``(prefix, integer)`` when ``public_id`` is exactly the 18-character id Keel itself writes, else None.

    Ids that a save hands to another save (a flow's child pointing at its parent, an owner, a related record)
    are in this form, so six pair lookups and one ``encode`` (a cached head plus a few characters) replace the
    per-character decode and the checksum: comparing the re-encoding with the input checks every character,
    case and the checksum at once. Anything else goes through ``split``."""
    if len(public_id) != 18:
        return None
    pi, pi_chars = _PAIR_INDEX, _INDEX
    try:
        n = ((((pi[public_id[3:5]] * 3844 + pi[public_id[5:7]]) * 3844 + pi[public_id[7:9]]) * 3844
              + pi[public_id[9:11]]) * 3844 + pi[public_id[11:13]]) * 3844 + pi[public_id[13:15]]
    except KeyError:
        return None
    prefix = public_id[:3]
    if prefix[0] not in pi_chars or prefix[1] not in pi_chars or prefix[2] not in pi_chars:
        return None
    return (prefix, n) if encode(prefix, n) == public_id else None


@lru_cache(maxsize=8192)
def parse(public_id: str) -> tuple[str, int, bool]:
    """``split`` plus whether ``public_id`` already is the canonical 18-character form.

    Cached: the same ids (owners, parents) recur across the rows of a batch, and a save decodes each lookup
    value twice (the coercer checks it, the row builder stores its integer): the second is a cache hit."""
    if not isinstance(public_id, str) or len(public_id) not in (15, 18):
        raise MalformedIdError(f"Invalid id: {public_id!r}. An id has 15 or 18 characters.")
    known = canonical(public_id)
    if known is not None:
        return known[0], known[1], True
    prefix, n = _decode(public_id)
    return prefix, n, False


def split(public_id: str) -> tuple[str, int]:
    """Return ``(prefix, integer)`` for a 15- or 18-character id, checking length, characters and checksum."""
    p = parse(public_id)
    return p[0], p[1]


def _decode(public_id: str) -> tuple[str, int]:
    """The full decode: 15-character ids, case-folded 18-character ids, and the errors for everything else."""
    id15 = public_id[:15]
    if len(public_id) == 18:
        suffix = public_id[15:]
        if suffix.upper() != checksum(id15):
            # The suffix encodes the case of the first 15 characters; a case-folded id can be repaired from it.
            id15 = _restore_case(id15, suffix.upper())
    value = 0
    for c in id15[3:]:
        i = _INDEX.get(c)
        if i is None:
            raise MalformedIdError(f"Invalid id: {public_id!r} contains {c!r}.")
        value = value * 62 + i
    return id15[:3], value


def split_owner(public_id: str) -> tuple[str, int]:
    """``split`` for an OwnerId: a queue's ``00G`` id gives its owner-column integer (``QUEUE_OWNER`` + pk)."""
    prefix, n = split(public_id)
    return (prefix, QUEUE_OWNER + n) if prefix == "00G" else (prefix, n)


def decode(public_id: str, prefix: str) -> int:
    """The integer behind ``public_id``, which must belong to the object with key ``prefix``."""
    got, value = split(public_id)
    if got != prefix:
        raise MalformedIdError(f"Invalid id: {public_id!r} does not belong to this object (key prefix {prefix}).")
    return value


def _restore_case(id15: str, suffix: str) -> str:
    """Rebuild the case of a case-folded 15-character id from its checksum, or reject the id."""
    chars = list(id15)
    for k in range(3):
        bits = _CHECKSUM.find(suffix[k])
        if bits < 0:
            raise MalformedIdError(f"Invalid id: {id15 + suffix!r} has a bad checksum.")
        for j in range(5):
            c = chars[k * 5 + j]
            if not c.isalpha():
                if bits & (1 << j):
                    raise MalformedIdError(f"Invalid id: {id15 + suffix!r} has a bad checksum.")
                continue
            chars[k * 5 + j] = c.upper() if bits & (1 << j) else c.lower()
    restored = "".join(chars)
    if checksum(restored) != suffix:
        raise MalformedIdError(f"Invalid id: {id15 + suffix!r} has a bad checksum.")
    return restored
