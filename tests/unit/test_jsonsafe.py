"""foundation.jsonsafe: the strict JSON every file and message recpipe writes goes through."""

import json
import math

import pytest

from foundation import jsonsafe


def refuse(constant: str) -> None:
    raise AssertionError(f"not strict JSON: {constant}")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_a_number_that_is_not_finite_is_written_as_null_at_any_depth(bad: float):
    value = {"a": bad, "b": [1.5, bad, {"c": (bad, 2)}], "d": "text", "e": None, "f": True}
    text = jsonsafe.dumps(value, sort_keys=True)
    assert json.loads(text, parse_constant=refuse) == {
        "a": None, "b": [1.5, None, {"c": [None, 2]}], "d": "text", "e": None, "f": True
    }  # fmt: skip


def test_finite_values_are_written_as_json_dumps_writes_them():
    value = {"x": [1, 2.25, -0.0, math.pi], "y": "ü"}
    assert jsonsafe.dumps(value, ensure_ascii=False) == json.dumps(value, ensure_ascii=False)


def test_the_notification_body_is_strict():
    from tasks.notify.body import encode

    assert json.loads(encode({"level": float("-inf")}), parse_constant=refuse) == {"level": None}
