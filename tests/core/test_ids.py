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


def split_of(prefix: str, n: int) -> tuple[str, int]:
    """What ``split`` reads back from ``encode(prefix, n)``. Owner columns keep a queue as QUEUE_OWNER + its Group
    pk, which encodes as the queue's 00G id (``test_a_queue_owner_reads_back_as_the_queues_group_id``)."""
    if prefix == "005" and ids.QUEUE_OWNER <= n < 2 * ids.QUEUE_OWNER:
        return "00G", n - ids.QUEUE_OWNER
    return prefix, n


@pytest.mark.parametrize(("id15", "id18"), VECTORS)
def test_checksum_vectors(id15: str, id18: str) -> None:
    assert ids.to18(id15) == id18
    assert ids.split(id18) == ids.split(id15)


@given(PREFIXES, st.integers(min_value=0, max_value=ids.MAX_INT))
def test_round_trip(prefix: str, n: int) -> None:
    public = ids.encode(prefix, n)
    prefix, n = split_of(prefix, n)
    assert len(public) == 18
    assert public[:3] == prefix
    assert ids.decode(public, prefix) == n
    assert ids.decode(public[:15], prefix) == n


@given(PREFIXES, st.integers(min_value=0, max_value=ids.MAX_INT))
def test_checksum_survives_case_changes(prefix: str, n: int) -> None:
    public = ids.encode(prefix, n)
    assert ids.split(public.upper()) == split_of(prefix, n)
    assert ids.split(public.lower()) == split_of(prefix, n)


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
    assert ids.encode(prefix, n) == ids._encode_full(*split_of(prefix, n))


@pytest.mark.parametrize("n", [0, 1, 3843, 3844**2 + 5, 10**9])
def test_a_queue_owner_reads_back_as_the_queues_group_id(n: int) -> None:
    """Owner columns hold a queue as QUEUE_OWNER + its Group pk; read as a user id it is the queue's 00G id."""
    group = ids.encode("00G", n)
    assert ids.split_owner(group) == ("00G", ids.QUEUE_OWNER + n)
    assert ids.encode("005", ids.QUEUE_OWNER + n) == group
    assert ids.split_owner(ids.encode("005", n)) == ("005", n)
    assert ids.encode("005", 2 * ids.QUEUE_OWNER + n).startswith("005")


@given(PREFIXES, st.integers(min_value=0, max_value=ids.MAX_INT))
def test_canonical_reads_keels_own_ids(prefix: str, n: int) -> None:
    public = ids.encode(prefix, n)
    assert ids.canonical(public) == split_of(prefix, n) == ids._decode(public)
    assert ids.canonical(public[:15]) is None  # 15-character ids take the full decode
    if public.upper() != public:
        assert ids.canonical(public.upper()) is None  # case-folded: repaired by split, not accepted here
        assert ids.split(public.upper()) == split_of(prefix, n) == ids._decode(public.upper())


@given(st.text(alphabet=ids.ALPHABET + "!-_ ", min_size=18, max_size=18))
def test_canonical_accepts_only_what_split_accepts_unchanged(text: str) -> None:
    got = ids.canonical(text)
    if got is not None:
        assert ids._decode(text) == got
        assert ids.encode(*got) == text


def test_canonical_rejects_a_bad_checksum() -> None:
    good = ids.encode("001", 42)
    assert ids.canonical(good[:15] + "ZZZ") is None
    assert ids.canonical(good[:-1] + ("A" if good[-1] != "A" else "B")) is None


@given(PREFIXES, st.integers(min_value=0, max_value=ids.MAX_INT))
def test_a_checked_id_decodes_without_checks(prefix: str, n: int) -> None:
    checked = ids.CanonicalId(ids.encode(prefix, n))
    assert ids.trusted(checked) == split_of(prefix, n) == ids.split(checked)
    assert checked == ids.encode(prefix, n) and hash(checked) == hash(ids.encode(prefix, n))
    assert isinstance(checked, str)
