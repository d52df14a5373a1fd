"""Decoding of Docker's small JSON metadata files, with damage told apart.

Docker writes many small JSON files, several of them non-atomically in older releases. After a
power cut they are typically empty, filled with NUL bytes (the inode grew but the data never hit
the disk) or cut short. A reader must say which, because the repair differs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class JsonDamage(Exception):
    """Why bytes are no JSON document: ``kind`` empty, nul-filled, truncated, invalid, not-utf8."""

    kind: str
    detail: str

    def __str__(self) -> str:
        return self.detail


def decode_json(data: bytes) -> Any:
    """The JSON value in ``data``; raises :class:`JsonDamage` saying how it is damaged."""
    if not data.strip():
        raise JsonDamage("empty", "zero-byte file" if not data else "only whitespace")
    if not data.strip(b"\x00"):
        raise JsonDamage("nul-filled", f"all {len(data)} bytes are NUL")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonDamage("not-utf8", f"not UTF-8 at byte {exc.start}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _classify(text, exc) from None
    except RecursionError:
        raise JsonDamage("invalid", "nested too deeply") from None


def _classify(text: str, exc: json.JSONDecodeError) -> JsonDamage:
    body = text.rstrip("\x00 \t\r\n")
    if "\x00" in text and text.index("\x00") <= exc.pos:
        return JsonDamage("nul-filled", f"NUL bytes from byte {text.index(chr(0))} on")
    if exc.pos >= len(body) or _is_unclosed_prefix(body):
        return JsonDamage("truncated", f"truncated JSON: ends after {len(body)} bytes ({exc.msg})")
    return JsonDamage("invalid", f"invalid JSON at byte {exc.pos}: {exc.msg}")


def _is_unclosed_prefix(text: str) -> bool:
    """True when ``text`` ends inside a string or with brackets still open, and no bracket was
    closed wrongly before: what a write cut short leaves behind."""
    closers = {"{": "}", "[": "]"}
    stack: list[str] = []
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in closers:
            stack.append(closers[ch])
        elif ch in "}]":
            if not stack or stack.pop() != ch:
                return False
            if not stack:
                return False  # the document closed: what follows is not a truncation
    return in_string or bool(stack)
