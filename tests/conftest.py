"""Fixtures shared by the test files of this folder and tests/interop."""

from __future__ import annotations

import pytest
from certs import Certs, make_certs


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """Throw-away TLS certificates made with ``openssl`` for this run (tests/certs.py)."""
    return make_certs(tmp_path_factory.mktemp("certs"))
