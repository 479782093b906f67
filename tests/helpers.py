"""What many tests share and no fixture holds: the repository root and bounded polling.

Starting a server and reading its metrics are ``gateway.harness`` (the benchmark uses them too); the
models the tests export are ``encoder_models``; the servers and clients the tests share are fixtures in
``conftest``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
"""The repository: commands and examples run from here."""


def wait_for(predicate: Callable[[], object], timeout: float = 30.0, what: str = "condition") -> None:
    """Poll until ``predicate()`` holds; this bounds a wait, it does not assert on speed."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)
