"""Shared fixtures. Tests run against the real PostgreSQL and Redis (no mocks of either); the shared
helpers (rows, comparisons, uploads) are in tests/helpers.py."""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.helpers import T0


@pytest.fixture
def t0() -> datetime:
    return T0
