"""Shared test fixtures: where the real data lives, and an isolated SKUTAG_HOME.

Tests read real public data from ``../shared/data`` (relative to the project root).
When it is absent (a user's machine), tests that need it skip with that reason; under ``CI=true`` they fail
instead (``skip_or_fail``: the same rule as for a database or a broker that is down).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("SKUTAG_SHARED_DATA", ROOT.parent / "shared" / "data"))

# Derived artifacts (ONNX exports, OCR model folders, bundles) for the whole test run go here,
# never into the user's cache. Kept between runs on the same checkout to save export time.
os.environ.setdefault("SKUTAG_HOME", str(ROOT / ".skutag" / "test-home"))
# Nothing may reach a model hub during tests.
for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK"):
    os.environ.setdefault(var, "1" if var != "PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK" else "True")


def in_ci() -> bool:
    """True when the environment variable CI is set (CI=true), as CI runners do."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def skip_or_fail(message: str) -> None:
    """Skip the test with ``message`` on a developer machine; fail it under CI, where a missing data set or
    service would otherwise turn a whole group of tests into silent skips."""
    if in_ci():
        pytest.fail(f"{message} (CI is set: this must not skip)")
    pytest.skip(message)


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data; skip (fail under CI) with a clear reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        skip_or_fail(f"shared data not present: {path} (CI always has ../shared/data)")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        skip_or_fail(f"shared data folder not present: {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where tests save screenshots and reports for people to look at."""
    path = ROOT / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path
