"""The streamed JSON writer: the text of ``json.dumps(indent=2, sort_keys=True,
ensure_ascii=False)`` whether a value is encoded by orjson or, where orjson would write it
otherwise or refuses it, by json."""

from __future__ import annotations

import enum
import json
from collections import OrderedDict
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from forensics.jsonstream import encode, json_chunks
from forensics.report import to_json


class Word(enum.StrEnum):
    RUNNING = "running"


class Level(enum.IntEnum):
    HIGH = 3


#: deeper than orjson goes (254 levels)
NESTED: Any = "x"
for _ in range(300):
    NESTED = [NESTED]

AWKWARD: list[Any] = [
    {"b": [], "a": {}, "c": [{}], "d": [[]], "e": None, "f": True, "g": -0},
    'controls \x00\x01\x1f\x7f \b\f\n\r\t quotes " \\ / U+2028 \u2028 U+FEFF \ufeff é 漢 🐳',
    "not UTF-8: \udc80\udcff",  # a name kept with surrogateescape: orjson refuses it
    {"\udc80": 1},
    [2**63 - 1, -(2**63), 2**64, -(2**64) - 1, 10**30],  # beyond 64 bits: orjson refuses
    [1.0, 1e16, 1e-7, 0.1, -2.5, 1.5e300],  # floats: written otherwise by orjson
    {"x": {"y": [1.25]}},
    1e16,
    -1e-7,
    {"not a float": '": 1.5', "text": "1e5"},  # float-like text inside strings
    {1: "int key", 2: "sorted as text by json"},
    [Word.RUNNING, Level.HIGH],
    OrderedDict([("z", 1), ("a", 2)]),
    ("a", "tuple"),
    {"deep": NESTED},
]


@pytest.mark.parametrize("value", AWKWARD, ids=range(len(AWKWARD)))
def test_encode_writes_what_json_writes(value: Any) -> None:
    assert encode(value) == json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def test_a_value_json_refuses_is_refused() -> None:
    with pytest.raises(TypeError):
        encode({"a": {1, 2}})


#: NaN and the infinities are left out: json writes them as NaN and Infinity (no JSON), orjson
#: as null; the documents hold no floats (forensics.jsonstream)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(), JSON_VALUES, max_size=5))
def test_streamed_documents_are_to_json(document: dict[str, Any]) -> None:
    assert "".join(json_chunks(document)) == to_json(document)


@given(st.dictionaries(st.text(), JSON_VALUES.filter(lambda v: not _holds_float(v)), max_size=5))
def test_documents_without_floats_are_to_json_unchecked(document: dict[str, Any]) -> None:
    assert "".join(json_chunks(document, floats=False)) == to_json(document)


def _holds_float(value: Any) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(_holds_float(v) for v in value.values())
    return isinstance(value, list) and any(_holds_float(v) for v in value)
