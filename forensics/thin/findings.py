"""What ``thin check`` reports: findings with a stable check id, a severity, the metadata block
at fault and a message; and the catalogue of check ids.

Severities follow thin_check 0.9.0: ``error`` is what it calls fatal (the kernel would misread
the pool or lose data), ``warning`` what it calls non-fatal (leaked space, counts too high, values
that the kernel ignores but that say something is off), ``info`` a note that is no damage (the
known quirks of writers).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

ERROR, WARNING, INFO = "error", "warning", "info"
SEVERITIES = (ERROR, WARNING, INFO)


@dataclass(frozen=True)
class Check:
    severity: str
    summary: str


#: every check id that ``thin check`` can report, with its severity and a one-line summary
CHECKS: dict[str, Check] = {
    "file.too-small": Check(ERROR, "the metadata file is shorter than one 4096-byte block"),
    "file.truncated": Check(ERROR, "the metadata file is shorter than the metadata space map says"),
    "superblock.zeroed": Check(
        ERROR, "block 0 is all zeros: the kernel would format fresh metadata over the pool"
    ),
    "superblock.checksum": Check(ERROR, "the superblock checksum does not match"),
    "superblock.magic": Check(ERROR, "the superblock magic number is wrong"),
    "superblock.blocknr": Check(ERROR, "the superblock does not hold its own block number 0"),
    "superblock.block-size": Check(
        ERROR, "the metadata or data block size is one the kernel refuses"
    ),
    "superblock.incompat-flags": Check(
        ERROR, "incompatible feature flags are set: the kernel refuses the pool"
    ),
    "superblock.compat-ro-flags": Check(
        WARNING, "read-only compatible feature flags are set: the kernel opens it read-only"
    ),
    "superblock.version": Check(WARNING, "the metadata version is neither 1 nor 2"),
    "superblock.needs-check": Check(
        WARNING, "the NEEDS_CHECK flag is set: the kernel keeps the pool read-only"
    ),
    "superblock.metadata-snap": Check(
        ERROR, "the metadata snapshot (held root) is not a valid superblock copy"
    ),
    "node.out-of-bounds": Check(ERROR, "a tree points at a block past the end of the metadata"),
    "node.checksum": Check(ERROR, "a btree node's checksum does not match"),
    "node.blocknr": Check(ERROR, "a btree node does not hold its own block number"),
    "node.flags": Check(ERROR, "a btree node is neither internal nor leaf"),
    "node.value-size": Check(ERROR, "a btree node's value size is not that of its tree"),
    "node.max-entries": Check(
        ERROR, "a btree node's max_entries does not fit or is not a multiple of 3"
    ),
    "node.nr-entries": Check(
        ERROR, "a btree node holds more entries than it can, or too few for a non-root node"
    ),
    "node.key-order": Check(ERROR, "a btree node's keys are not strictly ascending"),
    "node.key-range": Check(ERROR, "a btree node's keys lie outside the range its parent gives"),
    "node.loop": Check(ERROR, "a tree reaches the same node twice, or loops"),
    "device.id-range": Check(WARNING, "a device id does not fit in 24 bits"),
    "device.no-mappings": Check(ERROR, "a device in the details tree has no mapping tree"),
    "device.no-details": Check(ERROR, "a device in the mapping tree has no details"),
    "device.mapped-blocks": Check(
        ERROR, "a device's mapped_blocks differs from the mappings its tree holds"
    ),
    "device.times": Check(
        WARNING, "a device's creation or snapshot time is after the pool's time or out of order"
    ),
    "device.transaction": Check(
        WARNING, "a device's transaction id is above the pool's transaction id"
    ),
    "mapping.data-block-range": Check(
        ERROR, "mappings point at data blocks past the end of the data device"
    ),
    "mapping.time": Check(WARNING, "mappings are stamped with a time after the pool's time"),
    "metasm.root": Check(ERROR, "the metadata space map root is unusable"),
    "metasm.index": Check(ERROR, "the metadata space map index block is damaged"),
    "metasm.bitmap": Check(ERROR, "a metadata space map bitmap block is damaged"),
    "metasm.overflow": Check(
        ERROR, "the metadata ref-count tree and the bitmaps disagree about counts of 3 or more"
    ),
    "metasm.count": Check(
        ERROR, "metadata blocks in use are counted too low: the kernel could reallocate them"
    ),
    "metasm.leak": Check(WARNING, "metadata blocks are counted higher than their use (leaked)"),
    "metasm.nr-allocated": Check(
        INFO, "the metadata space map's nr_allocated differs from its bitmaps"
    ),
    "datasm.root": Check(ERROR, "the data space map root is unusable"),
    "datasm.index": Check(ERROR, "the data space map index tree misses or repeats bitmaps"),
    "datasm.bitmap": Check(ERROR, "a data space map bitmap block is damaged"),
    "datasm.overflow": Check(
        ERROR, "the data ref-count tree and the bitmaps disagree about counts of 3 or more"
    ),
    "datasm.count": Check(
        ERROR, "data blocks in use are counted too low: the kernel could hand them out again"
    ),
    "datasm.leak": Check(WARNING, "data blocks are counted higher than their mappings (leaked)"),
    "datasm.nr-allocated": Check(
        INFO, "the data space map's nr_allocated differs from its bitmaps"
    ),
}


@dataclass(frozen=True)
class ThinFinding:
    """One problem in pool metadata: ``block`` is the metadata block at fault, if one is."""

    check: str
    severity: str
    block: int | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Findings(list[ThinFinding]):
    """The findings of one run, in the order they were found."""

    def add(self, check: str, block: int | None, message: str) -> None:
        self.append(ThinFinding(check, CHECKS[check].severity, block, message))

    def of_severity(self, severity: str) -> int:
        return sum(1 for f in self if f.severity == severity)

    def damaging(self) -> bool:
        """True when anything but notes was found: thin_check would exit 1."""
        return any(f.severity in (ERROR, WARNING) for f in self)
