"""Helpers shared by the rules."""

from __future__ import annotations

from collections.abc import Iterator

from forensics.checks.catalog import CHECKS, finding
from forensics.model import Problem
from forensics.report import Finding


def problem_findings(
    prefix: str,
    problems: dict[str, Problem],
    labels: dict[str, str],
    object_type: str,
    object_id: str,
    roles: tuple[str, ...] | None = None,
) -> Iterator[Finding]:
    """Findings ``<prefix>.<role>-missing`` / ``<prefix>.<role>-damaged`` for file problems.

    ``labels`` names each role for the message (``"mount-id"`` → ``"mount-id file"``).
    """
    for role, problem in sorted(problems.items()):
        if roles is not None and role not in roles:
            continue
        check = f"{prefix}.{role}-missing"
        if problem.damage != "missing" or check not in CHECKS:
            check = f"{prefix}.{role}-damaged"
        yield finding(
            check,
            problem.path,
            f"{labels.get(role, role)}: {problem.detail}",
            object_type=object_type,
            object_id=object_id,
            damage=problem.damage,
        )


def short(value: str, n: int = 12) -> str:
    """A digest or id shortened as Docker prints it."""
    hexpart = value.split(":", 1)[1] if value.startswith("sha256:") else value
    return hexpart[:n]
