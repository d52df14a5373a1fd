"""A JSON document written in pieces, byte for byte as :func:`forensics.report.to_json` writes it.

``json.dumps(doc, indent=2)`` builds the whole text, and on the way a list of every small piece
of it: for a root of a million containers or findings that is gigabytes, several times the model
it describes. Here the top-level lists are written one element at a time, and a top-level value
may be an iterator whose elements (made as they are asked for) are written as a list: memory then
follows one element, not the document.

The text is the same because a JSON string never holds a raw newline: a value encoded on its own
and then indented line by line is what the encoder writes for it where it is nested.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from itertools import chain
from typing import Any

from forensics.report import json_safe

_ENCODER = json.JSONEncoder(indent=2, sort_keys=True, ensure_ascii=False)
#: the indentation of a top-level value, and of an element of a top-level list
_LEVEL_1, _LEVEL_2 = "\n  ", "\n    "


def json_chunks(document: dict[str, Any]) -> Iterator[str]:
    """The text of ``to_json(document)`` in pieces; iterator values are written as lists."""
    return map(json_safe, _chunks(document))


def _chunks(document: dict[str, Any]) -> Iterator[str]:
    if not document:
        yield "{}\n"
        return
    opening = "{"
    for key, value in sorted(document.items()):
        yield f"{opening}{_LEVEL_1}{_ENCODER.encode(key)}: "
        opening = ","
        if isinstance(value, list) or _is_iterator(value):
            yield from _list_chunks(value)
        else:
            yield _ENCODER.encode(value).replace("\n", _LEVEL_1)
    yield "\n}\n"


def _is_iterator(value: object) -> bool:
    return isinstance(value, Iterator)


def _list_chunks(items: Iterable[Any]) -> Iterator[str]:
    it = iter(items)
    first = next(it, _END)
    if first is _END:
        yield "[]"
        return
    yield "["
    separator = ""
    for item in chain((first,), it):
        yield separator + _LEVEL_2 + _ENCODER.encode(item).replace("\n", _LEVEL_2)
        separator = ","
    yield _LEVEL_1 + "]"


_END = object()
