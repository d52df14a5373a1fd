"""What ``verify --deep`` found in a containerd store (:mod:`forensics.layers.containerd_deep`
read it), as findings: each blob whose sha256 is not its name; each layer blob that does not
decompress, read as a tar or hash to its DiffID; each file of a committed snapshot that
differs from its layer's tar, named by the snapshot and the file; and, said once, the unpacked
layers whose blob is gone (their snapshots cannot be held against anything).

Paths are relative to the root the store was read from, as the store's other findings."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from forensics.checks.catalog import finding
from forensics.layers.containerd_deep import BlobReport, Skip
from forensics.report import Finding

#: how many snapshots the finding of those not deep-checked names
SHOWN = 3


def containerd_deep_findings(
    reports: Iterable[BlobReport], skipped: list[Skip]
) -> Iterator[Finding]:
    for report in reports:
        for problem in report.problems:
            on_snapshot = bool(problem.snapshot)
            yield finding(
                f"containerd.{problem.kind}",
                problem.path,
                problem.message,
                object_type="snapshot" if on_snapshot else "blob",
                object_id=problem.snapshot if on_snapshot else report.digest,
                damage=problem.damage,
            )
    if skipped:
        shown = ", ".join(f"{s.snapshot} ({s.why})" for s in skipped[:SHOWN])
        more = len(skipped) - SHOWN
        count = f"{len(skipped)} unpacked layer snapshot{'s' if len(skipped) != 1 else ''}"
        yield finding(
            "containerd.layer-not-deep-checked",
            skipped[0].path,
            f"{count} not deep-checked, their layer blobs being gone (a node may discard "
            f"them once unpacked): {shown}" + (f" and {more} more" if more > 0 else ""),
        )
