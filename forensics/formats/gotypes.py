"""Which JSON values Go's decoder refuses for the type of the struct field they land in.

``json.Unmarshal`` and ``json.Decoder.Decode`` do not stop at a value of the wrong type: they
skip it, go on, and return the first such error at the end (``decode.go saveError``:
``UnmarshalTypeError``, "cannot unmarshal string into Go struct field … of type int"). The
callers in dockerd then drop the whole file — ``container.FromDisk`` fails, and the daemon
logs "failed to load container" and goes on without it. A config that Python reads happily can
thus hide a container from dockerd; :func:`first_type_error` finds the value that does it.

The rules, from ``encoding/json`` (``decode.go literalStore``, ``object``, ``array``):

* ``null`` is refused by no type: it sets a pointer, map, slice or interface to nil and leaves
  any other field as it was.
* A string goes into a string, a ``bool`` into a bool, an object into a struct or map, an array
  into a slice or array; an ``interface{}`` takes anything. Anything else is a type error.
* A number goes into an integer field only as an integer literal in the field's range
  (``strconv.ParseInt``/``ParseUint`` of the literal: ``1.0``, ``1e3`` and ``-1`` into an
  unsigned field are refused).
* ``time.Time`` has its own ``UnmarshalJSON``: a JSON string holding an RFC 3339 time.
* Keys reach fields as :func:`forensics.formats.jsonfile.field` says (exact, then folded); every
  key that reaches a field is decoded into it, so a wrong value under any spelling counts, even
  if a later key sets the field again. Keys that reach no field are skipped unread.

A :data:`GoType` is one of the scalar kinds below, or a :class:`Slice`, :class:`Map` or
:class:`Struct` built from them. A schema declares only what it is sure of: a field left out is
never judged.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from forensics.formats.jsonfile import GoObject, fold_key

__all__ = [
    "ANY",
    "BOOL",
    "STRING",
    "STRING_OR_STRINGS",
    "TIME",
    "GoType",
    "Int",
    "Map",
    "Slice",
    "Struct",
    "RefusedValue",
    "Uint",
    "first_type_error",
]


@dataclass(frozen=True)
class _Scalar:
    """A Go kind that takes one kind of JSON literal (or any value: ``interface{}``)."""

    name: str


@dataclass(frozen=True)
class Int:
    """A signed integer field of ``bits`` bits (Go's ``int`` is 64 bits on Docker's hosts)."""

    bits: int = 64

    @property
    def name(self) -> str:
        return "int" if self.bits == 64 else f"int{self.bits}"


@dataclass(frozen=True)
class Uint:
    bits: int = 64

    @property
    def name(self) -> str:
        return "uint" if self.bits == 64 else f"uint{self.bits}"


@dataclass(frozen=True)
class Slice:
    """A slice or fixed array of ``elem`` (a JSON array either way)."""

    elem: GoType

    @property
    def name(self) -> str:
        return f"[]{self.elem.name}"


@dataclass(frozen=True)
class Map:
    """``map[string]elem`` (every Docker map read here is keyed by strings)."""

    elem: GoType

    @property
    def name(self) -> str:
        return f"map[string]{self.elem.name}"


@dataclass(frozen=True)
class Struct:
    """A struct (or a pointer to one) with the JSON names of the fields a schema judges."""

    name: str
    fields: dict[str, GoType]
    by_folded: dict[str, tuple[str, GoType]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        folded = {fold_key(name): (name, kind) for name, kind in self.fields.items()}
        object.__setattr__(self, "by_folded", folded)

    def __hash__(self) -> int:
        return hash(self.name)


ANY = _Scalar("interface{}")
STRING = _Scalar("string")
BOOL = _Scalar("bool")
TIME = _Scalar("time.Time")
#: Docker's ``strslice.StrSlice`` (a string or an array of strings), which newer releases
#: replaced by ``[]string`` for some fields: what both take
STRING_OR_STRINGS = _Scalar("strslice.StrSlice")

GoType = _Scalar | Int | Uint | Slice | Map | Struct


@dataclass(frozen=True)
class RefusedValue:
    """The first value Go refuses: where (``State.Pid``), what it is, what the field is."""

    where: str
    found: str
    want: str

    def __str__(self) -> str:
        return f"{self.where}: {self.found} where dockerd reads {self.want}"


def first_type_error(value: Any, schema: GoType) -> RefusedValue | None:
    """The first value in ``value`` (a decoded document, objects as GoObject) that Go's decoder
    refuses for ``schema``, in document order, or None when it takes every value.

    Nearly every document fits: it is judged by :func:`_fits` (no path is built), and only a
    document that does not is walked again to say where (:func:`_check`)."""
    return _check(value, schema, "")


# -- the quick judgement: one compiled test per type ---------------------------------------------

Fits = Callable[[Any], bool]
_COMPILED: dict[int, tuple[GoType, Fits]] = {}
_UNSEEN: Any = object()
#: keys remembered per struct (a key of no field too): a hostile file's many keys are not kept
_KEY_CACHE_LIMIT = 4096


def _fits(kind: GoType) -> Fits:
    """The test that ``value`` fits ``kind`` (the same rules as :func:`_check`)."""
    found = _COMPILED.get(id(kind))
    if found is None:
        found = _COMPILED[id(kind)] = (kind, _compile(kind))  # kind kept: its id is not reused
    return found[1]


def _compile(kind: GoType) -> Fits:
    if kind is ANY:
        return lambda v: True
    if isinstance(kind, Struct):
        return _compile_struct(kind)
    if isinstance(kind, Map):
        elem = _fits(kind.elem)
        return lambda v: (
            v is None or (isinstance(v, dict) and all(elem(item) for _, item in _pairs(v)))
        )
    if isinstance(kind, Slice):
        if kind.elem is STRING:
            return lambda v: (
                v is None or (type(v) is list and all(type(x) is str or x is None for x in v))
            )
        elem = _fits(kind.elem)
        return lambda v: v is None or (type(v) is list and all(elem(x) for x in v))
    if isinstance(kind, (Int, Uint)):
        low, high = (-(1 << (kind.bits - 1)), 1 << (kind.bits - 1))
        if isinstance(kind, Uint):
            low, high = 0, 1 << kind.bits
        return lambda v: v is None or (type(v) is int and low <= v < high)
    if kind is STRING:
        return lambda v: v is None or type(v) is str
    if kind is BOOL:
        return lambda v: v is None or v is True or v is False
    if kind is TIME:
        return lambda v: v is None or (type(v) is str and is_rfc3339(v))
    if kind is STRING_OR_STRINGS:
        return lambda v: (
            v is None
            or type(v) is str
            or (type(v) is list and all(type(x) is str or x is None for x in v))
        )
    raise AssertionError(f"unknown Go type {kind!r}")


def _compile_struct(kind: Struct) -> Fits:
    by_key: dict[str, Fits | None] = {}

    def field_test(key: str) -> Fits | None:
        found = kind.by_folded.get(fold_key(key))
        test = None if found is None else _fits(found[1])
        if len(by_key) < _KEY_CACHE_LIMIT:
            by_key[key] = test
        return test

    def fits(value: Any) -> bool:
        if value is None:
            return True
        if type(value) is GoObject:
            pairs = value.pairs
        elif isinstance(value, dict):
            pairs = list(value.items())
        else:
            return False
        get = by_key.get
        for key, item in pairs:
            if item is None:
                continue
            test = get(key, _UNSEEN)
            if test is _UNSEEN:
                test = field_test(key)
            if test is not None and not test(item):
                return False
        return True

    return fits


def _check(value: Any, kind: GoType, where: str) -> RefusedValue | None:
    """Where ``value`` fails the compiled test of ``kind``: the first part of it (in document
    order) that fails its own, or ``value`` itself; None when it passes. The rules are the
    compiled tests' alone: this only finds the place."""
    if _fits(kind)(value):
        return None
    if isinstance(kind, Struct) and isinstance(value, dict):
        for key, item in _pairs(value):
            found = kind.by_folded.get(fold_key(key))
            if found is not None:
                name, field_kind = found
                refused = _check(item, field_kind, f"{where}.{name}" if where else name)
                if refused:
                    return refused
    elif isinstance(kind, Map) and isinstance(value, dict):
        for key, item in _pairs(value):
            refused = _check(item, kind.elem, f"{where}[{key!r}]")
            if refused:
                return refused
    elif isinstance(kind, Slice) and isinstance(value, list):
        for index, item in enumerate(value):
            refused = _check(item, kind.elem, f"{where}[{index}]")
            if refused:
                return refused
    return _refused(value, kind, where)


def _pairs(obj: dict[str, Any]) -> list[tuple[str, Any]]:
    """Every key with its value in document order (repeated keys too: Go decodes each)."""
    return obj.pairs if isinstance(obj, GoObject) else list(obj.items())


def _refused(value: Any, kind: GoType, where: str) -> RefusedValue:
    return RefusedValue(where or "the document", _json_kind(value), _go_name(kind))


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return f"the JSON bool {'true' if value else 'false'}"
    if isinstance(value, (int, float)):
        return f"the JSON number {value!r}"
    if isinstance(value, str):
        return "a JSON string" if len(value) > 40 else f"the JSON string {value!r}"
    if isinstance(value, list):
        return "a JSON array"
    return "a JSON object"


def _go_name(kind: GoType) -> str:
    if kind is TIME:
        return "a time (an RFC 3339 string)"
    if kind is STRING_OR_STRINGS:
        return "a string or an array of strings"
    if isinstance(kind, Struct):
        return "an object"
    return f"a Go {kind.name}"


# -- time.Time ----------------------------------------------------------------------------------

#: ``time.Parse(time.RFC3339, s)`` as every Go release that wrote or read Docker's files takes
#: it: date, ``T``, time, optional fraction (``.`` or, since Go 1.17, ``,``), ``Z`` or an offset
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:[.,]\d+)?(?:Z|[+-]\d{2}:\d{2})",
    re.ASCII,
)
_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def is_rfc3339(text: str) -> bool:
    """True when Go's ``time.Time.UnmarshalJSON`` reads ``text`` (the string's contents)."""
    m = _RFC3339.fullmatch(text)
    if m is None:
        return False
    year, month, day, hour, minute, second = (int(g) for g in m.groups())
    if not (1 <= month <= 12 and 1 <= day <= _DAYS[month - 1]):
        return False
    if month == 2 and day == 29 and not _leap(year):
        return False
    return hour <= 23 and minute <= 59 and second <= 59


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
