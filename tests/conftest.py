"""Shared test configuration.

Tests that need PyTorch, Graphviz's ``dot`` or Debian's chromium (with
Playwright) use the ``torch``, ``dot`` and ``chromium`` fixtures: they skip
with a reason when the tool is absent, unless TINYGRAD_BP_REQUIRE_ORACLES=1
(set by .ci/run), where absence is a failure.
"""

from __future__ import annotations

import importlib
import os
import shutil

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", deadline=None, max_examples=100, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("default")

REQUIRE_ORACLES = os.environ.get("TINYGRAD_BP_REQUIRE_ORACLES") == "1"


def _missing(reason: str) -> None:
    if REQUIRE_ORACLES:
        pytest.fail(f"{reason}, but TINYGRAD_BP_REQUIRE_ORACLES=1 says it must be present")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def torch():
    """The torch module, in float64; skips (or fails in CI) without it."""
    try:
        module = importlib.import_module("torch")
    except ImportError:
        _missing("PyTorch is not installed (pip install torch==2.13.0)")
    module.set_default_dtype(module.float64)
    return module


@pytest.fixture(scope="session")
def dot() -> str:
    """The path of Graphviz's dot; skips (or fails in CI) without it."""
    path = shutil.which("dot")
    if path is None:
        _missing("Graphviz's dot is not installed (apt-get install graphviz)")
    return path


@pytest.fixture(scope="session")
def chromium() -> str:
    """The path of Debian's chromium, drivable by Playwright; skips (or fails in CI) without them.

    Never 'playwright install': the browser tests drive the system chromium.
    """
    path = "/usr/bin/chromium"
    if not os.access(path, os.X_OK):
        _missing("chromium is not installed at /usr/bin/chromium (apt-get install chromium)")
    try:
        importlib.import_module("playwright.sync_api")
    except ImportError:
        _missing("Playwright for Python is not installed (pip install -e '.[test]')")
    return path
