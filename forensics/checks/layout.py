"""Rules on the root as a whole: what layout it is, and what the daemon would ignore."""

from __future__ import annotations

from collections.abc import Iterator

from forensics.checks.catalog import finding
from forensics.model import Host
from forensics.report import Finding


def check_layout(host: Host) -> Iterator[Finding]:
    if host.layout == "unknown":
        yield finding(
            "layout.unknown-root",
            "",
            "no containers/, image/, graph/ or volumes/: this does not look like a Docker root",
        )
    for check, path, message in host.notes:
        yield finding(check, path, message)
    problem = host.problems.get("linkgraph")
    if problem is not None:
        yield finding("linkgraph.damaged", problem.path, problem.detail, damage=problem.damage)
    yield from _buildkit_dbs(host)


def _buildkit_dbs(host: Host) -> Iterator[Finding]:
    """BuildKit databases that the store could not decode: while one is damaged, no unreferenced
    driver directory is known not to be BuildKit's."""
    for _, problem in sorted(host.buildkit_damaged.items()):
        yield finding(
            "buildkit.db-damaged",
            problem.path,
            f"{problem.detail}; which driver directories are BuildKit's is in doubt",
            damage=problem.damage,
        )


def check_volumes(host: Host) -> Iterator[Finding]:
    for volume in host.volumes.values():
        if not volume.has_data:
            yield finding(
                "volume.data-missing",
                volume.path,
                "the volume directory has no _data",
                object_type="volume",
                object_id=volume.name,
            )
