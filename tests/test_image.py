"""Disk images read as volumes of trees (forensics.image): the overlay2 sample as the
``var/lib/docker`` of a root filesystem, put on disks by the real tools (tests/disk_images.py)
— GPT, GPT after a BIOS boot partition, MBR, LVM, qcow2, vmdk, VHD, VHDX, E01, xfs — each
found by the locator and read back equal to the directory tar unpacks; the evidence file
unchanged; hostile disks as problems or one-line errors."""

from __future__ import annotations

import hashlib
import os
import stat
import struct
import zlib
from pathlib import Path

import disk_images as di
import pytest
from conftest import SAMPLES, unpack
from tree_compare import compare

from forensics.fs import Refusal, walk
from forensics.image import SourceError, open_source
from forensics.image.formats import ewf_hash_check, open_disk
from forensics.image.locate import NoDockerRoot, SeveralDockerRoots, choose, search
from forensics.image.partitions import read_partitions
from forensics.image.volumes import open_volumes

MIB = di.MIB


def digest(path: Path, algorithm: str = "sha256") -> str:
    """A file's digest, read in chunks (a whole disk read into memory would raise this
    process's peak, which the children it forks later inherit in ``ru_maxrss``)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


DOCKER = (b"var", b"lib", b"docker")


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root filesystem's tree: the sample unpacked by tar (xattrs kept) as var/lib/docker."""
    root = tmp_path_factory.mktemp("stage") / "root"
    unpack(SAMPLES / "modern-overlay2.tar.gz", root / "var/lib")
    (root / "etc").mkdir()
    (root / "etc/hostname").write_bytes(b"host\n")
    return root


@pytest.fixture(scope="module")
def disks(stage: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("disks")
    ext4 = di.ext4_of(stage, work / "root.ext4", 48 * MIB)
    made = {
        "gpt": di.disk_with(work / "gpt.raw", "gpt", [(di.LINUX_FS, 48 * MIB, ext4)], 52 * MIB),
        "gpt-p2": di.disk_with(
            work / "gpt-p2.raw", "gpt",
            [(di.BIOS_BOOT, 1 * MIB, None), (di.LINUX_FS, 48 * MIB, ext4)], 52 * MIB,
        ),
        "mbr": di.disk_with(work / "mbr.raw", "dos", [("83", 48 * MIB, ext4)], 50 * MIB),
    }  # fmt: skip
    pv = di.lvm_pv(work / "pv.img", ext4)
    size = os.path.getsize(pv)
    made["lvm"] = di.disk_with(
        work / "lvm.raw", "gpt",
        [(di.BIOS_BOOT, 1 * MIB, None), (di.LINUX_LVM, size, pv)], size + 4 * MIB,
    )  # fmt: skip
    base = made["gpt-p2"]
    made["qcow2"] = di.convert(base, "qcow2", work / "disk.qcow2")
    made["vmdk"] = di.convert(base, "vmdk", work / "disk.vmdk", "-o", "subformat=monolithicSparse")
    made["vhd"] = di.convert(base, "vpc", work / "disk.vhd")
    made["vhdx"] = di.convert(base, "vhdx", work / "disk.vhdx")
    made["e01"] = di.e01_of(base, work / "disk")
    xfs = di.xfs_of(stage, work / "root.xfs", 320 * MIB, work)
    made["xfs"] = di.disk_with(work / "xfs.raw", "gpt", [(di.LINUX_FS, 320 * MIB, xfs)], 324 * MIB)
    return made


VOLUME = {"gpt": "p1", "mbr": "p1", "lvm": "vg0/root", "xfs": "p1"}


@pytest.mark.parametrize(
    "kind", ["gpt", "gpt-p2", "mbr", "lvm", "qcow2", "vmdk", "vhd", "vhdx", "e01", "xfs"]
)
def test_each_disk_holds_the_sample(kind: str, disks: dict[str, Path], sample_master: Path) -> None:
    path = disks[kind]
    before = digest(path)
    with open_source(path) as source:
        found = choose(search(source.trees))
        assert (found.volume, found.parts) == (VOLUME.get(kind, "p2"), DOCKER)
        assert "image/overlay2" in found.reason
        tree = dict(source.trees)[found.volume]
        if kind == "xfs":  # a proto file keeps no xattrs, times, hard links or sticky bits
            count = compare(tree, sample_master, DOCKER, xattrs=False, times=None,
                            hardlinks=False, mode_mask=0o6777)  # fmt: skip
        else:  # mke2fs 1.47.0 -d keeps whole seconds
            count = compare(tree, sample_master, DOCKER, xattrs=os.geteuid() == 0, times="s")
        assert count == 573
    assert digest(path) == before


def test_volumes_are_named_and_explained(disks: dict[str, Path]) -> None:
    with open_source(disks["lvm"]) as source:
        assert source.layout is not None
        names = [(v.name, v.filesystem) for v in source.layout.volumes]
        assert names == [("p1", None), ("p2", None), ("vg0/root", "ext4")]
        bios, pv, _ = source.layout.volumes
        assert "BIOS boot" in bios.what and any("no filesystem" in p for p in bios.problems)
        assert "LVM2 PV" in pv.what


def test_e01_stored_hash_is_verified(disks: dict[str, Path]) -> None:
    disk = open_disk(disks["e01"])
    try:
        stored, computed = ewf_hash_check(disk) or ("", "x")
        assert stored == computed == digest(disks["gpt-p2"], "md5")
    finally:
        disk.close()


# -- locating the Docker root ---------------------------------------------------------------------


def test_archive_under_a_collection_prefix(stage: Path, tmp_path: Path) -> None:
    archive = tmp_path / "triage.tar.zst"
    os.system(  # noqa: S605  (GNU tar, the shape triage collections take)
        f"tar --xattrs --xattrs-include='*' --zstd -cf {archive} -C {stage} "
        f"--transform 's,^var,web-01/var,' var/lib/docker"
    )
    with open_source(archive) as source:
        tree = dict(source.trees)["archive"]
        found = choose(search(source.trees))
        assert found.parts == (b"web-01", b"var", b"lib", b"docker")
        assert tree.implied((b"web-01", b"var"))  # type: ignore[attr-defined]


def test_several_roots_need_a_pick_and_none_says_what_was_searched(
    stage: Path, tmp_path: Path
) -> None:
    second = tmp_path / "srv"
    (second / "etc/docker").mkdir(parents=True)
    (second / "etc/docker/daemon.json").write_text('{"data-root": "/srv/docker"}')
    di.run("cp", "-a", stage / "var/lib/docker", second / "docker")
    root_fs = di.ext4_of(stage, tmp_path / "a.ext4", 48 * MIB)
    srv_fs = di.ext4_of(second, tmp_path / "b.ext4", 48 * MIB)
    disk = di.disk_with(tmp_path / "two.raw", "gpt",
                        [(di.LINUX_FS, 48 * MIB, root_fs), (di.LINUX_FS, 48 * MIB, srv_fs)],
                        100 * MIB)  # fmt: skip
    with open_source(disk) as source:
        found = search(source.trees)
        specs = sorted(c.spec for c in found.docker)
        assert specs == ["p1:/var/lib/docker", "p2:/docker"]
        p2 = next(c for c in found.docker if c.volume == "p2")
        assert "data-root /srv/docker" in p2.reason
        with pytest.raises(SeveralDockerRoots) as several:
            choose(found, evidence="two.raw")
        assert "p1:/var/lib/docker" in str(several.value) and "--path" in str(several.value)
        assert choose(found, "p2:/docker").volume == "p2"
        assert choose(found, "/var/lib/docker").volume == "p1"
    empty = di.disk_with(tmp_path / "empty.raw", "gpt",
                         [(di.LINUX_FS, 8 * MIB, di.ext4_of(tmp_path / "srv/etc", tmp_path / "c",
                                                             8 * MIB))], 10 * MIB)  # fmt: skip
    with open_source(empty) as source, pytest.raises(NoDockerRoot) as none:
        choose(search(source.trees), evidence="empty.raw")
    assert "Searched: p1: /, /var/lib/docker" in str(none.value)


def test_containerd_root_is_a_candidate_of_its_own(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for plugin in ("io.containerd.metadata.v1.bolt", "io.containerd.content.v1.content"):
        (src / "var/lib/containerd" / plugin).mkdir(parents=True)
    disk = di.disk_with(tmp_path / "k8s.raw", "gpt",
                        [(di.LINUX_FS, 8 * MIB, di.ext4_of(src, tmp_path / "f", 8 * MIB))],
                        10 * MIB)  # fmt: skip
    with open_source(disk) as source:
        found = search(source.trees)
        assert [(c.kind, c.spec) for c in found.candidates] == [
            ("containerd", "p1:/var/lib/containerd")
        ]


# -- hostile disks --------------------------------------------------------------------------------


def _read_all(source_trees: list) -> None:
    for _, tree in source_trees:
        for w in walk(tree, []):
            f = tree.open_file(w.parts)
            if isinstance(f, Refusal):
                continue
            try:
                f.read()
            except OSError:
                pass


def test_truncated_image(disks: dict[str, Path], tmp_path: Path) -> None:
    cut = tmp_path / "cut.raw"
    cut.write_bytes(disks["gpt-p2"].read_bytes()[: 20 * MIB])
    with open_source(cut) as source:
        assert source.layout is not None
        p2 = source.layout.volume("p2")
        assert p2 is not None and any("past the disk's end" in p for p in p2.problems)
        _read_all(source.trees)
    cut_qcow = tmp_path / "cut.qcow2"
    cut_qcow.write_bytes(disks["qcow2"].read_bytes()[: 3 * MIB])
    try:
        with open_source(cut_qcow) as source:
            _read_all(source.trees)
    except SourceError as exc:
        assert "cut.qcow2" in str(exc)


def _gpt_patched(raw: bytes, entry: int, first_lba: int, last_lba: int) -> bytes:
    """The primary GPT with entry ``entry``'s bounds changed and both CRCs made good again
    (the backup left as it was)."""
    disk = bytearray(raw)
    header = disk[512:1024]
    entries_lba, count, size = struct.unpack_from("<QII", header, 72)
    at = entries_lba * 512 + (entry - 1) * size
    struct.pack_into("<QQ", disk, at + 32, first_lba, last_lba)
    array = bytes(disk[entries_lba * 512 : entries_lba * 512 + count * size])
    struct.pack_into("<I", disk, 512 + 88, zlib.crc32(array))
    struct.pack_into("<I", disk, 512 + 16, 0)
    struct.pack_into("<I", disk, 512 + 16, zlib.crc32(bytes(disk[512 : 512 + 92])))
    return bytes(disk)


def test_partition_table_pointing_past_the_end(disks: dict[str, Path], tmp_path: Path) -> None:
    raw = disks["gpt-p2"].read_bytes()
    sectors = len(raw) // 512
    bad = tmp_path / "past.raw"
    bad.write_bytes(_gpt_patched(raw, 2, sectors + 100, sectors + 5000))
    with open_source(bad) as source:
        assert source.layout is not None
        p2 = source.layout.volume("p2")
        assert p2 is not None and p2.tree is None
        assert any("past the disk's end" in p and "nothing of it" in p for p in p2.problems)
    # the primary damaged (its CRC no longer matches): the backup is read, and it says so
    broken = bytearray(raw)
    broken[512 + 40] ^= 0xFF
    (tmp_path / "crc.raw").write_bytes(bytes(broken))
    with open_source(tmp_path / "crc.raw") as source:
        assert source.layout is not None
        assert any("backup GPT" in p for p in source.layout.problems)
        assert choose(search(source.trees)).volume == "p2"


def test_mbr_chain_that_loops(tmp_path: Path) -> None:
    disk = tmp_path / "ebr.raw"
    with open(disk, "wb") as f:
        f.truncate(40 * MIB)
    script = "label: dos\nsize=8MiB, type=83\ntype=5\nsize=8MiB, type=83\nsize=8MiB, type=83\n"
    di.run("sfdisk", "-q", disk, stdin=script.encode())
    raw = bytearray(disk.read_bytes())
    ext_start = struct.unpack_from("<I", raw, 446 + 16 + 8)[0]
    second_ebr = ext_start + struct.unpack_from("<I", raw, ext_start * 512 + 446 + 16 + 8)[0]
    # the second EBR's link points back at the first: a loop
    struct.pack_into("<I", raw, second_ebr * 512 + 446 + 16 + 8, 0)
    raw[second_ebr * 512 + 446 + 16 + 4] = 0x05
    struct.pack_into("<I", raw, second_ebr * 512 + 446 + 16 + 12, 16384)
    disk.write_bytes(bytes(raw))
    opened = open_disk(disk)
    table = read_partitions(opened.device)
    opened.close()
    assert [p.number for p in table.partitions] == [1, 5, 6]
    assert any("loops back" in p for p in table.problems)


def test_lvm_label_with_a_loop(stage: Path, tmp_path: Path) -> None:
    """Metadata whose physical extents start at sector 1: the logical volume begins with the
    PV's own label, which would lead into the same volume again and again."""
    ext4 = di.ext4_of(stage / "etc", tmp_path / "small.ext4", 8 * MIB)
    pv = di.lvm_pv(tmp_path / "loop.pv", ext4, pe_start=1)
    disk = open_disk(pv)
    layout = open_volumes(disk)
    try:
        names = [v.name for v in layout.volumes]
        assert names == ["whole", "vg0/root"]
        assert any("a loop" in p for p in layout.volumes[1].problems)
    finally:
        layout.close()


def test_e01_with_a_bad_segment(disks: dict[str, Path], tmp_path: Path) -> None:
    data = bytearray(disks["e01"].read_bytes())
    # a chunk of the media damaged: libewf gives zeros for it; the stored hash tells
    damaged = tmp_path / "damaged.E01"
    middle = len(data) // 2
    damaged.write_bytes(bytes(data[:middle]) + bytes(256) + bytes(data[middle + 256 :]))
    disk = open_disk(damaged)
    try:
        stored, computed = ewf_hash_check(disk) or ("", "")
        assert stored and stored != computed
    finally:
        disk.close()
    # a segment cut short: the media past the cut cannot be read, and says so
    cut = tmp_path / "cut.E01"
    cut.write_bytes(bytes(data[:middle]))
    try:
        disk = open_disk(cut)
    except Exception as exc:  # noqa: BLE001  (an ImageError: one line)
        assert type(exc).__name__ == "ImageError" and "cut.E01" in str(exc)
        return
    try:
        with pytest.raises(OSError, match="cannot be read"):
            disk.device.read_at(disk.device.size - 4096, 4096)
    finally:
        disk.close()


def test_opened_through_a_symlink_or_from_a_descriptor(
    disks: dict[str, Path], tmp_path: Path
) -> None:
    link = tmp_path / "evidence.raw"
    link.symlink_to(disks["gpt"])
    before = set(os.listdir("/proc/self/fd"))
    with open_source(link) as source:
        assert choose(search(source.trees)).volume == "p1"
    assert set(os.listdir("/proc/self/fd")) == before  # the evidence file closed with it
    with open(disks["gpt-p2"], "rb") as f, open_source(disks["gpt-p2"], fileobj=f) as source:
        assert choose(search(source.trees)).volume == "p2"
        assert not f.closed


def test_not_an_image_at_all(tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(os.urandom(1 << 20))
    with open_source(junk) as source:
        assert source.trees == []
        assert source.layout is not None
        whole = source.layout.volume("whole")
        assert whole is not None and whole.problems
    with pytest.raises(SourceError):
        open_source(tmp_path / "missing.raw")
    assert not any(stat.S_ISLNK(os.lstat(p).st_mode) for p in tmp_path.iterdir())
