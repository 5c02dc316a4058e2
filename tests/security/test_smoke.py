from tests.security.conftest import Recruiting


def test_fixture_builds(recruiting: Recruiting) -> None:
    assert len(recruiting.records) == 9
