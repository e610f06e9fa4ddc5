"""Strict JSON for everything recpipe writes or sends: the ledger's JSON columns, the
archive's manifest and sidecars, the notification body, the log lines.

`json.dumps` writes `NaN` and `-Infinity` by default, which is not JSON: PostgreSQL's
json type refuses it (a run's result would never be stored, and the chain would retry it
as an outage), and so do JavaScript's `JSON.parse` and most receivers. Here a float that
is not finite is written as null. A value that does not exist (the loudness of digital
silence) is no number; the field that can hold one says why beside it (the loudness
block's `"silent": true`), and this is the net under every other field.
"""

from __future__ import annotations

import json
import math
from typing import Any


def dumps(value: Any, **kwargs: Any) -> str:
    """`json.dumps` that never writes NaN or Infinity (they become null)."""
    try:
        return json.dumps(value, allow_nan=False, **kwargs)
    except ValueError:  # a non-finite float somewhere: the rare path walks the value
        return json.dumps(finite(value), allow_nan=False, **kwargs)


def finite(value: Any) -> Any:
    """`value` with every float that is not finite replaced by None, at any depth."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value
