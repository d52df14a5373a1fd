"""``docker-forensics thin``: dm-thin pool metadata, offline.

``check`` reports damage, ``dump`` writes thin_dump 0.9.0's XML, ``ls`` lists devices with their
exclusive and shared blocks, ``extract`` copies one device out of the data file into a sparse
image. Exit codes as the rest of the tool: 0 clean, 4 damage, 8 unreadable, 16 usage.

The group is registered on the main command by ``cli.add_command(thin)``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from forensics.cliutil import EXIT_ERRORS, EXIT_OK, EXIT_OPERATIONAL, OperationalError, emit

if TYPE_CHECKING:
    from forensics.thin.blocks import MetadataFile
    from forensics.thin.pool import Pool

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
        return _finish(EXIT_DAMAGE if result.exit_damage() else EXIT_OK)


@thin.command()
@metadata_argument
def dump(metadata: Path) -> int:
    """Write METADATA as thin_dump 0.9.0's XML (byte-identical on valid metadata)."""
    from forensics.thin.dump import dump_chunks

    with _open(metadata) as meta:
        pool = _read_pool(meta, space_maps=False)
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
    help="Make the image at least this many bytes (the device's virtual size).",
)
def extract(metadata: Path, data: Path, dev_id: int, image: Path, size: int | None) -> int:
    """Copy thin device --dev out of the pool's DATA file into a sparse raw IMAGE."""
    from forensics.thin.extract import ExtractError, extract_device

    _check_image_path(image, metadata, data)
    with _open(metadata) as meta:
        pool = _read_pool(meta, space_maps=False)
        if not pool.usable:
            _warn(pool, "extract")
            raise OperationalError(f"{metadata}: the superblock is unusable")
        try:
            result = extract_device(pool, dev_id, data, image, size=size)
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
        click.echo(
            f"{image}: {result.copied} of {result.mapped} mapped blocks written, "
            f"{result.size} bytes",
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
