"""Shared pytest fixtures.

The ProMod3 database and other large files live in ``../shared`` (for CI and developers, not
users) or are downloaded; tests that need them skip with a reason when they are absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=true")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} not present (it exists for developers and CI only)")
    return SHARED
