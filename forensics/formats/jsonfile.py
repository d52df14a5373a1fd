"""Docker's JSON files decoded the way dockerd's Go decoder (``encoding/json``) reads them.

The verifier must judge a file as dockerd will: a file that Go reads is no damage, however odd,
and a file that Go refuses is damage, however Python would read it. The rules, from Go's
``encoding/json`` (``decode.go``, ``scanner.go``, ``fold.go``, ``encode.go typeFields``):

* **Bytes that are not UTF-8** inside a string become U+FFFD, one per bad byte
  (``unquoteBytes``: "Coerce to well-formed UTF-8"); outside a string they are no JSON.
* **Escapes**: only ``\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX``; a ``\\u`` surrogate that is not
  half of a valid pair becomes U+FFFD. Control characters in a string are refused.
* **Literals**: ``NaN``, ``Infinity``, leading zeros (``01``), ``1.``, ``+1`` are refused (the
  scanner's grammar is JSON's). A byte order mark is refused ("invalid character 'ï' looking for
  beginning of value").
* **What follows the value**: ``json.Unmarshal`` refuses anything but whitespace after it;
  ``json.NewDecoder(f).Decode`` reads one value and stops (after an object or array nothing more
  is read; after a bare number, string or literal the next byte must be whitespace). Which of the
  two dockerd uses depends on the file: :func:`reads_one_value`.
* **Struct fields**: a key sets the field whose JSON name it equals, else the first field whose
  name it equals under Unicode simple case folding (``encode.go``: "For historical reasons, first
  folded match takes precedence"; ``decode.go object``: ``byExactName``, then
  ``byFoldedName[foldName(key)]``). Keys are applied in document order, so among keys that reach
  one field the last wins; a ``null`` leaves a value field (string, number, bool, struct) as it
  was and sets a pointer, map, slice or interface field to nil. :func:`field` looks a field up
  that way. Map keys (``map[string]T``) are exact: the dict itself is the map, last key wins.
* **Numbers** into integer fields must be integer literals in range (``strconv.ParseInt`` /
  ``ParseUint``: ``1.0`` and ``1e3`` are refused): :func:`go_int`, :func:`go_uint`.

Docker writes many small JSON files, several non-atomically in older releases. After a power cut
they are typically empty, filled with NUL bytes (the inode grew but the data never hit the disk)
or cut short. A reader must say which, because the repair differs: :class:`JsonDamage`.

Known difference: Python's decoder gives up below about 1,000 levels of nesting, Go's at 10,000;
no file Docker writes comes near either.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from forensics.errors import Damage

__all__ = [
    "GoObject",
    "JsonDamage",
    "decode_json",
    "field",
    "fold_key",
    "go_object",
    "go_int",
    "go_uint",
    "reads_one_value",
]


@dataclass(frozen=True)
class JsonDamage(Damage):
    """Why bytes are no JSON document: ``kind`` empty, nul-filled, truncated, invalid, not-utf8."""

    kind: str
    detail: str

    def __str__(self) -> str:
        return self.detail


class GoObject(dict[str, Any]):
    """A decoded JSON object. As a dict it is what a Go map reads (the last value of each exact
    key); :func:`field` reads it as a Go struct does. ``pairs`` keeps every key in document
    order (made by :func:`go_object`)."""

    __slots__ = ("_folded", "pairs")

    pairs: list[tuple[str, Any]]
    #: how :func:`field` looks keys up, worked out on first use: the :class:`_Names` of the
    #: object's keys when no key repeats and no two fold alike (nearly always: a lookup is
    #: then a dict lookup), else folded key → (last value, last value that is not null)
    _folded: Any

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled (and deep-copied) as its pairs: the lookup cache is rebuilt on use."""
        return (go_object, (self.pairs,))


def go_object(pairs: list[tuple[str, Any]]) -> GoObject:
    """The decoder's object hook (dict's own constructor: no Python ``__init__`` per object)."""
    obj = GoObject(pairs)
    obj.pairs = pairs
    return obj


class _Names(dict[str, Any]):
    """The field names asked of objects that have one set of keys (in one order), each to the
    key that sets it (or None): an object's keys are looked at once per set of keys, not once
    per object. Made only for keys that are ASCII and of which no two fold alike, so that a
    name folds to at most one of them."""

    __slots__ = ("keys_",)

    keys_: tuple[str, ...]

    def resolve(self, name: str) -> str | None:
        low = name.lower()
        key = next((k for k in self.keys_ if k.lower() == low), None)
        self[name] = key
        return key


#: the :class:`_Names` of each set of keys met (None: keys that need the folded table); a
#: root of many odd objects stops adding at _SHAPES_KEPT and works the others out per object
_SHAPES: dict[tuple[str, ...], _Names | None] = {}
_SHAPES_KEPT = 4096


def _lookup_table(obj: GoObject) -> Any:
    """The object's :class:`_Names` when every key is ASCII, none repeats and none folds like
    another (nearly always); else the table of folded keys."""
    if len(obj) == len(obj.pairs):
        keys = tuple(obj)
        names = _SHAPES.get(keys, _MISSING)
        if names is _MISSING:
            names = _names_of(keys)
            if len(_SHAPES) < _SHAPES_KEPT:
                _SHAPES[keys] = names
        if names is not None:
            return names
    table: dict[str, tuple[Any, Any]] = {}
    for key, value in obj.pairs:
        name = fold_key(key)
        if name is None:
            continue
        last_set = table.get(name, (_MISSING, _MISSING))[1]
        table[name] = (value, last_set if value is None else value)
    return table


def _names_of(keys: tuple[str, ...]) -> _Names | None:
    if not "".join(keys).isascii() or len({key.lower() for key in keys}) != len(keys):
        return None
    names = _Names()
    names.keys_ = keys
    return names


_MISSING: Any = object()

#: the two non-ASCII letters whose simple case folding reaches an ASCII letter (Go's orbits
#: k → K (U+212A KELVIN SIGN) and s → ſ (U+017F LATIN SMALL LETTER LONG S)); no other non-ASCII
#: rune folds to an ASCII one, so a key with any other non-ASCII rune matches no ASCII name
_GO_FOLD = str.maketrans({"\u212a": "k", "\u017f": "s"})


def fold_key(key: str) -> str | None:
    """``key`` as Go's ``foldName`` compares it with an ASCII field name (lower case here), or
    None when it holds a rune that folds to no ASCII letter (it can match no Docker field)."""
    if not key.isascii():
        key = key.translate(_GO_FOLD)
        if not key.isascii():
            return None
    return key.lower()


def field(obj: Any, name: str, *, nullable: bool = False) -> Any:
    """The value Go's decoder puts in the struct field whose JSON name is ``name`` (ASCII), or
    None when no key sets it (or ``obj`` is no object).

    Every key equal to ``name`` or folding to it sets the field, in document order: the last
    wins. ``nullable``: the Go field is a pointer, map, slice or interface, which a ``null``
    sets to nil; for other fields a ``null`` changes nothing. (Go prefers an exact match to a
    folded one only to choose between two fields of one struct whose names differ in case; the
    Docker structs read here have none.)"""
    if not isinstance(obj, GoObject):
        return obj.get(name) if isinstance(obj, dict) else None
    table = getattr(obj, "_folded", None)
    if table is None:
        table = obj._folded = _lookup_table(obj)
    if table.__class__ is _Names:  # one key at most sets the field: a null is a null
        key = table.get(name, _MISSING)
        if key is _MISSING:
            key = table.resolve(name)
        return None if key is None else obj[key]
    found = table.get(name.lower())
    if found is None:
        return None
    value = found[0] if nullable else found[1]
    return None if value is _MISSING else value


def go_int(value: Any, bits: int = 64) -> int | None:
    """``value`` as a Go signed integer field of ``bits`` reads it, or None where Go refuses it
    (not an integer literal, out of range, not a number)."""
    if type(value) is not int:  # bool is no number; a float came from 1.0 or 1e3
        return None
    limit = 1 << (bits - 1)
    return value if -limit <= value < limit else None


def go_uint(value: Any, bits: int = 64) -> int | None:
    """``value`` as a Go unsigned integer field of ``bits`` reads it, or None."""
    if type(value) is not int:
        return None
    return value if 0 <= value < (1 << bits) else None


# -- which Go call reads which file ----------------------------------------------------------------

#: files dockerd reads with ``json.NewDecoder(f).Decode``: one value, the rest never read.
#: ``container.FromDisk`` (config.v2.json; 1.8/1.9 ``fromDisk``: config.json),
#: ``readHostConfig`` (hostconfig.json), ``reference/store.go reload`` (repositories.json; 1.8/1.9
#: ``TagStore.reload``: repositories-<driver>), 1.8/1.9 ``graph.loadImage`` (graph/<id>/json).
#: Everything else (image configs: ``image.NewFromJSON``; devicemapper metadata; volume opts)
#: goes through ``json.Unmarshal``, which refuses anything after the value.
_ONE_VALUE_FILES = frozenset(
    {"config.v2.json", "config.json", "hostconfig.json", "repositories.json", "json"}
)


def reads_one_value(name: str) -> bool:
    """True when dockerd reads the file named ``name`` (a base name) with a ``json.Decoder``,
    which ignores what follows the first value; False for ``json.Unmarshal``."""
    base = name.rsplit("/", 1)[-1]
    return base in _ONE_VALUE_FILES or base.startswith("repositories-")


# -- decoding -------------------------------------------------------------------------------------


class _Refused(Damage, ValueError):
    """A literal that Python's decoder reads and Go's does not."""


def _constant(name: str) -> Any:
    raise _Refused(f"{name} is not JSON (Go's decoder refuses it)")


def _integer(text: str) -> int | float:
    """An integer literal. One longer than a sign and 20 digits fits no Go integer: it is kept
    as the float64 an ``interface{}`` would get (and Python makes no int of 4300 digits)."""
    return int(text) if len(text) <= 21 else float(text)


_DECODER = json.JSONDecoder(
    object_pairs_hook=go_object, parse_constant=_constant, parse_int=_integer
)
_SPACE = " \t\r\n"
#: a ``\u`` escape of a surrogate (D800–DFFF) somewhere in the text
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def decode_json(data: bytes, *, one_value: bool = False) -> Any:
    """The JSON value in ``data`` as Go's decoder reads it: objects as :class:`GoObject`.

    ``one_value``: read as ``json.NewDecoder(f).Decode`` does (what follows the first value is
    not read), else as ``json.Unmarshal`` (nothing but whitespace may follow). Raises
    :class:`JsonDamage` saying how the bytes are damaged."""
    if not data.strip():
        raise JsonDamage("empty", "zero-byte file" if not data else "only whitespace")
    if not data.strip(b"\x00"):
        raise JsonDamage("nul-filled", f"all {len(data)} bytes are NUL")
    try:
        text, lossy = data.decode("utf-8"), False
    except UnicodeDecodeError:
        # each byte that is not UTF-8 becomes one lone surrogate (U+DC80..U+DCFF), as Go's
        # utf8.DecodeRune steps over them one by one; in strings they become U+FFFD below,
        # outside strings they are no JSON
        text, lossy = data.decode("utf-8", "surrogateescape"), True
    start = _skip_space(text, 0)
    try:
        value, end = _DECODER.raw_decode(text, start)
        if lossy or _SURROGATE_ESCAPE.search(text, start, end):
            value = _replace_surrogates(value)
    except json.JSONDecodeError as exc:
        raise _classify(text, data, exc.pos, exc.msg) from None
    except _Refused as exc:
        raise JsonDamage("invalid", f"invalid JSON: {exc}") from None
    except RecursionError:
        raise JsonDamage("invalid", "nested too deeply") from None
    _check_after(text, data, value, end, one_value)
    return value


def _skip_space(text: str, pos: int) -> int:
    end = len(text)
    while pos < end and text[pos] in _SPACE:
        pos += 1
    return pos


def _check_after(text: str, data: bytes, value: Any, end: int, one_value: bool) -> None:
    """What follows the value, judged as the Go call that reads the file judges it."""
    if one_value and isinstance(value, (dict, list)):
        return  # the decoder stops at the closing bracket
    if one_value:
        if end < len(text) and text[end] not in _SPACE:
            raise _classify(text, data, end, "invalid character after top-level value")
        return
    rest = _skip_space(text, end)
    if rest < len(text):
        raise _classify(text, data, rest, "data after the JSON value (json.Unmarshal refuses it)")


def _classify(text: str, data: bytes, pos: int, msg: str) -> JsonDamage:
    body = text.rstrip("\x00 \t\r\n")
    nul = text.find("\x00")
    if 0 <= nul <= pos:
        return JsonDamage("nul-filled", f"NUL bytes from byte {_byte_offset(text, nul)} on")
    if pos >= len(body) or _is_unclosed_prefix(body):
        return JsonDamage("truncated", f"truncated JSON: ends after {len(body)} bytes ({msg})")
    at = _byte_offset(text, pos)
    if pos == 0 and data.startswith(b"\xef\xbb\xbf"):
        return JsonDamage("invalid", "starts with a byte order mark (Go's decoder refuses it)")
    if "\udc80" <= text[pos] <= "\udcff":
        return JsonDamage("not-utf8", f"not UTF-8 at byte {at} (outside a string)")
    return JsonDamage("invalid", f"invalid JSON at byte {at}: {msg}")


def _byte_offset(text: str, pos: int) -> int:
    """The byte offset in the file of character ``pos`` (bytes that are not UTF-8 are one lone
    surrogate each in ``text``)."""
    head = text[:pos]
    if head.isascii():
        return pos
    return len(head.encode("utf-8", "surrogateescape"))


def _replace_surrogates(value: Any) -> Any:
    """Lone surrogates as U+FFFD: those of bytes that are not UTF-8, and those of ``\\uD800``-style
    escapes that pair with nothing."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_replace_surrogates(v) for v in value]
    if isinstance(value, GoObject):
        return go_object([(_replace_surrogates(k), _replace_surrogates(v)) for k, v in value.pairs])
    return value


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
