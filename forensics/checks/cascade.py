"""One cause, one finding: the consequences of one damage joined to the finding of their cause.

The relations (:mod:`forensics.checks.causes`, :mod:`forensics.checks.causes_driver`) say, from
the host, which findings follow from which, as :class:`Cascade` s: a cause — a finding of the
rules, or one made there for a missing object that two or more findings name — and its
consequences. :func:`link_cascades` joins them:

- a consequence keeps its own finding (its object is broken all the same, and repair may act on
  it), with ``caused_by`` set to the :attr:`~forensics.report.Finding.key` of the root cause (a
  consequence of a consequence belongs to the first cause);
- the cause lists in ``affects`` every object it breaks, contradicts or leaves orphaned
  (``<type>:<id>``), and its message names them, a handful of each kind;
- a consequence more severe than its cause stays a finding of its own, so that a summary that
  counts causes only never hides an error.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from forensics.catalog import FindingsByCheck
from forensics.checks.catalog import CHECKS
from forensics.drivers import INIT_SUFFIX
from forensics.report import SEVERITIES, Finding

#: what a cause does to an object it affects, in the order its message says it
BREAKS = "it breaks {}"
CONTRADICTS = "it disagrees with {}"
ORPHANS = "it leaves {} orphaned"
VERBS = (BREAKS, CONTRADICTS, ORPHANS)

#: names shown per kind of object before "… N more"
HANDFUL = 5
#: an object shown by its short id, as no person calls it: listed after those with names
SHORT_ID = re.compile(rf"[0-9a-f]{{12}}({re.escape(INIT_SUFFIX)})?")

#: kinds of affected object: singular and plural, in the order a message lists them
KINDS = {
    "image": ("image", "images"),
    "layer": ("layer", "layers"),
    "container": ("container", "containers"),
    "tag": ("tag", "tags"),
    "link": ("link", "links"),
    "driver-dir": ("driver directory", "driver directories"),
    "device": ("thin device", "thin devices"),
    "mount-point": ("mount point", "mount points"),
}


@dataclass
class Cascade:
    """A cause and what follows from it: findings (each with the object it concerns, or None
    when that is the cause's own object) and objects broken without a finding of their own."""

    cause: Finding
    consequences: list[tuple[Finding, str, str | None]] = field(default_factory=list)
    affected: list[tuple[str, str]] = field(default_factory=list)

    def add(self, consequence: Finding, obj: str | None, verb: str = BREAKS) -> None:
        self.consequences.append((consequence, verb, obj))

    def affect(self, obj: str, verb: str = BREAKS) -> None:
        self.affected.append((verb, obj))


class FindingIndex:
    """The findings by check id and by (check id, object id), in the order the rules made them.
    A check id the catalogue does not hold raises :class:`~forensics.catalog.UnknownCheck`: a
    misspelt relation would otherwise find no cause, without a word."""

    def __init__(self, findings: Iterable[Finding]) -> None:
        self.by_check = FindingsByCheck(CHECKS)
        self.by_object: dict[tuple[str, str | None], list[Finding]] = defaultdict(list)
        for f in findings:
            self.by_check.add(f)
            self.by_object[(f.check, f.object_id)].append(f)

    def of(self, *checks: str) -> list[Finding]:
        return [f for check in checks for f in self.by_check[check]]

    def about(self, check: str, object_id: str | None) -> list[Finding]:
        CHECKS[check]  # a check of the catalogue, or UnknownCheck
        return self.by_object.get((check, object_id), [])

    def first(self, checks: Iterable[str], object_id: str | None) -> Finding | None:
        for check in checks:
            for found in self.about(check, object_id):
                return found
        return None


_RANK = {s: n for n, s in enumerate(SEVERITIES)}  # error 0, warning 1, info 2


def link_cascades(
    findings: list[Finding], cascades: Iterable[Cascade], name: Callable[[str], str]
) -> list[Finding]:
    """``findings`` with each cascade's consequences marked ``caused_by`` and its cause telling
    what it affects (``name`` says an affected ``<type>:<id>`` in words); new causes that
    ended up with consequences are added."""
    cascades = list(cascades)
    if not cascades:
        return findings
    links = _Links(set(findings))
    for cascade in cascades:
        links.add(cascade)
    affects = links.affects()
    out = []
    for f in [*findings, *links.new_causes]:
        if f in links.cause_of:
            out.append(replace(f, caused_by=links.root(f).key))
        elif f in affects:
            out.append(_with_affects(f, affects[f], name))
        else:
            out.append(f)
    return out


class _Links:
    def __init__(self, existing: set[Finding]) -> None:
        self.existing = existing
        self.cause_of: dict[Finding, Finding] = {}  # consequence → its direct cause
        self.direct: dict[Finding, list[tuple[str, str]]] = defaultdict(list)
        self.new_causes: list[Finding] = []

    def add(self, cascade: Cascade) -> None:
        cause = cascade.cause
        linked = 0
        for f, verb, obj in cascade.consequences:
            if f in self.cause_of or _RANK[f.severity] < _RANK[cause.severity]:
                continue  # claimed by an earlier cause, or graver than this one
            if self.root(cause) == f:
                continue  # would close a loop
            self.cause_of[f] = cause
            linked += 1
            if obj is not None:
                self.direct[cause].append((verb, obj))
        if cause not in self.existing:
            if not linked:
                return
            self.existing.add(cause)
            self.new_causes.append(cause)
        self.direct[cause].extend(cascade.affected)

    def root(self, f: Finding) -> Finding:
        seen = {f}
        while f in self.cause_of:
            f = self.cause_of[f]
            if f in seen:
                break
            seen.add(f)
        return f

    def affects(self) -> dict[Finding, list[tuple[str, str]]]:
        """Each root cause → what it and the causes below it affect."""
        out: dict[Finding, list[tuple[str, str]]] = defaultdict(list)
        for cause, what in self.direct.items():
            out[self.root(cause)].extend(what)
        return {cause: what for cause, what in out.items() if what}


def _with_affects(f: Finding, what: list[tuple[str, str]], name: Callable[[str], str]) -> Finding:
    objects = sorted({obj for _, obj in what}, key=lambda o: (_kind_order(o), o))
    pairs = set(what)
    clauses = []
    for verb in VERBS:
        these = [obj for obj in objects if (verb, obj) in pairs]
        if these:
            clauses.append(verb.format(_say_objects(these, name)))
    message = f.message + "; " + "; ".join(clauses) if clauses else f.message
    return replace(f, message=message, affects=tuple(objects))


def _kind_order(obj: str) -> int:
    kind = obj.partition(":")[0]
    return list(KINDS).index(kind) if kind in KINDS else len(KINDS)


def _say_objects(objects: list[str], name: Callable[[str], str]) -> str:
    """``3 images (a, b, c), layer d and 7 containers (e, f, g, h, i, … 2 more)``."""
    by_kind: dict[str, list[str]] = defaultdict(list)
    for obj in objects:
        by_kind[obj.partition(":")[0]].append(name(obj))
    parts = []
    for kind, names in by_kind.items():
        one, many = KINDS.get(kind, (kind, kind + "s"))
        names.sort(key=lambda n: (SHORT_ID.fullmatch(n) is not None, n))  # names first
        if len(names) == 1:
            parts.append(f"{one} {names[0]}")
            continue
        shown = ", ".join(names[:HANDFUL])
        more = f", … {len(names) - HANDFUL} more" if len(names) > HANDFUL else ""
        parts.append(f"{len(names)} {many} ({shown}{more})")
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
