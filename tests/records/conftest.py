from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from keel.context import Context
from keel.services.metadata import apply_package

FIXTURE = Path(__file__).parent.parent / "fixtures" / "every_type"


@pytest.fixture
def crm(org: Context) -> Iterator[Context]:
    """An organisation with the every-field-type package (Position__c and its Posting__c details)."""
    apply_package(org, FIXTURE)
    yield org
