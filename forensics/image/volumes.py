"""A disk image taken apart into volumes, each with its filesystem as a tree: the partitions
of its MBR or GPT (or the whole disk when it has none), the logical volumes of an LVM2 PV
found on any of them, and on each the ext4 or xfs filesystem that :func:`forensics.fs.open_tree`
recognises.

A volume is named as dfvfs and plaso name them on the command line: ``p2`` for the second
partition, and an LVM logical volume as ``VG/LV`` (``vg0/root``), the name Linux gives it under
``/dev``; a disk without a partition table is the one volume ``whole``. A volume that holds no
filesystem this tool reads (a BIOS boot partition, swap, a damaged superblock) is listed with
the reason, never skipped in silence.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from forensics.fs import FsOpenError, Limits, open_tree
from forensics.fs.libyal import LibyalTree
from forensics.image.device import Device, SliceDevice
from forensics.image.formats import Disk
from forensics.image.lvm import find_label, open_volume_group
from forensics.image.partitions import PartitionTable, read_partitions

#: LVM inside LVM followed this deep (a PV in a logical volume: rare, but real in VMs)
MAX_NESTING = 3


@dataclass
class Volume:
    """One volume: its name (``p2``, ``vg0/root``, ``whole``), what it is in words, its
    device, its filesystem as a tree (None when none is read: ``problems`` says why)."""

    name: str
    what: str
    device: Device
    tree: LibyalTree | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def filesystem(self) -> str | None:
        return self.tree.label if self.tree is not None else None


@dataclass
class DiskLayout:
    disk: Disk
    table: PartitionTable
    volumes: list[Volume] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def close(self) -> None:
        for volume in self.volumes:
            if volume.tree is not None:
                volume.tree.close()
        self.disk.close()

    def volume(self, name: str) -> Volume | None:
        return next((v for v in self.volumes if v.name == name), None)


def open_volumes(disk: Disk, limits: Limits | None = None) -> DiskLayout:
    """Every volume of ``disk`` with its filesystem opened where one is recognised."""
    limits = limits or Limits()
    table = read_partitions(disk.device)
    layout = DiskLayout(disk, table, problems=list(table.problems))
    if table.scheme is None:
        _explore(layout, "whole", "the whole disk", disk.device, limits, 0, frozenset())
        return layout
    for part in table.partitions:
        what = _partition_words(table.scheme, part.number, part.type_name, part.name)
        if any("nothing of it is on the disk" in p for p in part.problems):
            layout.volumes.append(
                Volume(
                    part.label,
                    what,
                    SliceDevice(part.label, disk.device, 0, 0),
                    None,
                    list(part.problems),
                )  # fmt: skip
            )
            continue
        device = SliceDevice(part.label, disk.device, part.start, part.size)
        _explore(layout, part.label, what, device, limits, 0, frozenset(), part.problems)
    return layout


def _partition_words(scheme: str, number: int, type_name: str, name: str) -> str:
    named = f", {name!r}" if name else ""
    return f"{scheme.upper()} partition {number} ({type_name}{named})"


def _explore(
    layout: DiskLayout,
    name: str,
    what: str,
    device: Device,
    limits: Limits,
    depth: int,
    ancestors: frozenset[str],
    problems: list[str] | None = None,
) -> None:
    """The volume ``name`` on ``device``: a PV whose logical volumes are explored in turn, or
    a filesystem."""
    problems = list(problems or [])
    label = find_label(device)
    if label is None:
        volume = Volume(name, what, device, problems=problems)
        try:
            volume.tree = open_tree(device, device.size, limits)
            volume.problems += volume.tree.notes
        except FsOpenError as exc:
            volume.problems.append(str(exc))
        layout.volumes.append(volume)
        return
    if label.uuid in ancestors or depth >= MAX_NESTING:
        why = (
            f"its LVM label (PV {label.uuid}) is one of the volumes it lies in: a loop"
            if label.uuid in ancestors
            else f"LVM nested more than {MAX_NESTING} deep"
        )
        layout.volumes.append(Volume(name, what, device, problems=[*problems, f"{why}: not read"]))
        return
    group = open_volume_group(device, "")
    layout.volumes.append(
        Volume(name, f"{what}, LVM2 PV {label.uuid} of volume group {group.name}", device, None,
               [*problems, *group.problems, "an LVM physical volume: its logical volumes follow"])
    )  # fmt: skip
    for lv_name, lv in group.volumes:
        _explore(
            layout, lv_name, f"LVM logical volume {lv_name}", lv, limits, depth + 1,
            ancestors | {label.uuid},
        )  # fmt: skip
