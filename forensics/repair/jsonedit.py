"""A minimal edit of a JSON document: one top-level member's value replaced, every other byte
kept.

dockerd re-reads what a repair rewrites with Go's ``encoding/json``, which matches an object's
keys to a struct's fields case-insensitively (``"id"`` fills ``ID``) and lets the last matching
member win. Re-serialising the document would change bytes Go reads differently (number
spellings, escapes, the order of keys, invalid UTF-8 that Go reads as U+FFFD), so the value that
Go's decoder takes for the field is found in place and only its bytes are replaced.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from forensics.errors import Damage

_WHITESPACE = " \t\n\r"
_DECODER = json.JSONDecoder()


class NotEditable(Damage, ValueError):
    """The document is no JSON object whose members can be located."""


@dataclass(frozen=True)
class Member:
    key: str
    start: int  # of the value, in characters of the decoded text
    end: int


def top_level_members(text: str) -> list[Member]:
    """The members of the JSON object ``text``, in document order, with the span of each value."""
    i = _skip(text, 0)
    if i >= len(text) or text[i] != "{":
        raise NotEditable("not a JSON object")
    members = []
    i = _skip(text, i + 1)
    if i < len(text) and text[i] == "}":
        return members
    while True:
        if i >= len(text) or text[i] != '"':
            raise NotEditable(f"a key expected at {i}")
        key, i = _scan(json.decoder.scanstring, text, i + 1)  # type: ignore[attr-defined]
        i = _skip(text, i)
        if i >= len(text) or text[i] != ":":
            raise NotEditable(f"':' expected at {i}")
        start = _skip(text, i + 1)
        _, end = _scan(_DECODER.raw_decode, text, start)
        members.append(Member(key, start, end))
        i = _skip(text, end)
        if i < len(text) and text[i] == ",":
            i = _skip(text, i + 1)
            continue
        if i < len(text) and text[i] == "}":
            if _skip(text, i + 1) != len(text):
                raise NotEditable("data after the object")
            return members
        raise NotEditable(f"',' or '}}' expected at {i}")


def go_field_member(members: list[Member], field: str) -> Member | None:
    """The member Go's decoder fills ``field`` from: the last whose key equals it ignoring the
    case of ASCII letters (for a field name of ASCII letters, Go's case folding adds no other
    spelling: only K and S fold to non-ASCII letters)."""
    wanted = field.lower()
    found = [m for m in members if m.key.isascii() and m.key.lower() == wanted]
    return found[-1] if found else None


def read_member_value(data: bytes, field: str) -> object:
    """The value Go's decoder takes for the top-level ``field`` of ``data`` (NotEditable when
    no member fills it)."""
    text = data.decode("utf-8", "surrogateescape")
    member = go_field_member(top_level_members(text), field)
    if member is None:
        raise NotEditable(f"no member {field!r}")
    return _scan(_DECODER.raw_decode, text, member.start)[0]


def replace_member_value(data: bytes, field: str, value: str) -> tuple[bytes, str]:
    """``data`` with the value Go reads for the top-level ``field`` replaced by the JSON
    string ``value``, and the old value's JSON text. NotEditable when no member fills it.

    Bytes that are not UTF-8 pass through untouched (surrogate escapes), so every byte outside
    the value is kept."""
    if any(c in field for c in "KkSs"):
        raise ValueError(f"{field!r}: Go folds K and S to other letters; not supported")
    text = data.decode("utf-8", "surrogateescape")
    member = go_field_member(top_level_members(text), field)
    if member is None:
        raise NotEditable(f"no member {field!r}")
    old = text[member.start : member.end]
    new = text[: member.start] + json.dumps(value) + text[member.end :]
    return new.encode("utf-8", "surrogateescape"), old


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WHITESPACE:
        i += 1
    return i


def _scan(scanner: object, text: str, i: int) -> tuple[object, int]:
    try:
        return scanner(text, i)  # type: ignore[operator,no-any-return]
    except (ValueError, RecursionError) as exc:
        raise NotEditable(str(exc)) from None
