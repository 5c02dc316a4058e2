from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keel.errors import MalformedIdError
from keel.storage import ids

VECTORS = [
    ("0015000000Gv7qJ", "0015000000Gv7qJAAR"),
    ("001A0000006Vm9r", "001A0000006Vm9rIAC"),
    ("a0D30000001n7Pi", "a0D30000001n7PiEAI"),
    ("00558000001N0Ke", "00558000001N0KeAAK"),
]
PREFIXES = st.sampled_from(["001", "003", "005", "a00", "a0Z", "00D", "0PS"])


@pytest.mark.parametrize(("id15", "id18"), VECTORS)
def test_checksum_vectors(id15: str, id18: str) -> None:
    assert ids.to18(id15) == id18
    assert ids.split(id18) == ids.split(id15)


@given(PREFIXES, st.integers(min_value=0, max_value=ids.MAX_INT))
def test_round_trip(prefix: str, n: int) -> None:
    public = ids.encode(prefix, n)
    assert len(public) == 18
    assert public[:3] == prefix
    assert ids.decode(public, prefix) == n
    assert ids.decode(public[:15], prefix) == n


@given(PREFIXES, st.integers(min_value=0, max_value=ids.MAX_INT))
def test_checksum_survives_case_changes(prefix: str, n: int) -> None:
    public = ids.encode(prefix, n)
    assert ids.split(public.upper()) == (prefix, n)
    assert ids.split(public.lower()) == (prefix, n)


@pytest.mark.parametrize("bad", ["", "001", "001000000000001AA", "0010000000000001AAAA", "001000000000!01AAA"])
def test_bad_length_or_characters(bad: str) -> None:
    with pytest.raises(MalformedIdError) as e:
        ids.split(bad)
    assert e.value.code == "MALFORMED_ID"


def test_wrong_prefix_and_checksum() -> None:
    good = ids.encode("001", 42)
    with pytest.raises(MalformedIdError):
        ids.decode(good, "003")
    with pytest.raises(MalformedIdError):
        ids.split(good[:15] + "ZZZ")


@given(PREFIXES, st.integers(min_value=0, max_value=ids.MAX_INT))
def test_fast_encoder_matches_the_plain_algorithm(prefix: str, n: int) -> None:
    assert ids.encode(prefix, n) == ids._encode_full(prefix, n)
