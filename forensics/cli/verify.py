"""``docker-forensics verify``: every problem of ROOT with its check id and path."""

from __future__ import annotations

from pathlib import Path

import click

from forensics import textreport
from forensics.api import verify as api
from forensics.cli.common import (
    Command,
    containerd_root_option,
    emit,
    emit_chunks,
    path_option,
    reference_time_option,
    root_argument,
    warn,
)
from forensics.jsonstream import json_chunks
from forensics.progress import set_enabled
from forensics.report import SEVERITIES, at_least, findings_jsonl
from forensics.terminal import Terminal


def _sqlite_output(
    sqlite_out: Path | None, metadata_out: Path | None, overwrite: bool
) -> api.SqliteOutput | None:
    if metadata_out is not None:
        if sqlite_out is None:
            raise click.UsageError("--datasette-metadata describes the --sqlite database")
        if metadata_out.absolute() == sqlite_out.absolute():
            raise click.UsageError("--datasette-metadata and --sqlite name the same file")
    if sqlite_out is None:
        return None
    return api.SqliteOutput(sqlite_out, metadata_out, overwrite)


@click.command(cls=Command)
@root_argument
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "jsonl"]),
    default="text",
    show_default=True,
)
@click.option(
    "--sqlite",
    "sqlite_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write inventory, findings and provenance to this new SQLite database.",
)
@click.option(
    "--datasette-metadata",
    "metadata_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --sqlite, also write datasette's metadata for the database to this file.",
)
@click.option("--overwrite", is_flag=True, help="Replace the --sqlite database if it exists.")
@click.option(
    "--deep",
    is_flag=True,
    help="Also rebuild every layer from its tar-split and files: DiffIDs and per-file crc64 "
    "(a containerd store: every blob hashed, each layer's tar held against its snapshot).",
)
@click.option(
    "--severity",
    type=click.Choice(SEVERITIES),
    default="info",
    show_default=True,
    help="Show the findings of this severity and the more severe ones (the summary still "
    "counts them all).",
)
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    help="Text: the findings alone, one line each (no header, summary or advice); no "
    "progress bars.",
)
@containerd_root_option
@reference_time_option(
    "Judge the containerd store's expiring leases and ingests, and its garbage, at TIME "
    "(ISO 8601 with zone, or 'now') rather than when the store was last written."
)
@path_option
def verify(
    root: str,
    fmt: str,
    sqlite_out: Path | None,
    metadata_out: Path | None,
    overwrite: bool,
    deep: bool,
    severity: str,
    quiet: bool,
    containerd_root: str | None,
    reference: int | None,
    pick: str | None,
) -> int:
    """Cross-check everything in ROOT and report each problem with its check id and path."""
    if quiet:
        set_enabled(False)
    sqlite = _sqlite_output(sqlite_out, metadata_out, overwrite)
    report = fmt == "text" and not quiet
    result = api.verify(
        root,
        deep=deep,
        sqlite=sqlite,
        advise=report,
        long_lived=True,
        containerd_root=containerd_root,
        now=reference,
        pick=pick,
        notify=warn,
    )
    shown = at_least(result.findings, severity)
    if fmt == "json":
        emit_chunks(json_chunks(result.document(shown)))
    elif fmt == "jsonl":
        emit(findings_jsonl(shown))
    elif quiet:
        emit("".join(line + "\n" for line in textreport.plain(shown)))
    else:
        emit(textreport.verify_report(result, shown, root, Terminal.of_stdout()))
    return result.status
