"""``verify --deep``: every layer rebuilt from its tar-split and its files, in parallel.

The per-layer work is in :mod:`forensics.layers` (a containerd store's blobs and snapshots:
:mod:`forensics.layers.containerd_deep`); this module runs it over a host (forked
workers, a progress bar in bytes), turns what it found into findings with the catalogue's
severities (and says which layers it could not rebuild; what a copy of the root changed the
same way on every file is said once, :mod:`forensics.layers.copy_artefacts`), and computes
what each container changed, for the report and the SQLite export.

A layer whose check raises (a bug) does not end the run: it is reported as
``layer.check-failed`` on that layer, and the other layers are checked
(``DOCKER_FORENSICS_DEBUG=1`` prints the traceback on stderr).
"""

from __future__ import annotations

import os
import sys
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from forensics.checks.catalog import finding
from forensics.containerd_model import ContainerdHost
from forensics.drivers import DEVICEMAPPER_POOL
from forensics.evidence import Evidence
from forensics.layers import (
    DiffResult,
    LayerJob,
    LayerProblem,
    LayerReport,
    Skipped,
    container_diff,
    diff_plan,
    plan_layers,
    verify_layer,
)
from forensics.layers.copy_artefacts import explain_copy_artefacts
from forensics.layers.devices import close_pools
from forensics.model import Host
from forensics.parallel import map_entries
from forensics.progress import ByteBar
from forensics.report import Finding

if TYPE_CHECKING:
    from forensics.layers.containerd_deep import BlobReport

#: already reported by the quick checks of every modern layer
QUICK_CHECKS = {"layer.tar-split-missing"}


@dataclass
class DeepResult:
    layers: list[LayerReport] = field(default_factory=list)
    diffs: list[DiffResult] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    #: the containerd store's blobs as they were checked (a layer blob: its members read)
    blobs: list[BlobReport] = field(default_factory=list)

    def read_counts(self) -> tuple[int, int, int]:
        """Layers, files and bytes read and checked: the Docker layers' and, of a containerd
        store, its layer blobs and their members (the bytes: every blob file read)."""
        layer_blobs = [b for b in self.blobs if b.layer]
        return (
            len(self.layers) + len(layer_blobs),
            sum(r.files_read for r in self.layers) + sum(b.members for b in layer_blobs),
            sum(r.bytes_read for r in self.layers) + sum(b.bytes_read for b in self.blobs),
        )


def verify_deep(ev: Evidence, host: Host) -> DeepResult:
    result = DeepResult()
    jobs, skipped = plan_layers(host)
    result.findings.extend(_skipped_findings(skipped))
    sizes = {
        layer.id: layer.size or 0 for h in (host, host.legacy) if h for layer in h.layers.values()
    }
    bar = ByteBar("layers", sum(sizes.get(job.layer_id, 0) for job in jobs))
    try:
        for report in map_entries(ev, _verify_one, jobs, min_parallel=2, chunk=4):
            bar.update(report.bytes_read)
            result.layers.append(report)
    finally:
        bar.close()
        close_pools(ev)
    result.findings.extend(explain_copy_artefacts(result.layers))
    for report in result.layers:
        result.findings.extend(_layer_findings(report))
    if host.containerd is not None:
        result.blobs, findings = _containerd_findings(ev, host.containerd)
        result.findings.extend(findings)
    for cid in sorted(host.containers):
        plan = diff_plan(host, cid)
        if not isinstance(plan, str):
            diff = container_diff(plan, ev)
            result.diffs.append(diff)
            result.findings.extend(_diff_findings(diff))
    return result


def _containerd_findings(
    ev: Evidence, ctd: ContainerdHost
) -> tuple[list[BlobReport], list[Finding]]:
    """The containerd store's blobs hashed and its layers held against their snapshots
    (:mod:`forensics.layers.containerd_deep`), read through the evidence it lies in."""
    from forensics.checks.containerd_deep import containerd_deep_findings
    from forensics.layers.containerd_deep import check_store

    if not ctd.external:
        reports, skipped = check_store(ev, ctd)
    else:
        with Evidence(ctd.location) as store_ev:
            reports, skipped = check_store(store_ev, ctd)
    return reports, list(containerd_deep_findings(reports, skipped))


def _verify_one(ev: Evidence, job: LayerJob) -> LayerReport:
    """One layer checked; an exception (a bug: bad evidence is reported, never raised) is
    a finding on that layer, so that a worker's failure never ends the run."""
    try:
        return verify_layer(job, ev=ev)
    except Exception as exc:  # any bug in one layer's check
        return _failed(job, exc)


def _failed(job: LayerJob, exc: Exception) -> LayerReport:
    if _debug():
        traceback.print_exc(file=sys.stderr)
    report = LayerReport(
        layer_id=job.layer_id,
        driver=job.driver,
        tar_split=job.tar_split,
        content_dir=job.content_dir,
        recorded_diff_id=job.recorded_diff_id,
    )
    what = f"{type(exc).__name__}: {exc}"[:300]
    report.problems.append(
        LayerProblem(
            "check-failed",
            job.tar_split,
            f"layer {job.layer_id}: the check stopped on an internal error ({what}); "
            "its files were not all checked (set DOCKER_FORENSICS_DEBUG=1 to see the traceback)",
        )
    )
    return report


def _debug() -> bool:
    return os.environ.get("DOCKER_FORENSICS_DEBUG", "").lower() in ("1", "true", "yes")


def _diff_findings(diff: DiffResult) -> list[Finding]:
    """What a container's diff could not compare because it lies too deep (a missing layer
    directory is reported by the quick checks already)."""
    return [
        finding(
            "layer.path-too-deep",
            path,
            f"container {diff.container_id}: {message}",
            object_type="container",
            object_id=diff.container_id,
        )
        for path, message in diff.too_deep
    ]


def _layer_findings(report: LayerReport) -> list[Finding]:
    return [
        finding(
            issue.check,
            issue.path,
            issue.message,
            object_type="layer",
            object_id=report.layer_id,
            damage=issue.damage,
        )
        for issue in report.issues()
        if issue.check not in QUICK_CHECKS
    ]


def _skipped_findings(skipped: list[Skipped]) -> list[Finding]:
    """One info finding per reason (and driver) that layers were not rebuilt: said plainly
    rather than left out in silence."""
    out = []
    for (reason, driver), count in sorted(Counter((s.reason, s.driver) for s in skipped).items()):
        layers = f"{count} layer{'s' if count != 1 else ''}"
        path = driver
        if reason == "driver":
            why = (
                f"verify --deep does not rebuild {driver} layers (their files are in no "
                "directory that this tool knows)"
            )
        elif reason == "no-pool":
            why = (
                f"the {driver} layers' files are in a thin pool that is no pair of files in "
                f"ROOT ({DEVICEMAPPER_POOL.pool_data} and {DEVICEMAPPER_POOL.metadata_name}: "
                "a direct-lvm pool is a block device of the host)"
            )
        elif reason == "no-device":
            records = DEVICEMAPPER_POOL.records
            why = f"{driver} layers without a usable device record ({records}/)"
            path = records
        else:
            why = (
                "legacy layers without tar-data.json.gz (created by Docker 1.7 or older) "
                "cannot be rebuilt"
            )
            path = "graph"
        out.append(finding("layer.not-deep-checked", path, f"{why}: {layers} not deep-checked"))
    return out
