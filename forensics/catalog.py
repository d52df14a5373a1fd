"""A catalogue of checks: every check id a report can hold, with its severity and a one-line
summary. The one place where a severity is decided; a finding takes its severity from here.

Two instances: ``verify``'s (:data:`forensics.checks.catalog.CHECKS`: findings at a path under
ROOT, :class:`forensics.report.Finding`) and ``thin check``'s
(:data:`forensics.thin.findings.CHECKS`: findings at a metadata block,
:class:`forensics.thin.findings.ThinFinding`). Each man page lists its catalogue whole
(tests/test_manpages.py, tests/test_thin_cli.py).

A check id named in code that the catalogue does not hold is a bug: looking it up raises
:class:`UnknownCheck`, in the catalogue as in :class:`FindingsByCheck` — where a misspelt id
would otherwise find no findings, and a repair plan nothing, without a word.

Severities: ``error`` — the program that owns the data (dockerd, the kernel) fails, refuses or
loses data; ``warning`` — waste, leftovers, things that break later; ``info`` — facts worth
knowing that are no damage. Each catalogue says what they mean for its findings.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

ERROR, WARNING, INFO = "error", "warning", "info"
#: the severities, most severe first
SEVERITIES = (ERROR, WARNING, INFO)


@dataclass(frozen=True)
class Check:
    """A check id (``area.what``), its severity and what a finding of it means."""

    id: str
    severity: str
    summary: str


class UnknownCheck(KeyError):
    """A check id that the catalogue does not hold: a bug of the code that names it."""

    def __str__(self) -> str:  # KeyError would show the repr of its argument
        return str(self.args[0])


class Catalog(Mapping[str, Check]):
    """The checks of one report, by id, in the order they were declared."""

    def __init__(self, name: str, checks: Iterable[Check]) -> None:
        self.name = name
        self._checks: dict[str, Check] = {}
        for check in checks:
            if check.id in self._checks:
                raise ValueError(f"{check.id}: declared twice in the {name} catalogue")
            if check.severity not in SEVERITIES:
                raise ValueError(f"{check.id}: no severity {check.severity!r}")
            self._checks[check.id] = check

    def __getitem__(self, check: str) -> Check:
        try:
            return self._checks[check]
        except KeyError:
            raise UnknownCheck(f"{check!r} is no check of the {self.name} catalogue") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._checks)

    def __len__(self) -> int:
        return len(self._checks)

    def __repr__(self) -> str:
        return f"<Catalog {self.name}: {len(self)} checks>"


class _HasCheck(Protocol):
    @property
    def check(self) -> str: ...


F = TypeVar("F", bound=_HasCheck)


class FindingsByCheck(Generic[F]):
    """Findings grouped by their check id, each group in the order given. ``by_check[id]`` is
    a new list of that check's findings (empty when there are none); an id the catalogue does
    not hold raises :class:`UnknownCheck` instead of finding nothing."""

    def __init__(self, catalog: Catalog, findings: Iterable[F] = ()) -> None:
        self.catalog = catalog
        self._groups: dict[str, list[F]] = {}
        for finding in findings:
            self.add(finding)

    def add(self, finding: F) -> None:
        self._groups.setdefault(self.catalog[finding.check].id, []).append(finding)

    def __getitem__(self, check: str) -> list[F]:
        self.catalog[check]  # an id of the catalogue, or UnknownCheck
        return list(self._groups.get(check, ()))

    def checks(self) -> list[str]:
        """The ids that have findings, in the order their first finding came."""
        return list(self._groups)
