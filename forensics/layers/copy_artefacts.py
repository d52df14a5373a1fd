"""Copy artefacts: metadata that a copy of the Docker root changed the same way on every file.

An examiner often holds a copy of ``/var/lib/docker`` rather than the disk it lived on, and the
tools that make copies lose metadata uniformly: ``tar`` extracted without ``-p`` (or by a user
other than root) and ``cp -r`` apply the copier's umask to every mode and drop the setuid and
setgid bits, ``cp -r`` and ``tar`` without ``--xattrs`` lose every extended attribute (overlay2's
opaque-directory marks, ``trusted.overlay.opaque=y``), and a copier who may not make device
files loses overlay2's whiteouts (0:0 character devices). Reported file by file, such a copy
buries the one file that was really tampered with under hundreds of findings that all say the
same thing.

:func:`explain_copy_artefacts` reads the pattern from the evidence — the modes on disk held
against the tar-split headers' over every layer read from a directory, the opaque marks and
whiteouts that the tar-splits hold against those on disk — and, where one pattern explains the
differences uniformly, makes it one ``layout.copy-artefact`` finding at the Docker root (how
many entries of how many layers it touches) and marks the entries it explains as intact: their
contents were checked as any other file's (an entry whose bytes differ is never explained), and
their layer's verdict no longer counts them. An entry whose mode differs in any other way stays
``mode-changed`` and is reported by name.

How a mode mask is decided: a permission bit belongs to the mask when it is cleared on disk on
(nearly) every entry whose tar header sets it, as a umask clears it on every file it touches;
the mask is accepted when it explains at least :data:`MIN_EXPLAINED` entries and the mode
differences it does not explain are at most one in :data:`ODD_RATIO` of those it does. A single
file chmod-ed in an otherwise exact copy therefore never makes a mask (the bit it lost is kept
by the other files that have it, or the mask would explain that file alone). Opaque marks and
whiteouts are a pattern when every one that the layers hold is absent (a copy that kept some
of them did not lose them by how it was made): every opaque mark, be it one (``cp -r`` and
``tar`` without ``--xattrs`` lose them all, always); every whiteout, when there are at least
:data:`MIN_EXPLAINED` (since Linux 5.8 any user may create them, so a copy rarely loses them,
and one whiteout gone is as likely a file un-hidden by hand).

Layers whose files are read from a filesystem as it is (a devicemapper thin device) are left
out: no copy of the root changes what is inside a device.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from forensics.checks.catalog import finding
from forensics.layers.report import FileRecord, LayerReport
from forensics.report import Finding

__all__ = ["CHECK", "MIN_EXPLAINED", "ODD_RATIO", "explain_copy_artefacts", "mode_mask"]

#: the check id of the one finding per pattern
CHECK = "layout.copy-artefact"
#: a mask that explains fewer entries is no pattern
MIN_EXPLAINED = 2
#: mode differences the mask does not explain: at most one per this many that it does
ODD_RATIO = 20
#: a bit is in the mask when it is cleared on all but one per this many entries that set it
_KEEP_RATIO = 20
#: entries whose mode on disk is never compared with the tar header's
_MODE_NOT_COMPARED = frozenset({"symlink", "whiteout", "opaque"})
_BITS = tuple(1 << n for n in range(12))
_SPECIAL = 0o6000
_STICKY = 0o1000


@dataclass
class _Pattern:
    """One artefact: its name, what it says, and the entries it explains (with their layer)."""

    name: str
    explained: list[tuple[LayerReport, FileRecord]] = field(default_factory=list)

    @property
    def layers(self) -> int:
        return len({id(report) for report, _ in self.explained})


def explain_copy_artefacts(reports: Iterable[LayerReport]) -> list[Finding]:
    """One finding per copy artefact found over ``reports`` (the deep check's layers), the
    entries it explains marked intact (status ``ok``, the detail saying why). Nothing is
    changed when no pattern is found."""
    copied = [r for r in reports if not r.source]
    out = []
    mask, pattern = _mode_pattern(copied)
    if pattern is not None:
        out.append(_explain(pattern, _mode_message(mask, pattern)))
    for kind, name, least in (("opaque", "xattrs-lost", 1), ("whiteout", "whiteouts-lost", 2)):
        pattern = _all_missing(copied, kind, name)
        if pattern is not None and len(pattern.explained) >= least:
            out.append(_explain(pattern, _MISSING_MESSAGES[name](pattern)))
    return out


# -- modes -------------------------------------------------------------------------------------


def _compared(reports: Iterable[LayerReport]) -> Iterator[tuple[LayerReport, FileRecord]]:
    """Every entry whose mode on disk was held against its tar header's: intact ones (the
    same mode) and those whose mode alone differs."""
    for report in reports:
        for rec in report.files:
            if rec.mode is None or not rec.path:
                continue
            if rec.status == "mode-changed" and rec.found_mode is not None:
                yield report, rec
            elif rec.status == "ok" and rec.type not in _MODE_NOT_COMPARED:
                yield report, rec


def _on_disk(rec: FileRecord) -> int:
    assert rec.mode is not None
    return (
        rec.found_mode if rec.status == "mode-changed" and rec.found_mode is not None else rec.mode
    )


def mode_mask(modes: Iterable[tuple[int, int]]) -> int:
    """The bits that a uniform mask cleared, from ``(tar mode, disk mode)`` pairs: each bit
    cleared on disk on every entry that sets it, but for at most one in :data:`_KEEP_RATIO`."""
    has = [0] * len(_BITS)
    cleared = [0] * len(_BITS)
    for (tar, disk), count in Counter(modes).items():  # a few distinct pairs, however many files
        for i, bit in enumerate(_BITS):
            if tar & bit:
                has[i] += count
                if not disk & bit:
                    cleared[i] += count
    mask = 0
    for i, bit in enumerate(_BITS):
        if cleared[i] and (has[i] - cleared[i]) * _KEEP_RATIO <= has[i]:
            mask |= bit
    return mask


def _mode_pattern(reports: list[LayerReport]) -> tuple[int, _Pattern | None]:
    changed = [(r, rec) for r, rec in _compared(reports) if rec.status == "mode-changed"]
    if len(changed) < MIN_EXPLAINED:
        return 0, None
    mask = mode_mask((rec.mode or 0, _on_disk(rec)) for _, rec in _compared(reports))
    if not mask:
        return 0, None
    pattern = _Pattern("mode-mask")
    odd = 0
    for report, rec in changed:
        assert rec.mode is not None
        if _on_disk(rec) == rec.mode & ~mask:
            pattern.explained.append((report, rec))
        else:
            odd += 1
    if len(pattern.explained) < MIN_EXPLAINED or odd * ODD_RATIO > len(pattern.explained):
        return 0, None
    return mask, pattern


def _mode_message(mask: int, pattern: _Pattern) -> str:
    how = []
    if mask & 0o777:
        how.append(f"as a umask of {mask & 0o777:03o} does")
    if mask & _SPECIAL:
        how.append("the setuid/setgid bits dropped, as a copy that keeps no owners does")
    if mask & _STICKY:
        how.append("the sticky bit dropped")
    return (
        f"the evidence is a copy whose modes were masked the same way: bits {mask:04o} "
        f"cleared ({'; '.join(how)}) on {_entries(pattern)}, against their tar-split "
        "headers; not reported one by one (their contents are checked, and an entry whose "
        "mode differs in another way is reported by name)"
    )


# -- opaque marks and whiteouts ----------------------------------------------------------------


def _all_missing(reports: list[LayerReport], kind: str, name: str) -> _Pattern | None:
    """The entries of ``kind`` that the overlay layers hold, when every one is missing."""
    pattern = _Pattern(name)
    for report in reports:
        for rec in report.files:
            if rec.type != kind:
                continue
            if rec.status != "missing" or not _overlay_mark_missing(rec):
                return None
            pattern.explained.append((report, rec))
    return pattern if pattern.explained else None


def _overlay_mark_missing(rec: FileRecord) -> bool:
    """A missing opaque xattr or whiteout device, not a member missing because its layer's
    directory or a directory above it is gone (the detail says which)."""
    return rec.detail.startswith(("the directory is not marked opaque", "the whiteout"))


def _xattrs_message(pattern: _Pattern) -> str:
    return (
        "the evidence is a copy without extended attributes: "
        f"{_every(pattern, 'opaque directory mark')} (trusted.overlay.opaque=y) is gone "
        "(cp -r, rsync without -X and tar without --xattrs lose them; overlayfs on this copy "
        "would show what they hide); not reported one by one"
    )


def _whiteouts_message(pattern: _Pattern) -> str:
    return (
        "the evidence is a copy without overlay whiteouts: "
        f"{_every(pattern, 'whiteout')} (a 0:0 character device) is gone (a copy made by a "
        "user who may not create device files loses them; overlayfs on this copy would show "
        "the files they delete); not reported one by one"
    )


_MISSING_MESSAGES = {"xattrs-lost": _xattrs_message, "whiteouts-lost": _whiteouts_message}


# -- the finding -------------------------------------------------------------------------------


def _entries(pattern: _Pattern, what: str = "entry") -> str:
    """``43 entries of 8 layers``."""
    count, layers = len(pattern.explained), pattern.layers
    plural = what[:-1] + "ies" if what.endswith("y") else what + "s"
    return (
        f"{count:,} {what if count == 1 else plural} "
        f"of {layers:,} layer{'s' if layers != 1 else ''}"
    )


def _every(pattern: _Pattern, what: str) -> str:
    """``every one of the 3 whiteouts of 2 layers`` / ``the one whiteout the layers hold``."""
    if len(pattern.explained) == 1:
        return f"the one {what} that the layers hold"
    return f"every one of the {_entries(pattern, what)}"


def _explain(pattern: _Pattern, message: str) -> Finding:
    """The pattern's finding; its entries marked intact, the detail saying what the copy
    changed."""
    for _, rec in pattern.explained:
        if rec.detail:
            rec.detail = f"copy artefact ({pattern.name}): {rec.detail}"
        else:
            rec.detail = f"copy artefact ({pattern.name})"
        rec.status = "ok"
    return finding(CHECK, "", message, damage=pattern.name)
