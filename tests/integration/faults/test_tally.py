"""The fault suite's last test: no invariant was violated by any fault test before it.

pytest runs a folder's files in name order, so this file must keep sorting after every other
``test_*.py`` of this package.
"""

from __future__ import annotations

import pytest

from tests.support.fault_tally import TALLY

pytestmark = pytest.mark.integration


def test_fault_tally_is_clean() -> None:
    """No invariant was violated by any fault test of this package (run after them)."""
    assert TALLY.violations == []
