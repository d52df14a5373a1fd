"""What a repair plan is made of: the actions that change ROOT, the findings left alone, and
the plan that holds both (see :mod:`forensics.repair.plan`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from forensics.report import Finding

#: the name of the repaired pool metadata copy (action ``copy-out``) in the quarantine run
POOL_COPY = "devicemapper-metadata.repaired"


@dataclass
class Action:
    """One change to ROOT."""

    action: str  # quarantine, relink, rewrite, create
    path: str  # relative to ROOT
    reason: str
    checks: list[str]
    safety: str
    unit: str  # what the action belongs to: "container <id>", "driver-dir <id>", …
    kind: str | None = None  # what ``path`` is now: dir, file, symlink, other (None: absent)
    summary: str = ""  # the reason in a few words, for the text output
    target: str | None = None  # relink: the symlink's target
    content: bytes | None = None  # rewrite, create: the new contents
    mode: int | None = None  # rewrite, create: the new file's mode
    details: dict[str, Any] = field(default_factory=dict)
    #: (st_dev, st_ino) of ``path`` when it was planned: the entry the steps may move or read
    identity: tuple[int, int] | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "action": self.action,
            "path": self.path,
            "reason": self.reason,
            "checks": self.checks,
            "safety": self.safety,
            "unit": self.unit,
            "summary": self.summary,
        }
        if self.kind is not None:
            out["kind"] = self.kind
        if self.target is not None:
            out["target"] = self.target
        if self.content is not None:
            out["sha256"] = hashlib.sha256(self.content).hexdigest()
        if self.details:
            out["details"] = self.details
        return out


@dataclass
class Skipped:
    """A finding the plan does not act on, and why."""

    check: str
    path: str
    why: str

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.check, "path": self.path, "why": self.why}


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def errors_left(self, findings: list[Finding]) -> list[Finding]:
        """The findings of severity error the plan does not fix: those it leaves alone, and
        those only a copy written into the quarantine answers (ROOT keeps the damage until the
        copy is put in place). Counted as verify counts them: a consequence (``caused_by``
        set) whose cause is left too is that cause's, not one more; one whose cause the plan
        fixes stays on its own (an orphan directory whose ownership was in doubt)."""
        skipped = {(s.check, s.path) for s in self.skipped}
        copied = {c for a in self.actions if a.action == "copy-out" for c in a.checks}
        left = [
            f
            for f in findings
            if f.severity == "error" and ((f.check, f.path) in skipped or f.check in copied)
        ]
        causes_left = {f.key for f in left}
        return [f for f in left if f.caused_by is None or f.caused_by not in causes_left]

    def as_dict(self) -> dict[str, Any]:
        return {
            "actions": [a.as_dict() for a in self.actions],
            "skipped": [s.as_dict() for s in self.skipped],
        }
