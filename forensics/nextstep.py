"""What verify's text report advises next: how many of its errors and warnings a repair would
fix, counted from the repair planner's own plan (made read-only, as ``repair --dry-run`` makes
it), never guessed from the check ids."""

from __future__ import annotations

import shlex
from collections import defaultdict

from forensics.api.root import DEFAULT_ROOT
from forensics.evidence import Evidence
from forensics.model import Host
from forensics.report import Finding


def repair_command(root: str, containerd_root: str | None = None) -> str:
    """The command line that shows the repair plan of ``root`` (as the user named it), with
    the containerd root given apart, if any."""
    where = "" if root == DEFAULT_ROOT else f" {shlex.quote(root)}"
    apart = f" --containerd-root {shlex.quote(containerd_root)}" if containerd_root else ""
    return f"docker-forensics repair --dry-run{where}{apart}"


def fixable(ev: Evidence, host: Host, findings: list[Finding]) -> int:
    """How many of the errors and warnings in ``findings`` the repair plan answers: every one
    that the planner does not list among those it leaves alone. Counted as the summary counts,
    each cause once: a cause is fixed when the plan answers it, or answers every one of its
    consequences (``caused_by``)."""
    from forensics.repair.plan import make_plan  # the planner's modules load only when needed

    plan = make_plan(ev, host, findings)
    left = {(s.check, s.path) for s in plan.skipped}
    consequences: dict[str, list[Finding]] = defaultdict(list)
    for f in findings:
        if f.caused_by is not None:
            consequences[f.caused_by].append(f)

    def answered(f: Finding) -> bool:
        return (f.check, f.path) not in left

    def fixed(f: Finding) -> bool:
        these = consequences.get(f.key, [])
        return answered(f) or (bool(these) and all(answered(c) for c in these))

    return sum(
        1
        for f in findings
        if f.severity in ("error", "warning") and f.caused_by is None and fixed(f)
    )
