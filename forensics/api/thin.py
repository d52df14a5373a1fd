"""``thin``: dm-thin pool metadata read offline: checked, dumped as thin_dump's XML, its devices
listed and extracted, a repaired copy written, and the files of a device's ext4 or xfs read.

The thin modules load numpy: each verb imports them when it runs. :func:`check` and
:func:`dump` hand their result out while the metadata file is still open (the XML is read
from it as it is written), as context managers; the others return when done.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from forensics.errors import ForensicsError, OperationalError, UsageError
from forensics.exitstatus import EXIT_ERRORS, EXIT_OK, EXIT_REPAIRED

if TYPE_CHECKING:
    from forensics.fs import Stat
    from forensics.repair.plan_devicemapper import InstallStep
    from forensics.thin.blocks import MetadataFile
    from forensics.thin.check import CheckResult
    from forensics.thin.extract import ExtractResult
    from forensics.thin.files import DeviceTree
    from forensics.thin.findings import ThinFinding
    from forensics.thin.ls import DeviceUsage
    from forensics.thin.pool import Pool
    from forensics.thin.repair import RepairSummary

Notify = Callable[[str], None]

#: severity of a fatal finding (forensics.thin.findings.ERROR, written out: that module is
#: imported when a thin verb runs)
ERROR = "error"


def _status(damaged: bool) -> int:
    return EXIT_ERRORS if damaged else EXIT_OK


@contextmanager
def _opened(path: Path) -> Iterator[MetadataFile]:
    from forensics.thin.blocks import MetadataFile

    meta = MetadataFile(path)
    try:
        yield meta
    finally:
        meta.close()


def _read_pool(meta: MetadataFile, *, space_maps: bool = True) -> Pool:
    from forensics.thin.pool import read_pool

    return read_pool(meta, space_maps=space_maps)


def _not_metadata(metadata: Path, pool: Pool) -> OperationalError:
    return OperationalError(f"{metadata}: not thin-pool metadata ({pool.not_metadata})")


def _errors(pool: Pool) -> list[ThinFinding]:
    return [f for f in pool.findings if f.severity == ERROR]


def error_line(finding: ThinFinding) -> str:
    """A fatal finding as the verbs other than ``check`` say it on stderr."""
    where = f" (block {finding.block})" if finding.block is not None else ""
    return f"{finding.message}{where}"


# -- check, dump, ls ------------------------------------------------------------------------


@dataclass
class PoolCheck:
    """``check``'s findings; ``failure`` when the file is no thin-pool metadata at all (the
    report is made all the same: it says why)."""

    result: CheckResult
    failure: ForensicsError | None = None

    @property
    def status(self) -> int:
        return _status(self.result.exit_damage())


@contextmanager
def check(metadata: Path) -> Iterator[PoolCheck]:
    """Every check of METADATA: what thin_check 0.9.0 checks, and more."""
    from forensics.thin.check import check_pool

    with _opened(metadata) as meta:
        result = check_pool(_read_pool(meta))
        pool = result.pool
        yield PoolCheck(result, _not_metadata(metadata, pool) if pool.not_metadata else None)


@dataclass
class PoolRead:
    """A pool read without its space maps, and its fatal findings."""

    pool: Pool

    @property
    def errors(self) -> list[ThinFinding]:
        return _errors(self.pool)

    @property
    def status(self) -> int:
        return _status(not self.pool.usable or bool(self.errors))

    def xml_chunks(self) -> Iterator[bytes]:
        """thin_dump 0.9.0's XML (ASCII) of the pool, as it is read (nothing when unusable)."""
        from forensics.thin.dump import dump_chunks

        if self.pool.usable:
            yield from dump_chunks(self.pool)


@contextmanager
def dump(metadata: Path) -> Iterator[PoolRead]:
    """METADATA read for its XML (:meth:`PoolRead.xml_chunks`, while the block runs)."""
    with _opened(metadata) as meta:
        pool = _read_pool(meta, space_maps=False)
        if pool.not_metadata:
            raise _not_metadata(metadata, pool)
        yield PoolRead(pool)


@dataclass
class PoolList:
    """The devices of a pool with their use of its data blocks, and its fatal findings."""

    metadata: Path
    devices: list[DeviceUsage]
    errors: list[ThinFinding]
    damaged: bool

    @property
    def status(self) -> int:
        return _status(self.damaged)

    def as_dict(self) -> dict[str, Any]:
        return {
            "metadata": str(self.metadata),
            "devices": [u.as_dict() for u in self.devices],
            "errors": [f.as_dict() for f in self.errors],
        }


def ls(metadata: Path) -> PoolList:
    """The thin devices of METADATA: mapped, exclusive and shared blocks, and their times."""
    from forensics.thin.ls import device_usage

    with _opened(metadata) as meta:
        pool = _read_pool(meta, space_maps=False)
        if pool.not_metadata:
            raise _not_metadata(metadata, pool)
        usage = device_usage(pool) if pool.usable else []
        errors = _errors(pool)
        return PoolList(metadata, usage, errors, not pool.usable or bool(errors))


# -- extract --------------------------------------------------------------------------------


@dataclass
class Extracted:
    """A device copied out: what was written, and where its size came from (``size_from``)."""

    result: ExtractResult
    size_from: str
    damaged: bool

    @property
    def status(self) -> int:
        return _status(self.damaged)


def extract(
    metadata: Path,
    data: Path,
    dev_id: int,
    image: Path,
    *,
    size: int | None = None,
    notify: Notify | None = None,
) -> Extracted:
    """Copy thin device ``dev_id`` out of the pool's DATA file into the new sparse file
    ``image``, at least ``size`` bytes long (by default the size in Docker's record of the
    device). The pool's fatal findings and the blocks left as holes go to ``notify``."""
    from forensics.drivers import DEVICEMAPPER_POOL
    from forensics.thin.extract import docker_recorded_size, extract_device

    say = notify or (lambda line: None)
    _check_image_path(image, metadata, data)
    with _opened(metadata) as meta:
        pool = _read_pool(meta, space_maps=False)
        if pool.not_metadata:
            raise _not_metadata(metadata, pool)
        if not pool.usable:
            for f in _errors(pool):
                say(error_line(f))
            raise OperationalError(f"{metadata}: the superblock is unusable")
        recorded = docker_recorded_size(metadata, dev_id) if size is None else None
        try:
            result = extract_device(
                pool, dev_id, data, image, size=recorded.size if recorded else size
            )
        except OSError as exc:
            raise OperationalError(f"{exc.filename or image}: {exc.strerror or exc}") from None
        errors = _errors(pool)
        for f in errors:
            say(error_line(f))
        for vstart, count in result.skipped:
            say(
                f"virtual blocks {vstart}..{vstart + count - 1} map past the end of {data}; "
                "left as holes"
            )
        if size is not None:
            how = "as given"
        elif recorded is not None:
            how = f"the device's size in Docker's record {recorded.record}"
        else:
            how = (
                "a guess: the end of its last mapped block, and the device may be larger; "
                f'give --size (Docker records it as "size" in {DEVICEMAPPER_POOL.records}/)'
            )
        return Extracted(result, how, bool(result.skipped) or bool(errors))


def _check_image_path(image: Path, *inputs: Path) -> None:
    if image.exists() or image.is_symlink():
        raise OperationalError(f"{image} exists; extract never overwrites")
    if not image.resolve().parent.is_dir():
        raise OperationalError(f"{image.parent}: no such directory")
    target = image.resolve()
    for path in inputs:
        if path.resolve() == target:
            raise UsageError(f"{image} is one of the inputs")


# -- repair ---------------------------------------------------------------------------------


@dataclass
class RepairedCopy:
    """A repaired copy written (``summary``, and the ``steps`` that put it in place when the
    input was damaged), or why none was (``reason``, and the options that would help)."""

    metadata: Path
    summary: RepairSummary | None = None
    steps: list[InstallStep] = field(default_factory=list)
    reason: str | None = None
    needs: tuple[str, ...] = ()

    @property
    def repaired(self) -> bool:
        """A copy of damaged metadata was written (a clean input is copied, not repaired)."""
        return self.summary is not None and bool(self.summary.damage)

    @property
    def status(self) -> int:
        if self.summary is None:
            return EXIT_ERRORS
        return EXIT_REPAIRED if self.repaired else EXIT_OK

    def as_dict(self) -> dict[str, Any]:
        if self.summary is None:
            return {
                "metadata": str(self.metadata),
                "written": False,
                "reason": self.reason,
                "needs": list(self.needs),
            }
        doc = {**self.summary.as_dict(), "written": True, "repaired": self.repaired}
        doc["steps"] = [s.as_dict() for s in self.steps]
        return doc


def repair(
    metadata: Path,
    out: Path,
    *,
    force: bool = False,
    transaction_id: int | None = None,
    data_block_size: int | None = None,
    nr_data_blocks: int | None = None,
) -> RepairedCopy:
    """Write a repaired copy of METADATA to the new file ``out`` (replaced only with
    ``force``); METADATA is never written. The superblock values given replace a damaged
    superblock's."""
    from forensics.repair.plan_devicemapper import install_steps
    from forensics.thin.repair import NothingSalvageable, Overrides, write_repaired_copy

    overrides = Overrides(transaction_id, data_block_size, nr_data_blocks)
    try:
        summary = write_repaired_copy(metadata, out, force=force, overrides=overrides)
    except NothingSalvageable as exc:
        return RepairedCopy(metadata, reason=exc.reason, needs=exc.needs)
    copy = RepairedCopy(metadata, summary)
    if copy.repaired:
        copy.steps = install_steps(metadata, out)
    return copy


# -- the files inside a device --------------------------------------------------------------


@dataclass
class DeviceOutcome:
    """What a read of a device's files met: the device's damage, the filesystem's notes and
    the problems of the read, one line each; ``failure`` when what was asked for is not
    there (said after the output)."""

    problems: list[str]
    failure: ForensicsError | None = None

    @property
    def status(self) -> int:
        return _status(bool(self.problems))


@dataclass
class Member:
    """One file of a device's filesystem, as ``thin files`` lists it."""

    parts: tuple[bytes, ...]
    stat: Stat
    target: bytes | None
    xattrs: dict[bytes, bytes]


@dataclass
class DeviceListing(DeviceOutcome):
    device: int = 0
    filesystem: str = ""
    size: int = 0
    members: list[Member] = field(default_factory=list)


@dataclass
class DeviceExport(DeviceOutcome):
    members: int = 0
    bytes: int = 0


def path_parts(path: str) -> tuple[bytes, ...]:
    """PATH inside the device as components; ``..`` refused (nothing above the root)."""
    raw = os.fsencode(path)
    parts = tuple(p for p in raw.split(b"/") if p not in (b"", b"."))
    if b".." in parts:
        raise UsageError(f"{path}: '..' is not allowed in a path inside the device")
    return parts


@contextmanager
def _device_tree(metadata: Path, data: Path, dev_id: int, size: int | None) -> Iterator[DeviceTree]:
    """The filesystem of the device, ``size`` long: as given, else Docker's record of the device
    when METADATA is Docker's own (then no file is trusted beyond the device's true end)."""
    from forensics.thin.extract import docker_recorded_size
    from forensics.thin.files import open_device_tree

    if size is None:
        recorded = docker_recorded_size(metadata, dev_id)
        size = recorded.size if recorded is not None else None
    with open_device_tree(metadata, data, dev_id, size=size) as opened:
        yield opened


def _problems(opened: DeviceTree, own: list[str]) -> list[str]:
    return [str(p) for p in opened.device_problems()] + opened.tree.notes + own


def files(
    metadata: Path, data: Path, dev_id: int, path: str = "/", *, size: int | None = None
) -> DeviceListing:
    """The files of device ``dev_id``'s filesystem (ext4 or xfs) under PATH, with their
    inodes, symlink targets and xattrs; ``size`` the device's size (Docker's record)."""
    from forensics.fs import display, walk
    from forensics.fs.tree import Refusal

    top = path_parts(path)
    with _device_tree(metadata, data, dev_id, size) as opened:
        tree = opened.tree
        found: list = []
        members = []
        for w in walk(tree, found, top=top):
            target = tree.readlink(w.parts) if stat.S_ISLNK(w.stat.mode) else None
            xattrs = tree.xattrs(w.parts)
            for value in (target, xattrs):
                if isinstance(value, Refusal):
                    found.append(f"{display(w.parts)}: {value.detail}")
            target = None if isinstance(target, Refusal) else target
            xattrs = {} if isinstance(xattrs, Refusal) else xattrs
            members.append(Member(w.parts, w.stat, target, xattrs))
        own = [p if isinstance(p, str) else f"{display(p.path)}: {p.detail}" for p in found]
        missing = OperationalError(f"{path}: not in device {dev_id}")
        return DeviceListing(
            _problems(opened, own),
            missing if top and not members else None,
            device=dev_id,
            filesystem=tree.label,
            size=opened.device.size,
            members=members,
        )


def cat(
    metadata: Path, data: Path, dev_id: int, path: str, out: BinaryIO, *, size: int | None = None
) -> DeviceOutcome:
    """Write regular file PATH of device ``dev_id``'s filesystem to ``out`` (a symlink is not
    followed; a reader of ``out`` that goes away ends the copy quietly)."""
    from forensics.fs.tree import Refusal

    parts = path_parts(path)
    with _device_tree(metadata, data, dev_id, size) as opened:
        source = opened.tree.open_file(parts)
        if isinstance(source, Refusal):
            raise OperationalError(source.detail)
        own = []
        try:
            with source:
                while chunk := source.read(1 << 20):
                    out.write(chunk)
            out.flush()
        except BrokenPipeError:
            pass
        except OSError as exc:
            own.append(f"{path}: cut short: {exc.strerror or exc}")
        return DeviceOutcome(_problems(opened, own))


def export(
    metadata: Path,
    data: Path,
    dev_id: int,
    target: Path,
    *,
    force: bool = False,
    size: int | None = None,
) -> DeviceExport:
    """Copy every file of device ``dev_id``'s filesystem into the directory ``target`` (made
    if missing; one that is not empty only with ``force``), with owners, modes, times and
    xattrs where the target allows. Nothing is written outside ``target``."""
    from forensics.fs.export import display_problem, export_tree

    for source in (metadata, data):
        resolved = source.resolve()
        if resolved == target.resolve() or target.resolve() in resolved.parents:
            raise UsageError(f"{target} holds the input {source}")
    target_fd = _open_target(target, force)
    try:
        with _device_tree(metadata, data, dev_id, size) as opened:
            result = export_tree(opened.tree, target_fd)
            own = [display_problem(p) for p in result.problems]
            own += [f"not kept: {what}" for what in sorted(result.not_kept)]
            return DeviceExport(_problems(opened, own), members=result.members, bytes=result.bytes)
    finally:
        os.close(target_fd)


def _open_target(target: Path, force: bool) -> int:
    if target.is_symlink():
        raise OperationalError(f"{target} is a symlink; give the directory itself")
    if not target.exists():
        try:
            target.mkdir(mode=0o700)
        except OSError as exc:
            raise OperationalError(f"{target}: {exc.strerror or exc}") from None
    elif not target.is_dir():
        raise OperationalError(f"{target} is not a directory")
    elif any(target.iterdir()) and not force:
        raise OperationalError(f"{target} is not empty (--force writes into it)")
    try:
        return os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise OperationalError(f"{target}: {exc.strerror or exc}") from None
