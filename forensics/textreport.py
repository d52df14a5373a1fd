"""verify's text report, for people: what was checked, the findings by severity and by the object
they concern, and what to do next.

JSON and JSON lines are for scripts and stay as they are; only this rendering is for reading.
Everything that comes from the evidence goes through :func:`forensics.report.printable`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from forensics.formats.ids import is_hex64
from forensics.model import Host
from forensics.nextstep import repair_command
from forensics.report import SEVERITIES, Finding, count_by_severity, finding_line, printable
from forensics.terminal import Terminal

if TYPE_CHECKING:
    from forensics.api.verify import VerifyResult

#: the order in which the objects of one severity are shown: what a user acts on first
OBJECT_ORDER = (
    "container",
    "mount",
    "image",
    "layer",
    "driver-dir",
    "volume",
    "tag",
    "repositories",
    "device",
    "pool",
    "container-name",
)
_HEADINGS = {"error": "ERRORS", "warning": "WARNINGS", "info": "INFOS"}
#: consequences listed under their cause before "… and N more"
CONSEQUENCES_SHOWN = 3


@dataclass
class Checked:
    """What the run looked at, for the header: counts of the host's objects, and what
    ``--deep`` read of the layers' contents (None without ``--deep``)."""

    images: int
    layers: int
    containers: int
    volumes: int
    deep_layers: int | None = None
    files_read: int = 0
    bytes_read: int = 0

    @classmethod
    def of(cls, host: Host) -> Checked:
        eras = [h for h in (host, host.legacy) if h is not None]
        return cls(
            images=sum(len(h.images) for h in eras),
            layers=sum(len(h.layers) for h in eras),
            containers=len(host.containers),
            volumes=len(host.volumes),
        )


@dataclass
class Advice:
    """The closing line's facts: the command that shows the repair plan of ROOT, and how many
    of the errors and warnings that plan would answer."""

    repair_command: str
    fixable: int


def header(host: Host, checked: Checked, term: Terminal) -> list[str]:
    layout = host.layout + (f", driver {host.driver}" if host.driver else "")
    what = f"{_count(checked.containers, 'container')}, {_count(checked.volumes, 'volume')}"
    if host.layout != "containerd":  # else the images and layers are the store line's
        what = f"{_count(checked.images, 'image')}, {_count(checked.layers, 'layer')}, " + what
    if checked.deep_layers is None:
        contents = "layer contents not read (--deep reads them)"
    else:
        contents = (
            f"deep: {_count(checked.files_read, 'file')} ({_size(checked.bytes_read)}) of "
            f"{_count(checked.deep_layers, 'layer')} read and checked"
        )
    title = term.fit(printable(f"docker-forensics verify {host.root}"), 0, 2)
    lines = [term.style(line, "heading") for line in title]
    lines += term.fit(printable(f"layout:  {layout}"), 2, 9)
    lines += term.fit(f"checked: {what}; {contents}", 2, 9)
    if host.containerd is not None:
        deep = checked.deep_layers is not None
        lines += term.fit(printable(_containerd_checked(host, deep)), 2, 9)
    return lines


def _containerd_checked(host: Host, deep: bool) -> str:
    """The containerd store's line: where it is, what it holds, and how far it was read."""
    ctd = host.containerd
    assert ctd is not None
    nss = ctd.store.namespaces.values()
    images = sum(len(ns.images) for ns in nss)
    snapshots = sum(len(ns.snapshots) for ns in nss)
    return (
        f"store:   containerd at {ctd.location or 'ROOT'}: "
        f"{_count(len(ctd.store.namespaces), 'namespace')}, {_count(images, 'image')}, "
        f"{_count(snapshots, 'snapshot')}, {_count(len(ctd.store.blobs), 'blob')} "
        + (
            "(blobs hashed, layers held against their snapshots)"
            if deep
            else "(sizes checked, contents not hashed)"
        )
    )


def grouped(findings: list[Finding], host: Host, term: Terminal) -> list[str]:
    """The findings by severity (errors first), then by object, each object once; the
    consequences of a cause under it (see :mod:`forensics.checks.cascade`), not counted in the
    headings, as the summary counts them not."""
    under = _consequences(findings)
    lines: list[str] = []
    for severity in SEVERITIES:
        these = [f for f in findings if f.severity == severity and not _shown_under_cause(f, under)]
        if not these:
            continue
        lines += ["", term.style(f"{_HEADINGS[severity]} ({len(these)})", severity)]
        for key, group in _by_object(these):
            title = term.fit(printable(_object_title(key, host)), 2, 4)
            lines += [term.style(line, "heading") for line in title]
            for f in group:
                lines += term.fit(printable(f"{f.check}  {f.path or '.'}: {f.message}"), 4, 4)
                lines += _consequence_lines(f, under.get(f.key, []), term)
    return lines


def _consequences(findings: list[Finding]) -> dict[str, list[Finding]]:
    """Cause key → its consequences among ``findings``, for the causes that are among them."""
    causes = {f.key for f in findings if f.caused_by is None}
    out: dict[str, list[Finding]] = {}
    for f in findings:
        if f.caused_by in causes:
            out.setdefault(f.caused_by, []).append(f)
    return out


def _shown_under_cause(f: Finding, under: dict[str, list[Finding]]) -> bool:
    return f.caused_by is not None and f.caused_by in under


def _consequence_lines(cause: Finding, consequences: list[Finding], term: Terminal) -> list[str]:
    """A handful of a cause's consequences, indented under it, then how many more."""
    lines: list[str] = []
    for f in consequences[:CONSEQUENCES_SHOWN]:
        text = f"{f.severity} {f.check}  {f.path or '.'}: {f.message}"
        lines += term.fit(printable(text), 6, 8)
    more = len(consequences) - CONSEQUENCES_SHOWN
    if more > 0:
        text = f"… and {more} more caused by {cause.check} (--format json lists them)"
        lines += term.fit(printable(text), 6, 8)
    return lines


def closing(
    counts: dict[str, int], shown: dict[str, int], advice: Advice | None, term: Terminal
) -> list[str]:
    """The count of findings by severity (all of them, and what was left out), and what to do
    next."""
    summary = ", ".join(_count(counts[s], s) for s in SEVERITIES)
    hidden = sum(counts.values()) - sum(shown.values())
    if hidden:
        summary += f" ({hidden} not shown: see --severity)"
    lines = ["", summary]
    actionable = counts["error"] + counts["warning"]
    if not actionable:
        lines.append("Nothing to repair.")
    elif advice is not None and advice.fixable:
        lines.append(
            f"Next: {advice.repair_command} {_what_repair_fixes(advice.fixable, actionable)}"
        )
    elif advice is not None:
        lines.append(
            "repair has no plan for any of these: man docker-forensics-verify says what each "
            "check means."
        )
    return [fitted for line in lines for fitted in term.fit(printable(line), 0, 2)]


def _what_repair_fixes(fixable: int, actionable: int) -> str:
    if fixable == actionable:
        what = "it" if fixable == 1 else f"all {actionable} errors and warnings"
        return f"shows how repair would fix {what}."
    found = _count(actionable, "error or warning", "errors and warnings")
    return (
        f"shows how repair would fix {fixable} of the {found}; what it leaves alone, it says why."
    )


def plain(findings: Iterable[Finding]) -> list[str]:
    """One line per finding, nothing else (``--quiet``): ``severity check path: message``."""
    return [finding_line(f) for f in findings]


def verify_report(result: VerifyResult, shown: list[Finding], root: str, term: Terminal) -> str:
    """The report for people of a run over ``root`` (as the user named it): what was checked,
    the findings ``shown``, and what to do next."""
    checked = Checked.of(result.host)
    if result.deep is not None:
        checked.deep_layers, checked.files_read, checked.bytes_read = result.deep.read_counts()
    advice = None
    if result.fixable is not None:
        ctd = result.host.containerd
        apart = ctd.location if ctd is not None and ctd.external else None
        command = repair_command(root, apart)
        if result.evidence is not None:  # repair refuses an archive or disk image
            command = "docker-forensics repair --dry-run, run on a copy of the root unpacked "
            command += "from the file,"
        advice = Advice(command, result.fixable)
    return render(result.host, result.findings, shown, checked, advice, term)


def render(
    host: Host,
    findings: list[Finding],
    shown: list[Finding],
    checked: Checked,
    advice: Advice | None,
    term: Terminal,
) -> str:
    lines = header(host, checked, term)
    lines += grouped(shown, host, term)
    lines += closing(count_by_severity(findings), count_by_severity(shown), advice, term)
    return "\n".join(lines) + "\n"


# -- helpers ----------------------------------------------------------------------------------


def _by_object(findings: list[Finding]) -> list[tuple[tuple[str, str] | None, list[Finding]]]:
    groups: dict[tuple[str, str] | None, list[Finding]] = {}
    for f in findings:
        key = (f.object_type, f.object_id) if f.object_type and f.object_id else None
        groups.setdefault(key, []).append(f)
    return sorted(groups.items(), key=lambda item: _object_rank(item[0]))


def _object_rank(key: tuple[str, str] | None) -> tuple[int, str]:
    if key is None:
        return (len(OBJECT_ORDER) + 1, "")
    kind, oid = key
    rank = OBJECT_ORDER.index(kind) if kind in OBJECT_ORDER else len(OBJECT_ORDER)
    return (rank, oid)


def _object_title(key: tuple[str, str] | None, host: Host) -> str:
    if key is None:
        return "(not about one object)"
    kind, oid = key
    title = f"{kind} {_short(oid)}"
    if kind in ("container", "mount") and oid in host.containers:
        name = host.containers[oid].name
        title += f" {name}" if name else ""
    elif kind == "image" and oid in host.images and host.images[oid].tags:
        title += f" {host.images[oid].tags[0]}"
    return title


def _short(oid: str) -> str:
    """An id as docker shows it: 12 hex digits of a 64-digit one (``sha256:`` dropped)."""
    bare = oid.removeprefix("sha256:")
    return bare[:12] if is_hex64(bare) else oid


def _count(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def _size(n: int) -> str:
    """Bytes in decimal units, as docker shows sizes."""
    if n < 1000:
        return f"{n} B"
    units = ("kB", "MB", "GB", "TB")
    value, step = n / 1000, 0
    while value >= 1000 and step < len(units) - 1:
        value, step = value / 1000, step + 1
    return f"{value:.1f} {units[step]}"
