"""Findings and their rendering as text, JSON and JSON lines."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

from forensics.catalog import SEVERITIES as SEVERITIES  # re-exported: renderers take it here


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem: a stable check id, a severity, the path at fault (relative to ROOT).

    ``object_type``/``object_id`` name the image, layer, container, mount or volume concerned;
    ``damage`` says how a file is damaged (missing, empty, truncated, …) where that applies.

    One damage often shows in several places (a missing layer in every image that stacks on it).
    Such a cascade is reported under its cause: each consequence keeps its own finding, with
    ``caused_by`` the :attr:`key` of the cause (``<check>:<path>``); the cause lists in
    ``affects`` every object it breaks, disagrees with or orphans, as ``<type>:<id>``
    (``image:sha256:…``, ``container:<id>``, ``link:<LINK>``, …), and names them in its message.
    Summaries count causes only (see :func:`count_by_severity`).
    """

    check: str
    severity: str
    path: str
    message: str
    object_type: str | None = None
    object_id: str | None = None
    damage: str | None = None
    caused_by: str | None = None
    affects: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """How a consequence names this finding in ``caused_by``: its check id, a colon, its
        path (split at the first colon: check ids hold none)."""
        return f"{self.check}:{self.path}"

    def sort_key(self) -> tuple[str, str, str, str]:
        return (self.path, self.check, self.object_id or "", self.message)

    def as_dict(self) -> dict[str, Any]:
        doc = {name: getattr(self, name) for name in FINDING_FIELDS}
        doc["affects"] = list(self.affects)
        return doc


#: the fields of a Finding, in order (``asdict`` without its deep copy of each value)
FINDING_FIELDS = tuple(f.name for f in fields(Finding))


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    return sorted(set(findings), key=Finding.sort_key)


def count_by_severity(findings: Iterable[Finding]) -> dict[str, int]:
    """Findings by severity, each cause once: a consequence (``caused_by`` set) is not counted."""
    counts = Counter(f.severity for f in findings if f.caused_by is None)
    return {s: counts.get(s, 0) for s in SEVERITIES}


#: code points that a terminal acts on or that reorder or break what is shown, beyond the C0
#: controls and DEL: the C1 controls (U+009B is CSI, U+009D OSC: xterm and others obey them when
#: decoded from UTF-8), the line and paragraph separators (a new line to some terminals and
#: editors), and the bidirectional embeddings, overrides, isolates and marks that make a name
#: read otherwise than its characters go ("Trojan Source", CVE-2021-42574)
_UNSAFE = frozenset(
    [*range(0x80, 0xA0), 0x061C, 0x200E, 0x200F, 0x2028, 0x2029, *range(0x202A, 0x202F)]
    + [*range(0x2066, 0x206A)]
)


#: the JSON escape of each unsafe code point, for :func:`json_safe`
_JSON_ESCAPES = {code: f"\\u{code:04x}" for code in _UNSAFE}


def json_safe(text: str) -> str:
    """JSON text with the unsafe code points (:data:`_UNSAFE`) written as ``\\uNNNN``: the same
    document to a JSON reader, and nothing a terminal acts on when it is printed (the C0
    controls are escaped by the encoder already). They can only stand inside strings."""
    return text if text.isascii() else text.translate(_JSON_ESCAPES)


def printable(text: str) -> str:
    """``text`` safe for a terminal: C0 controls and DEL as ``\\xNN``, a byte that was not
    UTF-8 (kept as a surrogate escape) as ``\\xNN`` of that byte, and the other unsafe code
    points (:data:`_UNSAFE`) as ``\\uNNNN``, the escape JSON gives them."""
    if text.isprintable() and text.isascii():
        return text
    out = []
    for ch in text:
        code = ord(ch)
        if code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code in _UNSAFE:
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def at_least(findings: Iterable[Finding], severity: str) -> list[Finding]:
    """The findings of ``severity`` and the more severe ones (``--severity``)."""
    most = SEVERITIES.index(severity)
    return [f for f in findings if SEVERITIES.index(f.severity) <= most]


def finding_line(f: Finding) -> str:
    """``severity check path: message`` on one line, safe for a terminal."""
    return printable(f"{f.severity:<7} {f.check:<30} {f.path or '.'}: {f.message}")


def findings_text(findings: list[Finding]) -> str:
    """The findings one a line, then their count by severity (the plain text rendering)."""
    lines = [finding_line(f) for f in findings]
    counts = count_by_severity(findings)
    lines.append(", ".join(f"{n} {s}{'s' if n != 1 else ''}" for s, n in counts.items()))
    return "\n".join(lines) + "\n"


def findings_jsonl(findings: list[Finding]) -> str:
    return "".join(json.dumps(f.as_dict(), sort_keys=True) + "\n" for f in findings)


def to_json(document: dict[str, Any]) -> str:
    return json_safe(json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False)) + "\n"
