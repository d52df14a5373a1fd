"""LVM2 physical volumes: the label recognised here, the volume group and its logical volumes
read through ``pyvslvm`` (libvslvm, LGPL).

The label (``LABELONE`` in one of the first four sectors) and the PV header after it are
declared here, for two reasons: to recognise a PV without handing arbitrary bytes to the
library, and to know the PV's UUID — a logical volume that holds a PV of the same UUID (a
hostile or damaged table mapping a volume onto its own label) is a loop, said as such instead
of being descended into again and again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import construct as cs

from forensics.fs.libyal import library_reason
from forensics.image.device import Device, VolumeDevice

LABEL_ID = b"LABELONE"
LABEL_TYPE = b"LVM2 001"
LabelHeader = cs.Struct(
    "id" / cs.Bytes(8),
    "sector" / cs.Int64ul,
    "crc" / cs.Int32ul,
    "offset" / cs.Int32ul,
    "type" / cs.Bytes(8),
)
PvHeader = cs.Struct(
    "uuid" / cs.Bytes(32),
    "device_size" / cs.Int64ul,
)


@dataclass
class Label:
    """Where the PV label was found and the PV's UUID (32 characters, no dashes)."""

    sector: int
    uuid: str


@dataclass
class VolumeGroup:
    name: str
    volumes: list[tuple[str, VolumeDevice]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def find_label(device: Device) -> Label | None:
    """The LVM2 label of ``device``, or None."""
    for sector in range(4):
        try:
            data = device.read_at(sector * 512, 512)
        except OSError:
            return None
        if len(data) < 512 or data[:8] != LABEL_ID:
            continue
        header = LabelHeader.parse(data)
        if header.type != LABEL_TYPE or not 32 <= header.offset <= 512 - 40:
            continue
        pv = PvHeader.parse(data[header.offset :])
        return Label(sector, pv.uuid.decode("ascii", "replace"))
    return None


def open_volume_group(device: Device, prefix: str) -> VolumeGroup:
    """The volume group of the PV on ``device`` (a single-PV group: a volume of a group that
    spans PVs on other disks is not whole here, and the library refuses it)."""
    import pyvslvm

    handle = pyvslvm.handle()
    try:
        device.seek(0)
        handle.open_file_object(device)
        handle.open_physical_volume_files_as_file_objects([device])
        group = handle.get_volume_group()
        vg = VolumeGroup(str(group.name))
        for index in range(int(group.number_of_logical_volumes)):
            lv = group.get_logical_volume(index)
            name = f"{vg.name}/{lv.name}"
            vg.volumes.append((name, VolumeDevice(f"{prefix}{name}", lv, int(lv.size))))
    except (OSError, ValueError, MemoryError, TypeError) as exc:
        vg = VolumeGroup("?")
        vg.problems.append(f"the LVM metadata cannot be read: {library_reason(exc)}")
    vg.handle = handle  # type: ignore[attr-defined]  (kept alive with its volumes)
    return vg
