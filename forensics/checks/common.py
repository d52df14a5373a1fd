"""Helpers shared by the rules."""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

from forensics.checks.catalog import CHECKS, finding
from forensics.formats.ids import short as short  # where the rules have always found it
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
            _problem_message(labels.get(role, role), problem.detail),
            object_type=object_type,
            object_id=object_id,
            damage=problem.damage,
        )


@lru_cache(maxsize=4096)
def _problem_message(label: str, detail: str) -> str:
    """``label: detail``, one string for every finding that says the same (a million
    container directories without a config give a million equal messages)."""
    return f"{label}: {detail}"
