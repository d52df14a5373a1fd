"""``docker-forensics thin``: dm-thin pool metadata, offline.

``check`` reports damage, ``dump`` writes thin_dump 0.9.0's XML, ``ls`` lists devices with their
exclusive and shared blocks, ``extract`` copies one device out of the data file into a sparse
image, ``repair`` writes a repaired copy to a new file; ``files``, ``cat`` and ``export`` read
the ext4 or xfs filesystem inside a device. Exit codes as the rest of the tool: 0 clean,
4 damage, 8 unreadable or not thin-pool metadata at all (too small, or no superblock magic:
e2fsck exits 8 on a bad magic), 16 usage; ``repair``: 0 nothing to repair, 1 a repaired copy
written, 4 nothing written, 8.

The main command loads the group when it is first asked for (``forensics.cli``'s ``LAZY``):
numpy and construct load only for ``thin``.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from forensics.cliutil import (
    EXIT_ERRORS,
    EXIT_OK,
    EXIT_OPERATIONAL,
    EXIT_REPAIRED,
    OperationalError,
    emit,
)

if TYPE_CHECKING:
    from forensics.repair.plan_devicemapper import InstallStep
    from forensics.thin.blocks import MetadataFile
    from forensics.thin.files import DeviceTree
    from forensics.thin.pool import Pool
    from forensics.thin.repair import RepairSummary

#: severity of a fatal finding (forensics.thin.findings.ERROR; the thin modules load numpy,
#: so they are imported only when a thin command runs)
ERROR = "error"

EXIT_DAMAGE, EXIT_UNREADABLE = EXIT_ERRORS, EXIT_OPERATIONAL

metadata_argument = click.argument(
    "metadata", type=click.Path(dir_okay=True, path_type=Path), metavar="METADATA"
)


@contextmanager
def _open(path: Path) -> Iterator[MetadataFile]:
    from forensics.thin.blocks import MetadataFile, MetadataOpenError

    try:
        meta = MetadataFile(path)
    except MetadataOpenError as exc:
        raise OperationalError(str(exc)) from None
    try:
        yield meta
    finally:
        meta.close()


def _finish(status: int) -> int:
    """Leave with ``status`` whether the group runs standalone or under the main command."""
    click.get_current_context().exit(status)
    return status  # not reached


def _not_metadata(metadata: Path, pool: Pool) -> OperationalError:
    return OperationalError(f"{metadata}: not thin-pool metadata ({pool.not_metadata})")


def _warn(pool: Pool, command: str) -> None:
    for f in pool.findings:
        if f.severity == ERROR:
            where = f" (block {f.block})" if f.block is not None else ""
            click.echo(f"docker-forensics thin {command}: {f.message}{where}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def thin() -> None:
    """Read dm-thin pool metadata (devicemapper's metadata file) offline."""


@thin.command()
@metadata_argument
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def check(metadata: Path, fmt: str) -> int:
    """Check METADATA: what thin_check 0.9.0 checks, and the data space map, mapped_blocks,
    data block ranges, times and transaction ids that it does not."""
    from forensics.thin.check import check_pool, report_json, report_text

    with _open(metadata) as meta:
        result = check_pool(_read_pool(meta))
        if fmt == "json":
            emit(json.dumps(report_json(result), indent=2, sort_keys=True) + "\n")
        else:
            emit(report_text(result))
        if result.pool.not_metadata:
            raise _not_metadata(metadata, result.pool)
        return _finish(EXIT_DAMAGE if result.exit_damage() else EXIT_OK)


@thin.command()
@metadata_argument
def dump(metadata: Path) -> int:
    """Write METADATA as thin_dump 0.9.0's XML (byte-identical on valid metadata)."""
    from forensics.thin.dump import dump_chunks

    with _open(metadata) as meta:
        pool = _read_pool(meta, space_maps=False)
        if pool.not_metadata:
            raise _not_metadata(metadata, pool)
        if pool.usable:
            for chunk in dump_chunks(pool):
                emit(chunk)
        _warn(pool, "dump")
        damaged = not pool.usable or any(f.severity == ERROR for f in pool.findings)
        return _finish(EXIT_DAMAGE if damaged else EXIT_OK)


@thin.command()
@metadata_argument
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def ls(metadata: Path, fmt: str) -> int:
    """List the thin devices of METADATA: mapped, exclusive and shared blocks, transaction,
    creation and snapshot times."""
    from forensics.thin.ls import device_usage, usage_text

    with _open(metadata) as meta:
        pool = _read_pool(meta, space_maps=False)
        if pool.not_metadata:
            raise _not_metadata(metadata, pool)
        usage = device_usage(pool) if pool.usable else []
        if fmt == "json":
            doc: dict[str, Any] = {
                "metadata": str(metadata),
                "devices": [u.as_dict() for u in usage],
                "errors": [f.as_dict() for f in pool.findings if f.severity == ERROR],
            }
            emit(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        else:
            emit(usage_text(usage))
        _warn(pool, "ls")
        damaged = not pool.usable or any(f.severity == ERROR for f in pool.findings)
        return _finish(EXIT_DAMAGE if damaged else EXIT_OK)


@thin.command()
@metadata_argument
@click.argument("data", type=click.Path(dir_okay=False, path_type=Path), metavar="DATA")
@click.option("--dev", "dev_id", type=click.IntRange(0), required=True, help="Thin device id.")
@click.option(
    "-o",
    "--output",
    "image",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The raw image to create (must not exist).",
)
@click.option(
    "--size",
    type=click.IntRange(0),
    default=None,
    help="Make the image at least this many bytes (the device's virtual size; by default the "
    "size in Docker's record of the device).",
)
def extract(metadata: Path, data: Path, dev_id: int, image: Path, size: int | None) -> int:
    """Copy thin device --dev out of the pool's DATA file into a sparse raw IMAGE."""
    from forensics.drivers import DEVICEMAPPER_POOL
    from forensics.thin.extract import ExtractError, docker_recorded_size, extract_device

    _check_image_path(image, metadata, data)
    with _open(metadata) as meta:
        pool = _read_pool(meta, space_maps=False)
        if pool.not_metadata:
            raise _not_metadata(metadata, pool)
        if not pool.usable:
            _warn(pool, "extract")
            raise OperationalError(f"{metadata}: the superblock is unusable")
        recorded = docker_recorded_size(metadata, dev_id) if size is None else None
        try:
            result = extract_device(
                pool, dev_id, data, image, size=recorded.size if recorded else size
            )
        except ExtractError as exc:
            raise OperationalError(str(exc)) from None
        except OSError as exc:
            raise OperationalError(f"{exc.filename or image}: {exc.strerror or exc}") from None
        _warn(pool, "extract")
        for vstart, count in result.skipped:
            click.echo(
                f"docker-forensics thin extract: virtual blocks {vstart}..{vstart + count - 1} "
                f"map past the end of {data}; left as holes",
                err=True,
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
        click.echo(
            f"{image}: {result.copied} of {result.mapped} mapped blocks written, "
            f"{result.size} bytes ({how})",
            err=True,
        )
        damaged = result.skipped or any(f.severity == ERROR for f in pool.findings)
        return _finish(EXIT_DAMAGE if damaged else EXIT_OK)


def _check_image_path(image: Path, *inputs: Path) -> None:
    if image.exists() or image.is_symlink():
        raise OperationalError(f"{image} exists; extract never overwrites")
    if not image.resolve().parent.is_dir():
        raise OperationalError(f"{image.parent}: no such directory")
    target = image.resolve()
    for path in inputs:
        if path.resolve() == target:
            raise click.UsageError(f"{image} is one of the inputs")


def _read_pool(meta: MetadataFile, *, space_maps: bool = True) -> Pool:
    from forensics.thin.pool import read_pool

    return read_pool(meta, space_maps=space_maps)


@thin.command()
@metadata_argument
@click.option(
    "-o",
    "--output",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The repaired copy to create (must not exist unless --force).",
)
@click.option("--force", is_flag=True, help="Replace OUT if it exists (never METADATA).")
@click.option(
    "--transaction-id",
    type=click.IntRange(0),
    default=None,
    help="The pool's transaction id, when the superblock is damaged.",
)
@click.option(
    "--data-block-size",
    type=click.IntRange(1),
    default=None,
    help="Data block size in 512-byte sectors, when the superblock is damaged.",
)
@click.option(
    "--nr-data-blocks",
    type=click.IntRange(1),
    default=None,
    help="Number of data blocks, when the superblock is damaged.",
)
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def repair(
    metadata: Path,
    out: Path,
    force: bool,
    transaction_id: int | None,
    data_block_size: int | None,
    nr_data_blocks: int | None,
    fmt: str,
) -> int:
    """Write a repaired copy of METADATA to the new file OUT: what is readable, salvaged, with
    new space maps; print what was lost and the steps that put the copy in place. METADATA is
    never written."""
    from forensics.repair.plan_devicemapper import install_steps
    from forensics.thin.repair import (
        NothingSalvageable,
        Overrides,
        RepairError,
        write_repaired_copy,
    )

    overrides = Overrides(transaction_id, data_block_size, nr_data_blocks)
    try:
        summary = write_repaired_copy(metadata, out, force=force, overrides=overrides)
    except RepairError as exc:
        raise OperationalError(str(exc)) from None
    except NothingSalvageable as exc:
        if fmt == "json":
            doc = {"metadata": str(metadata), "written": False, "reason": exc.reason}
            emit(json.dumps({**doc, "needs": list(exc.needs)}, indent=2, sort_keys=True) + "\n")
        click.echo(f"docker-forensics thin repair: nothing written: {exc.reason}", err=True)
        return _finish(EXIT_DAMAGE)
    repaired = bool(summary.damage)  # a clean input is copied, not repaired
    steps = install_steps(metadata, out) if repaired else []
    if fmt == "json":
        doc = {**summary.as_dict(), "written": True, "repaired": repaired}
        doc["steps"] = [s.as_dict() for s in steps]
        emit(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    else:
        emit(repair_text(summary, steps))
    return _finish(EXIT_REPAIRED if repaired else EXIT_OK)


def repair_text(summary: RepairSummary, steps: list[InstallStep]) -> str:
    """The text report of ``thin repair``: what was written, lost and noted; then the steps."""
    stats = summary.stats
    assert stats is not None
    lines = [
        f"{summary.output}: repaired copy of {summary.metadata} written "
        f"({stats.used_blocks} of {stats.metadata_blocks} metadata blocks in use)",
        f"superblock {summary.superblock}: transaction {summary.transaction_id}, "
        f"time {summary.time}, {summary.nr_data_blocks} data blocks of "
        f"{summary.data_block_size} sectors",
        f"{len(summary.devices)} devices, {summary.mappings_written} mappings written",
    ]
    for dev in summary.devices:
        if dev.complete and not dev.notes:
            continue
        of = f" of {dev.expected}" if dev.expected is not None and not dev.complete else ""
        state = "complete" if dev.complete else "incomplete"
        lines.append(f"  device {dev.dev_id}: {dev.written}{of} mappings, {state}")
        lines += [f"    {note}" for note in dev.notes]
    lines += [f"lost: {item}" for item in summary.lost]
    lines += [f"note: {item}" for item in summary.notes]
    errors = sum(1 for f in summary.damage if f.severity == ERROR)
    warnings = len(summary.damage) - errors
    if summary.damage:
        lines.append(
            f"the input had {errors} errors and {warnings} warnings "
            f"(docker-forensics thin check {summary.metadata} lists them)"
        )
    if not summary.damage:
        lines.append(
            f"{summary.metadata} has no damage: nothing to repair ({summary.output} is a fresh "
            "copy of the same pool, with no need to put it in place)"
        )
        return "\n".join(lines) + "\n"
    verdict = "some devices or mappings are lost" if summary.losses else "nothing is lost"
    lines.append(f"{verdict}; {summary.metadata} is unchanged")
    lines += ["", "To put the copy in place:"]
    for number, step in enumerate(steps, 1):
        lines.append(f"  {number}. {step.what}")
        if step.command:
            lines.append(f"       {step.command}")
    return "\n".join(lines) + "\n"


# -- the files inside a device ------------------------------------------------------------

data_argument = click.argument(
    "data", type=click.Path(dir_okay=False, path_type=Path), metavar="DATA"
)
dev_option = click.option(
    "--dev", "dev_id", type=click.IntRange(0), required=True, help="Thin device id."
)
size_option = click.option(
    "--size",
    type=click.IntRange(0),
    default=None,
    help="The device's size in bytes (Docker's record); default: what its filesystem claims.",
)


def _path_parts(path: str) -> tuple[bytes, ...]:
    """PATH inside the device as components; ``..`` refused (nothing above the root)."""
    raw = os.fsencode(path)
    parts = tuple(p for p in raw.split(b"/") if p not in (b"", b"."))
    if b".." in parts:
        raise click.UsageError(f"{path}: '..' is not allowed in a path inside the device")
    return parts


@contextmanager
def _device_tree(metadata: Path, data: Path, dev_id: int, size: int | None) -> Iterator[DeviceTree]:
    from forensics.thin.files import FilesError, open_device_tree

    try:
        with open_device_tree(metadata, data, dev_id, size=size) as opened:
            yield opened
    except FilesError as exc:
        raise OperationalError(str(exc)) from None


def _report(command: str, opened: DeviceTree, problems: list[str]) -> bool:
    """Print the device's problems and ``problems`` to stderr; True when there were any."""
    lines = [str(p) for p in opened.device_problems()] + opened.tree.notes + problems
    for line in lines:
        click.echo(f"docker-forensics thin {command}: {line}", err=True)
    return bool(lines)


@thin.command()
@metadata_argument
@data_argument
@dev_option
@click.argument("path", default="/", metavar="[PATH]")
@size_option
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def files(metadata: Path, data: Path, dev_id: int, path: str, size: int | None, fmt: str) -> int:
    """List the files of device --dev's filesystem (ext4 or xfs) under PATH, as ls -li does:
    inode, mode, links, owner, size, mtime in UTC to the nanosecond, xattr names."""
    from forensics.fs import display, walk
    from forensics.fs.tree import Refusal
    from forensics.thin.files import member_doc, member_line

    top = _path_parts(path)
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
            if fmt == "json":
                members.append(member_doc(w.parts, w.stat, target, xattrs))
            else:
                members.append(member_line(w.parts, w.stat, target, xattrs))
        problems = [p if isinstance(p, str) else f"{display(p.path)}: {p.detail}" for p in found]
        if fmt == "json":
            doc = {
                "device": dev_id,
                "filesystem": tree.label,
                "size": opened.device.size,
                "files": members,
                "problems": [str(p) for p in opened.device_problems()] + tree.notes + problems,
            }
            emit(json.dumps(doc, indent=2) + "\n")
        else:
            emit("".join(line + "\n" for line in members))
        damaged = _report("files", opened, problems)
        if top and not members:
            raise OperationalError(f"{path}: not in device {dev_id}")
        return _finish(EXIT_DAMAGE if damaged else EXIT_OK)


@thin.command()
@metadata_argument
@data_argument
@dev_option
@click.argument("path", metavar="PATH")
@size_option
def cat(metadata: Path, data: Path, dev_id: int, path: str, size: int | None) -> int:
    """Write regular file PATH of device --dev's filesystem to standard output (a symlink is
    not followed)."""
    from forensics.fs.tree import Refusal

    parts = _path_parts(path)
    with _device_tree(metadata, data, dev_id, size) as opened:
        source = opened.tree.open_file(parts)
        if isinstance(source, Refusal):
            raise OperationalError(source.detail)
        out = click.get_binary_stream("stdout")
        problems = []
        try:
            with source:
                while chunk := source.read(1 << 20):
                    out.write(chunk)
            out.flush()
        except BrokenPipeError:
            pass
        except OSError as exc:
            problems.append(f"{path}: cut short: {exc.strerror or exc}")
        damaged = _report("cat", opened, problems)
        return _finish(EXIT_DAMAGE if damaged else EXIT_OK)


@thin.command(name="export")
@metadata_argument
@data_argument
@dev_option
@click.option(
    "-o",
    "--output",
    "target",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="The directory to write the files into (created if missing).",
)
@click.option("--force", is_flag=True, help="Write into TARGET even if it is not empty.")
@size_option
def export_files(
    metadata: Path, data: Path, dev_id: int, target: Path, force: bool, size: int | None
) -> int:
    """Copy every file of device --dev's filesystem into the directory TARGET, with owners,
    modes, times and xattrs where the target allows. Nothing is written outside TARGET; a name
    already in TARGET is reported and left as it is."""
    from forensics.fs.export import display_problem, export_tree

    for source in (metadata, data):
        resolved = source.resolve()
        if resolved == target.resolve() or target.resolve() in resolved.parents:
            raise click.UsageError(f"{target} holds the input {source}")
    target_fd = _open_target(target, force)
    try:
        with _device_tree(metadata, data, dev_id, size) as opened:
            result = export_tree(opened.tree, target_fd)
            problems = [display_problem(p) for p in result.problems]
            problems += [f"not kept: {what}" for what in sorted(result.not_kept)]
            damaged = _report("export", opened, problems)
            click.echo(f"{target}: {result.members} files written, {result.bytes} bytes", err=True)
            return _finish(EXIT_DAMAGE if damaged else EXIT_OK)
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
