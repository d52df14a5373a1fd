"""``docker-forensics thin``: dm-thin pool metadata, offline.

``check`` reports damage, ``dump`` writes thin_dump 0.9.0's XML, ``ls`` lists devices with their
exclusive and shared blocks, ``extract`` copies one device out of the data file into a sparse
image, ``repair`` writes a repaired copy to a new file; ``files``, ``cat`` and ``export`` read
the ext4 or xfs filesystem inside a device. Exit codes as the rest of the tool: 0 clean,
4 damage, 8 unreadable or not thin-pool metadata at all (too small, or no superblock magic:
e2fsck exits 8 on a bad magic), 16 usage; ``repair``: 0 nothing to repair, 1 a repaired copy
written, 4 nothing written, 8.

The main command imports this module when ``thin`` runs (:class:`forensics.cli.app.LazyGroup`);
the group also runs on its own (``thin()``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from forensics.api import thin as api
from forensics.cli.common import Group, emit, emit_chunks, warn

if TYPE_CHECKING:
    from forensics.repair.plan_devicemapper import InstallStep
    from forensics.thin.repair import RepairSummary

metadata_argument = click.argument(
    "metadata", type=click.Path(dir_okay=True, path_type=Path), metavar="METADATA"
)
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
    help="The device's size in bytes; default: Docker's record of the device (when METADATA "
    "is Docker's), else what its filesystem claims.",
)
format_option = click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)


def _json(doc: object, *, sort_keys: bool = True) -> str:
    return json.dumps(doc, indent=2, sort_keys=sort_keys) + "\n"


def _conclude(outcome: api.PoolCheck | api.DeviceOutcome) -> int:
    """The exit status of ``outcome``, once its output is written: a failure is said now."""
    if outcome.failure is not None:
        raise outcome.failure
    return outcome.status


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
def thin() -> None:
    """Read dm-thin pool metadata (devicemapper's metadata file) offline."""


@thin.command()
@metadata_argument
@format_option
def check(metadata: Path, fmt: str) -> int:
    """Check METADATA: what thin_check 0.9.0 checks, and the data space map, mapped_blocks,
    data block ranges, times and transaction ids that it does not."""
    from forensics.thin.check import report_json, report_text

    with api.check(metadata) as checked:
        result = checked.result
        emit(_json(report_json(result)) if fmt == "json" else report_text(result))
        return _conclude(checked)


@thin.command()
@metadata_argument
def dump(metadata: Path) -> int:
    """Write METADATA as thin_dump 0.9.0's XML (byte-identical on valid metadata)."""
    with api.dump(metadata) as read:
        emit_chunks(read.xml_chunks())
        for finding in read.errors:
            warn(api.error_line(finding), "thin dump")
        return read.status


@thin.command()
@metadata_argument
@format_option
def ls(metadata: Path, fmt: str) -> int:
    """List the thin devices of METADATA: mapped, exclusive and shared blocks, transaction,
    creation and snapshot times."""
    from forensics.thin.ls import usage_text

    listed = api.ls(metadata)
    emit(_json(listed.as_dict()) if fmt == "json" else usage_text(listed.devices))
    for finding in listed.errors:
        warn(api.error_line(finding), "thin ls")
    return listed.status


@thin.command()
@metadata_argument
@data_argument
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

    def say(line: str) -> None:
        warn(line, "thin extract")

    done = api.extract(metadata, data, dev_id, image, size=size, notify=say)
    result = done.result
    click.echo(
        f"{image}: {result.copied} of {result.mapped} mapped blocks written, "
        f"{result.size} bytes ({done.size_from})",
        err=True,
    )
    return done.status


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
@format_option
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
    copy = api.repair(
        metadata,
        out,
        force=force,
        transaction_id=transaction_id,
        data_block_size=data_block_size,
        nr_data_blocks=nr_data_blocks,
    )
    if copy.summary is None:
        if fmt == "json":
            emit(_json(copy.as_dict()))
        warn(f"nothing written: {copy.reason}", "thin repair")
    elif fmt == "json":
        emit(_json(copy.as_dict()))
    else:
        emit(repair_text(copy.summary, copy.steps))
    return copy.status


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
    errors = sum(1 for f in summary.damage if f.severity == api.ERROR)
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


def _warn_all(problems: list[str], command: str) -> None:
    for line in problems:
        warn(line, f"thin {command}")


@thin.command()
@metadata_argument
@data_argument
@dev_option
@click.argument("path", default="/", metavar="[PATH]")
@size_option
@format_option
def files(metadata: Path, data: Path, dev_id: int, path: str, size: int | None, fmt: str) -> int:
    """List the files of device --dev's filesystem (ext4 or xfs) under PATH, as ls -li does:
    inode, mode, links, owner, size, mtime in UTC to the nanosecond, xattr names."""
    from forensics.thin.files import member_doc, member_line

    listing = api.files(metadata, data, dev_id, path, size=size)
    members = listing.members
    if fmt == "json":
        doc = {
            "device": listing.device,
            "filesystem": listing.filesystem,
            "size": listing.size,
            "files": [member_doc(m.parts, m.stat, m.target, m.xattrs) for m in members],
            "problems": listing.problems,
        }
        emit(_json(doc, sort_keys=False))
    else:
        emit("".join(member_line(m.parts, m.stat, m.target, m.xattrs) + "\n" for m in members))
    _warn_all(listing.problems, "files")
    return _conclude(listing)


@thin.command()
@metadata_argument
@data_argument
@dev_option
@click.argument("path", metavar="PATH")
@size_option
def cat(metadata: Path, data: Path, dev_id: int, path: str, size: int | None) -> int:
    """Write regular file PATH of device --dev's filesystem to standard output (a symlink is
    not followed)."""
    out = click.get_binary_stream("stdout")
    outcome = api.cat(metadata, data, dev_id, path, out, size=size)
    _warn_all(outcome.problems, "cat")
    return outcome.status


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
    exported = api.export(metadata, data, dev_id, target, force=force, size=size)
    _warn_all(exported.problems, "export")
    click.echo(f"{target}: {exported.members} files written, {exported.bytes} bytes", err=True)
    return exported.status
