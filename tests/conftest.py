"""Shared test fixtures: where the real recordings live, and hypothesis settings."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Derandomized, so CI runs the same examples every time (a rare case found at random would turn a clean clone
# red without a change); CLOCKLESS_HYPOTHESIS_RANDOM=1 explores new examples, as a developer should now and then.
settings.register_profile(
    "clockless", deadline=None, max_examples=50, suppress_health_check=[HealthCheck.too_slow],
    derandomize=not os.environ.get("CLOCKLESS_HYPOTHESIS_RANDOM"),
)
settings.load_profile("clockless")


def _shared_dir() -> Path:
    if SHARED_DATA.is_dir():
        return SHARED_DATA
    if os.environ.get("CI"):
        raise RuntimeError(f"CI needs the real recordings at {SHARED_DATA} (../shared/data beside the clone)")
    pytest.skip(f"real recordings not found at {SHARED_DATA} (../shared/data beside the repository)")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real recordings (../shared/data). Skips only outside CI when it is absent."""
    return _shared_dir()


@pytest.fixture(scope="session")
def reference_stats(shared_data: Path) -> dict:
    return json.loads((shared_data / "REFERENCE.json").read_text())
