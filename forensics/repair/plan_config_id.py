"""A container whose config names another ID than its directory, in a repair plan.

dockerd refuses such a config (``Container <ID> is stored at <dir>``) and skips the container.
When everything else that names the container agrees with its directory — its mount record
and the driver directories it names (legacy: the driver directories named after it), the paths
its config records (``LogPath``, ``HostnamePath``, ``HostsPath``, ``ResolvConfPath``) and its
log file — only the ID field is wrong: it is set back to the directory's, every other byte of
the file kept (:mod:`.jsonedit`), the original quarantined. Otherwise nobody can tell which
container this is, and it is quarantined whole, as a config that cannot be read is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from forensics.evidence import ReadFailure
from forensics.formats.ids import MOUNT_ID, short
from forensics.formats.jsonfile import JsonDamage, decode_json, field
from forensics.model import Container
from forensics.repair.actions import Action
from forensics.repair.jsonedit import NotEditable, read_member_value, replace_member_value
from forensics.repair.planbase import PlannerBase, reason_of
from forensics.report import Finding

CHECK = "container.id-mismatch"
#: the config's own paths into its container directory
PATH_FIELDS = ("LogPath", "HostnamePath", "HostsPath", "ResolvConfPath")
_CONTAINER_IN_PATH = re.compile(r"/containers/([^/]+)/")
_LOG_FILE = re.compile(r"(.+)-json\.log")
CONFIG_LIMIT = 16 << 20

REWRITE_SAFETY = (
    "dockerd refuses a config whose ID is not its directory's ('Container … is stored at …') "
    "and skips the container; its mount record, driver directories, recorded paths and log file "
    "all name this directory, so only the ID is set back to it, every other byte of the file "
    "kept, and the original is quarantined"
)
MISMATCH_SAFETY = (
    "dockerd refuses a config whose ID is not its directory's ('Container … is stored at …') "
    "and skips the container; what else names it does not agree on which container it is: it is "
    "moved whole, logs included, and --undo puts it back"
)


@dataclass
class IdMismatch:
    finding: Finding
    container: Container
    rewrite: Action | None  # None: quarantined whole
    why: str  # why the rewrite is safe, or why not


class ConfigIdPlanning(PlannerBase):
    def _id_mismatches(self) -> list[IdMismatch]:
        """Each container.id-mismatch: rewritten where the evidence agrees, else whole."""
        if not hasattr(self, "_id_cache"):
            self._id_cache = [
                self._judge_id_mismatch(f, self.host.containers[f.object_id or ""])
                for f in self.by_check[CHECK]
                if (f.object_id or "") in self.host.containers
            ]
        return self._id_cache

    def _config_id_rewrites(self) -> list[Action]:
        return [m.rewrite for m in self._id_mismatches() if m.rewrite is not None]

    def _config_id_whole(self) -> list[IdMismatch]:
        return [m for m in self._id_mismatches() if m.rewrite is None]

    def _judge_id_mismatch(self, f: Finding, c: Container) -> IdMismatch:
        config = c.config_file or f.path
        try:
            data = self.ev.read_bytes(config, CONFIG_LIMIT)
            doc = decode_json(data)
        except ReadFailure as failure:
            return IdMismatch(f, c, None, f"{config} cannot be read again: {failure.detail}")
        except JsonDamage:
            return IdMismatch(f, c, None, f"{config} cannot be read again")
        if not isinstance(doc, dict):
            return IdMismatch(f, c, None, f"{config} is no JSON object")
        disagreement = self._disagreement(c, doc)
        if disagreement:
            return IdMismatch(f, c, None, disagreement)
        try:
            new, old = replace_member_value(data, "ID", c.id)
            if read_member_value(new, "ID") != c.id:
                raise NotEditable("the ID does not read back")
        except NotEditable as exc:
            return IdMismatch(f, c, None, f"its ID cannot be set alone ({exc})")
        return IdMismatch(f, c, self._rewrite_action(f, c, config, new, old), REWRITE_SAFETY)

    def _rewrite_action(
        self, f: Finding, c: Container, config: str, new: bytes, old: str
    ) -> Action:
        was = old if len(old) <= 80 else old[:77] + "…"
        return Action(
            "rewrite",
            config,
            reason_of(f, f"the ID set back to its directory's, {was} kept in the quarantine"),
            [f.check],
            REWRITE_SAFETY,
            f"container {c.id}",
            kind=self._kind(config),
            summary=f"the ID in the config of container {short(c.id)} set back to its directory's",
            content=new,
            mode=self._mode(config),
            details={"was": was, "now": c.id},
        )

    def _disagreement(self, c: Container, doc: dict[str, Any]) -> str | None:
        """Why the evidence does not say that the config belongs to its directory (None: it
        does)."""
        if c.config_id and (c.config_id in self.host.containers or c.config_id in self.host.mounts):
            return f"its ID names {short(c.config_id)}, which has a directory or a mount record"
        return (
            self._driver_disagreement(c)
            or self._paths_disagreement(c, doc)
            or self._log_disagreement(c, doc)
        )

    def _driver_disagreement(self, c: Container) -> str | None:
        if self.host.layout == "legacy":
            if c.id not in self.host.driver_dirs:
                return f"{self.base} has no layer named after it"
            return None
        mount = self.host.mounts.get(c.id)
        if mount is None or mount.problems:
            return "its mount record is missing or damaged"
        for role, name in (("mount-id", mount.mount_id), ("init-id", mount.init_id)):
            if name is None and role == "init-id":
                continue
            if not name or not MOUNT_ID.fullmatch(name) or name not in self.host.driver_dirs:
                return f"the driver directory its mount record's {role} names is missing"
        return None

    def _paths_disagreement(self, c: Container, doc: dict[str, Any]) -> str | None:
        for name in PATH_FIELDS:
            value = field(doc, name)
            if not isinstance(value, str) or not value:
                continue
            named = _CONTAINER_IN_PATH.findall(value)
            if not named or named[-1] != c.id:
                return f"its {name} names {value[:120]!r}, not its directory"
        return None

    def _log_disagreement(self, c: Container, doc: dict[str, Any]) -> str | None:
        logs = {m.group(1) for n in self.ev.names(c.path) if (m := _LOG_FILE.fullmatch(n))}
        if logs - {c.id}:
            return f"its directory holds the log file of {short(sorted(logs - {c.id})[0])}"
        if field(doc, "LogPath") and c.id not in logs:
            return f"its log file {short(c.id)}…-json.log is missing"
        return None
