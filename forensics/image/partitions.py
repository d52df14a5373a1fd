"""Partition tables: MBR (with the EBR chain of an extended partition) and GPT, declared here
with construct and checked against the disk they describe.

Decoded here rather than through ``libvsmbr``/``libvsgpt``: both formats are small and fully
documented (the UEFI specification, chapter 5), the checks a hostile table needs — an entry
past the disk's end, an EBR chain that loops, an entry array of absurd size, CRCs — are ours to
word, and libvsmbr's Python binding has not been released since 2024.

Partitions are numbered as Linux numbers them: a GPT entry by its place in the entry array
(``p2`` is the second entry, whether or not the first is used), MBR primaries 1-4 by slot,
logical partitions from 5 along the chain. The primary GPT header is read first; when it is
damaged and the backup header at the disk's last sector is whole, the backup is used and a
problem says so.
"""

from __future__ import annotations

import uuid
import zlib
from dataclasses import dataclass, field

import construct as cs

from forensics.image.device import Device

MbrEntry = cs.Struct(
    "status" / cs.Int8ul,
    "chs_first" / cs.Bytes(3),
    "type" / cs.Int8ul,
    "chs_last" / cs.Bytes(3),
    "lba_first" / cs.Int32ul,
    "sectors" / cs.Int32ul,
)
Mbr = cs.Struct(
    "boot" / cs.Bytes(446),
    "entries" / cs.Array(4, MbrEntry),
    "signature" / cs.Bytes(2),
)
GptHeader = cs.Struct(
    "signature" / cs.Bytes(8),
    "revision" / cs.Int32ul,
    "header_size" / cs.Int32ul,
    "header_crc" / cs.Int32ul,
    "reserved" / cs.Int32ul,
    "current_lba" / cs.Int64ul,
    "backup_lba" / cs.Int64ul,
    "first_usable" / cs.Int64ul,
    "last_usable" / cs.Int64ul,
    "disk_guid" / cs.Bytes(16),
    "entries_lba" / cs.Int64ul,
    "entry_count" / cs.Int32ul,
    "entry_size" / cs.Int32ul,
    "entries_crc" / cs.Int32ul,
)
GptEntry = cs.Struct(
    "type_guid" / cs.Bytes(16),
    "unique_guid" / cs.Bytes(16),
    "first_lba" / cs.Int64ul,
    "last_lba" / cs.Int64ul,
    "attributes" / cs.Int64ul,
    "name" / cs.Bytes(72),
)
GPT_SIGNATURE = b"EFI PART"
MBR_SIGNATURE = b"\x55\xaa"
PROTECTIVE = 0xEE
EXTENDED = {0x05, 0x0F, 0x85}
#: the entry array's largest size read (the specification's minimum is 16 KiB)
MAX_ENTRY_BYTES = 1 << 20
#: logical partitions followed along an EBR chain
MAX_LOGICAL = 128
#: type GUIDs worth a name in messages
GPT_TYPES = {
    "21686148-6449-6e6f-744e-656564454649": "BIOS boot",
    "c12a7328-f81f-11d2-ba4b-00a0c93ec93b": "EFI system",
    "0fc63daf-8483-4772-8e79-3d69d8477de4": "Linux filesystem",
    "4f68bce3-e8cd-4db1-96e7-fbcaf984b709": "Linux root (x86-64)",
    "e6d6d379-f507-44c2-a23c-238f2a3df928": "Linux LVM",
    "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f": "Linux swap",
    "933ac7e1-2eb4-4f13-b844-0e14e2aef915": "Linux /home",
}


@dataclass
class Partition:
    """One partition: its Linux number, where it lies in bytes, its type (GPT type GUID or
    MBR type byte as ``0x83``), its GPT name, and what is wrong with it."""

    number: int
    start: int
    size: int
    type: str
    name: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"p{self.number}"

    @property
    def type_name(self) -> str:
        return GPT_TYPES.get(self.type, self.type)


@dataclass
class PartitionTable:
    """``scheme``: ``gpt``, ``mbr``, or None when the disk has no partition table."""

    scheme: str | None
    sector_size: int = 512
    partitions: list[Partition] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def read_partitions(device: Device) -> PartitionTable:
    """The partition table of ``device``; never raises for what the disk holds."""
    try:
        sector0 = device.read_at(0, 512)
    except OSError as exc:
        return PartitionTable(None, problems=[f"the first sector cannot be read: {exc}"])
    if len(sector0) < 512 or sector0[510:512] != MBR_SIGNATURE:
        return PartitionTable(None)
    mbr = Mbr.parse(sector0)
    if _looks_like_boot_sector(sector0, mbr):
        return PartitionTable(None)
    if any(e.type == PROTECTIVE for e in mbr.entries):
        for sector_size in (512, 4096):
            table = _read_gpt(device, sector_size)
            if table is not None:
                return table
        table = PartitionTable("gpt")
        table.problems.append("a protective MBR, but no GPT header (primary or backup) reads")
        return table
    return _read_mbr(device, mbr)


def _looks_like_boot_sector(sector0: bytes, mbr: cs.Container) -> bool:
    """A filesystem's boot sector (FAT, NTFS) ends in 55 AA too: its 'entries' then do not
    read as partitions (status bytes other than 0x00/0x80)."""
    return any(e.status not in (0, 0x80) for e in mbr.entries)


# -- MBR ----------------------------------------------------------------------------------------


def _read_mbr(device: Device, mbr: cs.Container) -> PartitionTable:
    table = PartitionTable("mbr")
    sectors = device.size // 512
    for slot, entry in enumerate(mbr.entries, 1):
        if entry.type == 0 or entry.sectors == 0:
            continue
        if entry.type in EXTENDED:
            _read_ebr_chain(device, entry.lba_first, entry.sectors, table)
            continue
        part = Partition(slot, entry.lba_first * 512, entry.sectors * 512, f"0x{entry.type:02x}")
        _check_bounds(part, entry.lba_first, entry.lba_first + entry.sectors, sectors)
        table.partitions.append(part)
    table.partitions.sort(key=lambda p: p.number)
    return table


def _read_ebr_chain(
    device: Device, ext_start: int, ext_sectors: int, table: PartitionTable
) -> None:
    """The logical partitions of an extended partition: each EBR holds one partition (relative
    to the EBR) and the next EBR (relative to the extended partition's start)."""
    seen: set[int] = set()
    ebr = ext_start
    number = 5
    while True:
        if ebr in seen:
            table.problems.append(f"the EBR chain loops back to sector {ebr}: stopped there")
            return
        if len(seen) >= MAX_LOGICAL:
            table.problems.append(f"more than {MAX_LOGICAL} logical partitions: the rest not read")
            return
        seen.add(ebr)
        try:
            data = device.read_at(ebr * 512, 512)
        except OSError as exc:
            table.problems.append(f"the EBR at sector {ebr} cannot be read: {exc}")
            return
        if len(data) < 512 or data[510:512] != MBR_SIGNATURE:
            table.problems.append(f"no EBR at sector {ebr} (the extended partition's chain)")
            return
        first, link = Mbr.parse(data).entries[:2]
        if first.type and first.sectors:
            start = ebr + first.lba_first
            part = Partition(number, start * 512, first.sectors * 512, f"0x{first.type:02x}")
            _check_bounds(part, start, start + first.sectors, device.size // 512)
            if start + first.sectors > ext_start + ext_sectors:
                part.problems.append("it runs past the end of its extended partition")
            table.partitions.append(part)
            number += 1
        if link.type not in EXTENDED or not link.sectors:
            return
        ebr = ext_start + link.lba_first


# -- GPT ----------------------------------------------------------------------------------------


def _read_gpt(device: Device, sector_size: int) -> PartitionTable | None:
    """The GPT of ``device`` with sectors of ``sector_size``, or None when neither header
    reads at that sector size."""
    sectors = device.size // sector_size
    primary = _gpt_header(device, 1, sector_size)
    table = PartitionTable("gpt", sector_size)
    header = primary if not isinstance(primary, str) else None
    if header is not None:
        entries = _gpt_entries(device, header, sector_size)
        if isinstance(entries, str):
            table.problems.append(f"the primary GPT's entry array: {entries}")
            header = None
    if header is None:
        backup = _gpt_header(device, sectors - 1, sector_size) if sectors > 1 else "no disk"
        if isinstance(backup, str):
            if isinstance(primary, str) and "no GPT signature" in primary:
                return None
            table.problems.append(f"the primary GPT header is damaged ({primary}) and so is "
                                  f"the backup ({backup})")  # fmt: skip
            return table
        entries = _gpt_entries(device, backup, sector_size)
        if isinstance(entries, str):
            table.problems.append(f"the backup GPT's entry array: {entries}")
            return table
        why = primary if isinstance(primary, str) else "its entries"
        table.problems.append(
            f"the primary GPT is damaged ({why}): the backup GPT at the disk's last sector is read"
        )
    for number, entry in entries:
        table.partitions.append(_gpt_partition(number, entry, sector_size, sectors))
    return table


def _gpt_header(device: Device, lba: int, sector_size: int) -> cs.Container | str:
    try:
        data = device.read_at(lba * sector_size, sector_size)
    except OSError as exc:
        return f"unreadable ({exc})"
    if len(data) < 92:
        return "past the disk's end"
    if data[:8] != GPT_SIGNATURE:
        return "no GPT signature"
    header = GptHeader.parse(data)
    if not 92 <= header.header_size <= sector_size:
        return f"a header size of {header.header_size}"
    check = bytearray(data[: header.header_size])
    check[16:20] = b"\0\0\0\0"
    if zlib.crc32(check) != header.header_crc:
        return "its CRC does not match"
    if header.entry_size < 128 or header.entry_size % 8:
        return f"entries of {header.entry_size} bytes"
    if header.entry_count * header.entry_size > MAX_ENTRY_BYTES:
        return f"{header.entry_count} entries of {header.entry_size} bytes, over 1 MiB"
    return header


def _gpt_entries(
    device: Device, header: cs.Container, sector_size: int
) -> list[tuple[int, cs.Container]] | str:
    length = header.entry_count * header.entry_size
    start = header.entries_lba * sector_size
    if start + length > device.size:
        return f"it lies past the disk's end (sector {header.entries_lba})"
    try:
        data = device.read_at(start, length)
    except OSError as exc:
        return f"unreadable ({exc})"
    if zlib.crc32(data) != header.entries_crc:
        return "its CRC does not match"
    found = []
    for i in range(header.entry_count):
        raw = data[i * header.entry_size : i * header.entry_size + 128]
        if raw[:16] == bytes(16):
            continue
        found.append((i + 1, GptEntry.parse(raw)))
    return found


def _gpt_partition(number: int, entry: cs.Container, sector_size: int, sectors: int) -> Partition:
    type_guid = str(uuid.UUID(bytes_le=entry.type_guid))
    name = entry.name.decode("utf-16-le", "replace").split("\0", 1)[0]
    length = max(0, entry.last_lba - entry.first_lba + 1)
    part = Partition(number, entry.first_lba * sector_size, length * sector_size, type_guid, name)
    if entry.last_lba < entry.first_lba:
        part.problems.append(f"it ends (sector {entry.last_lba}) before it starts")
    _check_bounds(part, entry.first_lba, entry.last_lba + 1, sectors)
    return part


def _check_bounds(part: Partition, first: int, end: int, sectors: int) -> None:
    if first >= sectors:
        part.problems.append(
            f"it starts at sector {first}, past the disk's end ({sectors} sectors): nothing of "
            "it is on the disk"
        )
    elif end > sectors:
        part.problems.append(
            f"it runs past the disk's end by {end - sectors} sectors: read up to the end"
        )
