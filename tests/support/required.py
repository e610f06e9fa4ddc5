"""A component the suite needs (a server binary, a browser, root, iproute2) that is missing
skips the test on a developer's machine and fails it under CI (`CI` set): a CI run never
passes by leaving tests out. `make services` installs what is missing."""

from __future__ import annotations

import os

import pytest


def missing(what: str) -> None:
    """Stop this test because `what` is missing: a failure under CI, else a skip."""
    message = f"{what} (`make services` provides it)"
    if os.environ.get("CI"):
        pytest.fail(f"required for this test and missing under CI: {message}")
    pytest.skip(message)
