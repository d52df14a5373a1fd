"""Small helpers shared by the stores: read a file, record what went wrong as a Problem."""

from __future__ import annotations

import re
from typing import Any, Protocol

from forensics.evidence import SMALL_LIMIT, PlainDir, ReadFailure
from forensics.formats.ids import id_problem
from forensics.formats.jsonfile import JsonDamage, decode_json, go_int, reads_one_value
from forensics.model import Problem


class Source(Protocol):
    """Where files are read from: the Evidence (paths relative to ROOT) or an open directory
    of it (names inside that directory)."""

    def read_bytes(self, name: str, limit: int = ...) -> bytes: ...

    def path_of(self, name: str) -> str: ...

    def exists(self, name: str) -> bool: ...


def read_json(
    src: Source, name: str, problems: dict[str, Problem], role: str, *, optional: bool = False
) -> Any:
    """The decoded JSON in ``name``, or None with a Problem recorded under ``role``."""
    try:
        data = src.read_bytes(name)
    except ReadFailure as failure:
        if not (optional and failure.kind == "missing"):
            problems[role] = Problem(failure.path, failure.kind, failure.detail)
        return None
    try:
        return decode_json(data, one_value=reads_one_value(name))
    except JsonDamage as damage:
        problems[role] = Problem(src.path_of(name), damage.kind, damage.detail)
        return None


def read_json_object(
    src: Source, name: str, problems: dict[str, Problem], role: str, *, optional: bool = False
) -> dict[str, Any] | None:
    """Like :func:`read_json`, but the document must be a JSON object."""
    value = read_json(src, name, problems, role, optional=optional)
    if (
        isinstance(value, dict)
        or role in problems
        or (value is None and optional and not src.exists(name))
    ):
        return value
    kind = "null" if value is None else f"a JSON {type(value).__name__}"
    problems[role] = Problem(src.path_of(name), "wrong-type", f"{kind}, not an object")
    return None


def read_value(
    src: Source, name: str, problems: dict[str, Problem], role: str, *, optional: bool = False
) -> str | None:
    """A one-line value file (``diff``, ``cache-id``, ``mount-id``, …), whitespace-trimmed.

    An empty or NUL-filled file is recorded as a problem and gives None.
    """
    rel = src.path_of(name)
    try:
        data = src.read_bytes(name, SMALL_LIMIT)
    except ReadFailure as failure:
        if not (optional and failure.kind == "missing"):
            problems[role] = Problem(rel, failure.kind, failure.detail)
        return None
    text = data.decode("utf-8", "replace").strip()
    if not text:
        problems[role] = Problem(rel, "empty", "zero-byte file" if not data else "only whitespace")
        return None
    if not text.strip("\x00"):
        problems[role] = Problem(rel, "nul-filled", f"all {len(data)} bytes are NUL")
        return None
    return text


def clean_value(data: bytes) -> str | None:
    """The value of a one-line value file as :func:`read_value` gives it, or None where
    read_value would record a problem (empty, only whitespace, NUL-filled)."""
    text = data.decode("utf-8", "replace").strip()
    return text if text.strip("\x00") else None


def plain_values(found: PlainDir | None, required: tuple[str, ...]) -> dict[str, str] | None:
    """The values of the value files in ``found`` when reading them the careful way would
    record no problem: every ``required`` file is there and no file is empty or NUL-filled.
    None otherwise (the caller then reads the directory the careful way)."""
    if found is None:
        return None
    values: dict[str, str] = {}
    for name, data in found.files.items():
        value = clean_value(data)
        if value is None:
            return None
        values[name] = value
    if not all(name in values for name in required):
        return None
    return values


def bad_value(problems: dict[str, Problem], role: str, rel: str, detail: str) -> None:
    problems[role] = Problem(rel, "bad-value", detail)


def checked_id(
    value: str | None, grammar: re.Pattern[str], problems: dict[str, Problem], role: str, rel: str
) -> str | None:
    """``value`` when it is an id of ``grammar`` (or None); otherwise None, with the damage
    recorded under ``role`` at ``rel``, the file that holds it. For values that name a file or
    directory: the model never carries one that could lead out of its directory."""
    if value is None:
        return None
    why = id_problem(value, grammar)
    if why is None:
        return value
    bad_value(problems, role, rel, why)
    return None


def as_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def as_int(value: Any) -> int | None:
    """``value`` as a Go ``int`` field reads it (None where Go refuses it)."""
    return go_int(value)


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
