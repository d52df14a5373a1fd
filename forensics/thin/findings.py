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

from forensics.catalog import ERROR, INFO, SEVERITIES, WARNING, Catalog, Check

__all__ = ["CHECKS", "ERROR", "INFO", "SEVERITIES", "WARNING", "Findings", "ThinFinding"]

#: every check id that ``thin check`` can report, with its severity and a one-line summary
CHECKS = Catalog(
    "thin check",
    [
        Check("file.too-small", ERROR, "the metadata file is shorter than one 4096-byte block"),
        Check(
            "file.truncated", ERROR, "the metadata file is shorter than the metadata space map says"
        ),
        Check(
            "superblock.zeroed",
            ERROR,
            "block 0 is all zeros: the kernel would format fresh metadata over the pool",
        ),
        Check("superblock.checksum", ERROR, "the superblock checksum does not match"),
        Check("superblock.magic", ERROR, "the superblock magic number is wrong"),
        Check("superblock.blocknr", ERROR, "the superblock does not hold its own block number 0"),
        Check(
            "superblock.block-size",
            ERROR,
            "the metadata or data block size is one the kernel refuses",
        ),
        Check(
            "superblock.incompat-flags",
            ERROR,
            "incompatible feature flags are set: the kernel refuses the pool",
        ),
        Check(
            "superblock.compat-ro-flags",
            WARNING,
            "read-only compatible feature flags are set: the kernel opens it read-only",
        ),
        Check("superblock.version", WARNING, "the metadata version is neither 1 nor 2"),
        Check(
            "superblock.needs-check",
            WARNING,
            "the NEEDS_CHECK flag is set: the kernel keeps the pool read-only",
        ),
        Check(
            "superblock.metadata-snap",
            ERROR,
            "the metadata snapshot (held root) is not a valid superblock copy",
        ),
        Check("node.out-of-bounds", ERROR, "a tree points at a block past the end of the metadata"),
        Check("node.checksum", ERROR, "a btree node's checksum does not match"),
        Check("node.blocknr", ERROR, "a btree node does not hold its own block number"),
        Check("node.flags", ERROR, "a btree node is neither internal nor leaf"),
        Check("node.value-size", ERROR, "a btree node's value size is not that of its tree"),
        Check(
            "node.max-entries",
            ERROR,
            "a btree node's max_entries does not fit or is not a multiple of 3",
        ),
        Check(
            "node.nr-entries",
            ERROR,
            "a btree node holds more entries than it can, or too few for a non-root node",
        ),
        Check("node.key-order", ERROR, "a btree node's keys are not strictly ascending"),
        Check(
            "node.key-range", ERROR, "a btree node's keys lie outside the range its parent gives"
        ),
        Check("node.loop", ERROR, "a tree reaches the same node twice, or loops"),
        Check("device.id-range", WARNING, "a device id does not fit in 24 bits"),
        Check("device.no-mappings", ERROR, "a device in the details tree has no mapping tree"),
        Check("device.no-details", ERROR, "a device in the mapping tree has no details"),
        Check(
            "device.mapped-blocks",
            ERROR,
            "a device's mapped_blocks differs from the mappings its tree holds",
        ),
        Check(
            "device.times",
            WARNING,
            "a device's creation or snapshot time is after the pool's time or out of order",
        ),
        Check(
            "device.transaction",
            WARNING,
            "a device's transaction id is above the pool's transaction id",
        ),
        Check(
            "mapping.data-block-range",
            ERROR,
            "mappings point at data blocks past the end of the data device",
        ),
        Check("mapping.time", WARNING, "mappings are stamped with a time after the pool's time"),
        Check("metasm.root", ERROR, "the metadata space map root is unusable"),
        Check("metasm.index", ERROR, "the metadata space map index block is damaged"),
        Check("metasm.bitmap", ERROR, "a metadata space map bitmap block is damaged"),
        Check(
            "metasm.overflow",
            ERROR,
            "the metadata ref-count tree and the bitmaps disagree about counts of 3 or more",
        ),
        Check(
            "metasm.count",
            ERROR,
            "metadata blocks in use are counted too low: the kernel could reallocate them",
        ),
        Check("metasm.leak", WARNING, "metadata blocks are counted higher than their use (leaked)"),
        Check(
            "metasm.nr-allocated",
            INFO,
            "the metadata space map's nr_allocated differs from its bitmaps",
        ),
        Check("datasm.root", ERROR, "the data space map root is unusable"),
        Check("datasm.index", ERROR, "the data space map index tree misses or repeats bitmaps"),
        Check("datasm.bitmap", ERROR, "a data space map bitmap block is damaged"),
        Check(
            "datasm.overflow",
            ERROR,
            "the data ref-count tree and the bitmaps disagree about counts of 3 or more",
        ),
        Check(
            "datasm.count",
            ERROR,
            "data blocks in use are counted too low: the kernel could hand them out again",
        ),
        Check(
            "datasm.leak", WARNING, "data blocks are counted higher than their mappings (leaked)"
        ),
        Check(
            "datasm.nr-allocated",
            INFO,
            "the data space map's nr_allocated differs from its bitmaps",
        ),
    ],
)


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
