"""``verify``: every check over ROOT, optionally every layer rebuilt (``deep``), optionally all of
it written to SQLite; the findings returned with what the report needs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forensics.api.root import Notify, check_output_path, open_containerd_root, open_root, read_root
from forensics.checks import run_checks
from forensics.clock import now_iso
from forensics.errors import OperationalError
from forensics.evidence import Evidence
from forensics.exitstatus import EXIT_ERRORS, EXIT_OK
from forensics.heap import keep_until_exit
from forensics.model import Host
from forensics.report import Finding, count_by_severity

if TYPE_CHECKING:  # the layer checks load construct: imported only where they are used
    from forensics.deep import DeepResult
    from forensics.layers import LayerReport


@dataclass
class SqliteOutput:
    """Where ``verify`` (or ``repair``) also writes its run: the database, and datasette's
    metadata for it if asked (two files outside ROOT); ``overwrite`` replaces regular files."""

    database: Path
    datasette_metadata: Path | None = None
    overwrite: bool = False

    def files(self) -> list[Path]:
        return [p for p in (self.database, self.datasette_metadata) if p is not None]


@dataclass
class VerifyResult:
    """The findings of one run over ``host``: all of them, sorted; their count by severity
    (each cause once); what ``deep`` read; and, when asked for, how many of the errors and
    warnings a repair would fix (``fixable``, from the repair planner's own plan)."""

    host: Host
    findings: list[Finding]
    deep: DeepResult | None = None
    fixable: int | None = None
    #: where the root was read when ROOT is an archive or disk image (the ``evidence`` key)
    evidence: dict[str, Any] | None = None

    @cached_property
    def counts(self) -> dict[str, int]:
        return count_by_severity(self.findings)

    @property
    def status(self) -> int:
        """4 when an error was found, else 0."""
        return EXIT_ERRORS if self.counts["error"] else EXIT_OK

    def document(self, shown: list[Finding]) -> dict[str, Any]:
        """The JSON document, with the findings ``shown`` (``--severity``) written one at a
        time as :mod:`forensics.jsonstream` asks for them; the summary counts them all."""
        doc: dict[str, Any] = {
            "root": self.host.root,
            **({"evidence": self.evidence} if self.evidence is not None else {}),
            "layout": self.host.layout,
            "driver": self.host.driver,
            "summary": self.counts,
            "findings": _as_dicts(shown),
        }
        if self.host.containerd is not None:  # the root its findings' paths are relative to
            doc["containerd_root"] = self.host.containerd.location
        if self.deep is not None:
            doc["layers"] = [r.to_dict(files=False) for r in sorted(self.deep.layers, key=_key)]
            doc["diffs"] = {d.container_id: d.lines() for d in self.deep.diffs}
        return doc


def verify(
    root: str,
    *,
    deep: bool = False,
    sqlite: SqliteOutput | None = None,
    advise: bool = False,
    long_lived: bool = False,
    containerd_root: str | None = None,
    now: int | None = None,
    pick: str | None = None,
    notify: Notify | None = None,
) -> VerifyResult:
    """Check everything in ROOT. ``deep``: rebuild every layer from its tar-split and files.
    ``sqlite``: also write the inventory, the findings, the timeline and the run's provenance
    there (checked before anything is read). ``advise``: count what a repair would fix, when
    there is an error or a warning. ``long_lived``: the model lives as long as the process.
    ``containerd_root``: the containerd root that goes with ROOT (else the one dockerd keeps
    under ROOT, or ROOT itself); ``now`` (ns since the epoch, as
    :func:`forensics.psview.reference_time` gives it): judge the containerd store's expiring
    leases and ingests, and its garbage, then rather than when it was last written.
    ``pick``: which Docker root of an archive or disk image (see :func:`open_root`);
    ``notify``: where the warnings met on the way go."""
    started = now_iso()
    ev = open_root(root, record_reads=sqlite is not None, pick=pick, notify=notify)
    containerd = open_containerd_root(containerd_root)
    for out in sqlite.files() if sqlite else ():
        for evidence in (ev, containerd):
            if evidence is not None:
                check_output_path(out, evidence.root, sqlite.overwrite)
    host = read_root(ev, containerd)
    if now is not None:
        from forensics.stores.containerd_host import judge_at

        judge_at(host, now)
    if long_lived:
        keep_until_exit()
    deep_result = None
    if deep:
        from forensics.deep import verify_deep

        deep_result = verify_deep(ev, host)
    note_evidence_damage(ev, host)
    findings = run_checks(host, deep_result.findings if deep_result else ())
    origin = ev.origin.as_dict() if ev.origin is not None else None
    result = VerifyResult(host, findings, deep_result, evidence=origin)
    if sqlite is not None:
        _export(sqlite, ev, result, started, notify)
    if advise and any(f.severity in ("error", "warning") for f in findings):
        from forensics.nextstep import fixable

        result.fixable = fixable(ev, host, findings)
    return result


def note_evidence_damage(ev: Evidence, host: Host) -> None:
    """The parts of a root read from an archive or disk image that the file holds damaged,
    as notes that become ``layout.evidence-damaged`` findings (none for a directory); an
    archive that ends early is one at the root, for whatever it no longer holds."""
    if ev.origin is not None and ev.origin.incomplete is not None:
        message = (
            f"the evidence file ends early ({ev.origin.incomplete}): what it held after that "
            "is missing, and what this report finds missing may only be that"
        )
        host.notes.append(("layout.evidence-damaged", "", message))
    for rel, detail in sorted(getattr(ev, "damage", {}).items()):
        message = f"the evidence file holds it damaged ({detail}): it is not read whole"
        host.notes.append(("layout.evidence-damaged", rel, message))


def _export(
    sqlite: SqliteOutput, ev: Evidence, result: VerifyResult, started: str, notify: Notify | None
) -> None:
    from forensics.export import RunInfo, export_sqlite, write_datasette_metadata  # slow
    from forensics.timeline import build_timeline

    events = build_timeline(ev, result.host)  # before the run's files are collected: it reads
    run = RunInfo.collect("verify", ev, started, result.status)
    if run.evidence.get("evidence_hash_verified") == 0 and notify is not None:
        notify(
            f"warning: {run.root}: the media's hash differs from the one the image stores "
            f"({run.evidence['evidence_stored_hash']})"
        )
    try:
        export_sqlite(
            sqlite.database,
            result.host,
            result.findings,
            run,
            result.deep,
            timeline=events,
            overwrite=sqlite.overwrite,
        )
    except OSError as exc:
        raise OperationalError(f"{sqlite.database}: {exc.strerror or exc}") from None
    if sqlite.datasette_metadata is not None:
        try:
            write_datasette_metadata(
                sqlite.datasette_metadata, sqlite.database, overwrite=sqlite.overwrite
            )
        except OSError as exc:
            raise OperationalError(f"{sqlite.datasette_metadata}: {exc.strerror or exc}") from None


def _as_dicts(findings: list[Finding]) -> Iterator[dict[str, Any]]:
    return (f.as_dict() for f in findings)


def _key(report: LayerReport) -> str:
    return report.layer_id
