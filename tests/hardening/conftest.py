"""The hardening suite: fuzz targets, API contract, faults and security checks (issue 7).

Hypothesis profiles live in `tests.hardening.fuzzing` (``HYPOTHESIS_PROFILE=long`` for the long
run); this file registers the markers that select the suite's parts.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fuzz: a hypothesis fuzz target (see tests/hardening)")
    config.addinivalue_line("markers", "fault: a fault-injection test (see docs/reliability.md)")
