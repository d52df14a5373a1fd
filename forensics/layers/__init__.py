"""Layer content: deep verification from tar-split (DiffIDs, per-file crc64) and container diffs.

Entry points (one job each, plain picklable inputs):

* ``reassemble.layer_jobs(host)`` — a :class:`LayerJob` per layer of a read Host
  (``plan_layers`` also names the layers that cannot be rebuilt);
* ``reassemble.verify_layer(job)`` — one layer checked → ``report.LayerReport`` (with the
  TarSum of a legacy layer whose graph checksum is one: ``tarsum.TarSum``);
* ``diff.diff_plan(host, cid)`` then ``diff.container_diff(plan)`` — what a container changed,
  as ``docker diff`` prints it.
"""

from forensics.layers.diff import Change, DiffPlan, DiffResult, container_diff, diff_plan
from forensics.layers.reassemble import (
    LayerJob,
    Skipped,
    content_dir,
    layer_jobs,
    plan_layers,
    verify_layer,
)
from forensics.layers.report import FileRecord, Issue, LayerProblem, LayerReport

__all__ = [
    "Change",
    "DiffPlan",
    "DiffResult",
    "FileRecord",
    "Issue",
    "LayerJob",
    "LayerProblem",
    "LayerReport",
    "Skipped",
    "container_diff",
    "content_dir",
    "diff_plan",
    "layer_jobs",
    "plan_layers",
    "verify_layer",
]
