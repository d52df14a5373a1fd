"""A JSON document written in pieces, byte for byte as :func:`forensics.report.to_json` writes it.

``json.dumps(doc, indent=2)`` builds the whole text, and on the way a list of every small piece
of it: for a root of a million containers or findings that is gigabytes, several times the model
it describes. Here the top-level lists are written one element at a time, and a top-level value
may be an iterator whose elements (made as they are asked for) are written as a list: memory then
follows one element, not the document.

The text is the same because a JSON string never holds a raw newline: a value encoded on its own
and then indented line by line is what the encoder writes for it where it is nested.

Each value is encoded by orjson (C speed; the standard library encodes indented JSON in
Python, a second for the inventory of a host of 5,000 containers) where it writes the same text
as ``json``: its indentation, key order and escapes are those of ``json.dumps(indent=2,
sort_keys=True, ensure_ascii=False)``. What it refuses (a string with a lone surrogate, an
integer beyond 64 bits, a key that is no string, a type json would refuse) goes to ``json``;
so does a value with a float, which orjson writes otherwise (``1e16`` where json writes
``1e+16``), caught in orjson's text — unless the writer is told that the document holds none
(``floats=False``: the inventory, whose values the model types; the search of orjson's text
would take half the time saved). No document holds NaN or an infinity, which orjson would
write as ``null``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from itertools import chain
from typing import Any

import orjson

from forensics.report import json_safe

_ENCODER = json.JSONEncoder(indent=2, sort_keys=True, ensure_ascii=False)
#: dataclasses, dates and subclasses of str, int, dict, list are handed to ``default``
#: (:func:`_refuse`): json refuses the first two, and encodes the others as their base
_ORJSON_OPTIONS = (
    orjson.OPT_INDENT_2
    | orjson.OPT_SORT_KEYS
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)
#: a number with a fraction or an exponent where a value starts in orjson's indented text (a
#: dict's value after ``": "``, a list's element at the start of its line, a value alone); a
#: string never holds a raw newline, and its quotes are escaped, so a match in one is only a
#: false alarm
_FLOAT = re.compile(r'(?:^|\n *|": )-?[0-9]+[.eE]')
#: the indentation of a top-level value, and of an element of a top-level list
_LEVEL_1, _LEVEL_2 = "\n  ", "\n    "


def json_chunks(document: dict[str, Any], *, floats: bool = True) -> Iterator[str]:
    """The text of ``to_json(document)`` in pieces; iterator values are written as lists.
    ``floats=False``: the document holds no float (see the module's words)."""
    return map(json_safe, _chunks(document, partial(encode, floats=floats)))


def _chunks(document: dict[str, Any], encode: Callable[[Any], str]) -> Iterator[str]:
    if not document:
        yield "{}\n"
        return
    opening = "{"
    for key, value in sorted(document.items()):
        yield f"{opening}{_LEVEL_1}{encode(key)}: "
        opening = ","
        if isinstance(value, list) or _is_iterator(value):
            yield from _list_chunks(value, encode)
        else:
            yield encode(value).replace("\n", _LEVEL_1)
    yield "\n}\n"


def _is_iterator(value: object) -> bool:
    return isinstance(value, Iterator)


def _list_chunks(items: Iterable[Any], encode: Callable[[Any], str]) -> Iterator[str]:
    it = iter(items)
    first = next(it, _END)
    if first is _END:
        yield "[]"
        return
    yield "["
    separator = ""
    for item in chain((first,), it):
        yield separator + _LEVEL_2 + encode(item).replace("\n", _LEVEL_2)
        separator = ","
    yield _LEVEL_1 + "]"


_END = object()


def encode(value: Any, *, floats: bool = True) -> str:
    """``value`` as ``json`` writes it indented by 2 with sorted keys (a nested value's text
    before its indentation is added); by orjson where that writes the same. ``floats=False``:
    ``value`` holds no float."""
    try:
        text: str = orjson.dumps(value, default=_refuse, option=_ORJSON_OPTIONS).decode()
    except TypeError:  # orjson.JSONEncodeError: what orjson refuses, json may take
        return _ENCODER.encode(value)
    return _ENCODER.encode(value) if floats and _FLOAT.search(text) else text


def _refuse(value: Any) -> Any:
    raise TypeError(type(value).__name__)
