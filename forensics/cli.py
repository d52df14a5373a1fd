"""The command line: parse arguments, call the library, render, return the exit code.

Exit codes follow e2fsck: 0 clean, 1 repaired, 4 errors found, 8 operational error, 16 usage error,
32 interrupted. Only the requested output goes to stdout; progress and messages go to stderr.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from forensics import __version__
from forensics.checks import run_checks
from forensics.cliutil import (
    DEFAULT_ROOT,
    EXIT_ERRORS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_OPERATIONAL,
    EXIT_USAGE,
    OperationalError,
    check_output_path,
    emit,
    emit_chunks,
    now_iso,
    open_root,
)
from forensics.heap import keep_until_exit
from forensics.inventory import (
    container_record,
    container_text,
    inventory_document,
    inventory_text,
)
from forensics.jsonstream import json_chunks
from forensics.lookup import ContainerNotFound, resolve_container
from forensics.model import Host
from forensics.progress import set_enabled
from forensics.psview import BadTime, reference_time
from forensics.report import (
    Finding,
    count_by_severity,
    findings_jsonl,
    findings_text,
    printable,
    sort_findings,
    to_json,
)
from forensics.stores import read_host

if TYPE_CHECKING:  # the layer checks load construct: imported only where they are used
    from forensics.deep import DeepResult
    from forensics.layers import LayerReport

PLUGIN_METADATA = {
    "SchemaVersion": "0.1.0",
    "Vendor": "docker-forensics",
    "Version": __version__,
    "ShortDescription": "Examine Docker's storage directory offline",
}


root_argument = click.argument("root", default=DEFAULT_ROOT, required=False)


class LazyGroup(click.Group):
    """A group whose heavier subcommands (``repair``, ``thin``: numpy, construct, the pool
    writer) are imported only when they run, so that every other command starts quicker."""

    #: command name -> "module:attribute"
    LAZY = {"repair": "forensics.cli_repair:repair", "thin": "forensics.cli_thin:thin"}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.LAZY])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = self.LAZY.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module, attribute = target.split(":")
        command: click.Command = getattr(importlib.import_module(module), attribute)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="docker-forensics")
@click.option("--no-progress", is_flag=True, help="Never show progress bars.")
def cli(no_progress: bool) -> None:
    """Examine Docker's storage directory offline: what is there, what is broken, and why."""
    set_enabled(not no_progress)


@cli.command()
@root_argument
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option(
    "-a", "--all", "all_images", is_flag=True, help="Also list the intermediate images (text)."
)
@click.option(
    "--container",
    "wanted",
    metavar="ID|NAME",
    help="Show one container whole: a full id, its name, or a unique id prefix (as docker).",
)
@click.option(
    "--now",
    metavar="TIME",
    help="Say times as docker would have at TIME (ISO 8601 with zone, or 'now'): "
    "'Exited (3) 2 hours ago'. Without it, times are absolute, in UTC.",
)
@click.option("--no-trunc", is_flag=True, help="Full ids and commands in the text tables.")
def inventory(
    root: str, fmt: str, all_images: bool, wanted: str | None, now: str | None, no_trunc: bool
) -> int:
    """List the images, containers and volumes of ROOT (default /var/lib/docker)."""
    reference = _reference_time(now)
    host = read_host(open_root(root))
    keep_until_exit()
    if wanted is not None:
        try:
            cid = resolve_container(host, wanted)
        except ContainerNotFound as exc:
            raise click.UsageError(str(exc)) from None
        container = host.containers[cid]
        if fmt == "json":
            emit(to_json(container_record(host, container, reference)))
        else:
            emit(container_text(host, container, reference))
    elif fmt == "json":
        emit_chunks(json_chunks(inventory_document(host, reference)))
    else:
        emit(inventory_text(host, now=reference, all_images=all_images, no_trunc=no_trunc))
    return EXIT_OK


def _reference_time(now: str | None) -> int | None:
    if now is None:
        return None
    try:
        return reference_time(now)
    except BadTime as exc:
        raise click.BadParameter(str(exc), param_hint="--now") from None


@cli.command()
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
    help="Also rebuild every layer from its tar-split and files: DiffIDs and per-file crc64.",
)
def verify(
    root: str,
    fmt: str,
    sqlite_out: Path | None,
    metadata_out: Path | None,
    overwrite: bool,
    deep: bool,
) -> int:
    """Cross-check everything in ROOT and report each problem with its check id and path."""
    started = now_iso()
    if metadata_out is not None:
        if sqlite_out is None:
            raise click.UsageError("--datasette-metadata describes the --sqlite database")
        if metadata_out.absolute() == sqlite_out.absolute():
            raise click.UsageError("--datasette-metadata and --sqlite name the same file")
    ev = open_root(root, record_reads=sqlite_out is not None)
    for out in (sqlite_out, metadata_out):
        if out is not None:
            check_output_path(out, ev.root, overwrite)
    host = read_host(ev)
    keep_until_exit()
    findings = run_checks(host)
    deep_result = None
    if deep:
        from forensics.deep import verify_deep

        deep_result = verify_deep(ev, host)
        findings = sort_findings([*findings, *deep_result.findings])
    counts = count_by_severity(findings)
    status = EXIT_ERRORS if counts["error"] else EXIT_OK
    if sqlite_out is not None:
        from forensics.export import RunInfo, export_sqlite, write_datasette_metadata  # slow
        from forensics.timeline import build_timeline

        events = build_timeline(ev, host)  # before the run's files are collected: it reads too
        run = RunInfo.collect("verify", ev, started, status)
        try:
            export_sqlite(
                sqlite_out, host, findings, run, deep_result, timeline=events, overwrite=overwrite
            )
        except OSError as exc:
            raise OperationalError(f"{sqlite_out}: {exc.strerror or exc}") from None
        if metadata_out is not None:
            try:
                write_datasette_metadata(metadata_out, sqlite_out, overwrite=overwrite)
            except OSError as exc:
                raise OperationalError(f"{metadata_out}: {exc.strerror or exc}") from None
    if fmt == "json":
        emit(to_json(_verify_document(host, findings, counts, deep_result)))
    elif fmt == "jsonl":
        emit(findings_jsonl(findings))
    else:
        emit(findings_text(findings))
    return status


def _verify_document(
    host: Host, findings: list[Finding], counts: dict[str, int], deep: DeepResult | None
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "root": host.root,
        "layout": host.layout,
        "driver": host.driver,
        "summary": counts,
        "findings": [f.as_dict() for f in findings],
    }
    if deep is not None:
        doc["layers"] = [r.to_dict(files=False) for r in sorted(deep.layers, key=_layer_key)]
        doc["diffs"] = {d.container_id: d.lines() for d in deep.diffs}
    return doc


def _layer_key(report: LayerReport) -> str:
    return report.layer_id


@cli.command("diff")
@click.argument("container")
@root_argument
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def diff_command(container: str, root: str, fmt: str) -> int:
    """What CONTAINER's writable layer added (A), changed (C) and deleted (D), as docker diff."""
    ev = open_root(root)
    host = read_host(ev)
    cid = _resolve_container(host, container)
    from forensics.layers import container_diff, diff_plan

    plan = diff_plan(host, cid)
    if isinstance(plan, str):
        raise OperationalError(plan)
    result = container_diff(plan)
    for path, message in result.problems:
        click.echo(f"docker-forensics: {path}: {message}", err=True)
    if fmt == "json":
        changes = [{"kind": c.kind, "path": c.path} for c in result.changes]
        emit(to_json({"container": cid, "changes": changes, "problems": result.problems}))
    else:
        emit("".join(printable(line) + "\n" for line in result.lines()))
    return EXIT_ERRORS if result.problems else EXIT_OK


@cli.command()
@root_argument
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "jsonl", "csv"]),
    default="text",
    show_default=True,
    help="jsonl and csv carry Timesketch's message, datetime and timestamp_desc.",
)
@click.option(
    "--no-file-times",
    is_flag=True,
    help="Only the times Docker recorded, no modification times of its files.",
)
def timeline(root: str, fmt: str, no_file_times: bool) -> int:
    """When ROOT's images were built and tagged and its containers created, started, stopped
    and last logged: every time Docker recorded, oldest first, with the file it came from."""
    from forensics.timeline import build_timeline, timeline_csv, timeline_jsonl, timeline_text

    ev = open_root(root)
    events = build_timeline(ev, read_host(ev), file_times=not no_file_times)
    render = {"text": timeline_text, "jsonl": timeline_jsonl, "csv": timeline_csv}[fmt]
    emit(render(events))
    return EXIT_OK


def _resolve_container(host: Host, wanted: str) -> str:
    """A full id, a unique id prefix, or a name (with or without its leading slash)."""
    if wanted in host.containers:
        return wanted
    name = wanted.removeprefix("/")
    by_name = [c.id for c in host.containers.values() if c.name == name]
    by_prefix = (
        [cid for cid in host.containers if cid.startswith(wanted)] if len(wanted) >= 4 else []
    )
    matches = by_name or by_prefix
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise click.UsageError(f"no such container: {wanted}")
    raise click.UsageError(f"{wanted} names {len(matches)} containers: give more of the id")


@cli.command("docker-cli-plugin-metadata", hidden=True)
def plugin_metadata() -> int:
    """What the Docker CLI asks a plugin before it lists or runs it."""
    emit(json.dumps(PLUGIN_METADATA) + "\n")
    return EXIT_OK


def _plugin_arguments(argv: list[str]) -> list[str]:
    """As a Docker CLI plugin (``docker forensics …``) we are called with our own name first."""
    return argv[1:] if argv[:1] == ["forensics"] else argv


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns (and exits with) the e2fsck-style code."""
    args = _plugin_arguments(sys.argv[1:] if argv is None else argv)
    try:
        status = cli.main(args=args, prog_name="docker-forensics", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc), err=True)
        status = EXIT_USAGE
    except click.UsageError as exc:
        exc.show()
        status = EXIT_USAGE
    except click.ClickException as exc:
        click.echo(f"docker-forensics: {exc.format_message()}", err=True)
        status = exc.exit_code
    except click.exceptions.Exit as exc:
        status = exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("docker-forensics: interrupted", err=True)
        status = EXIT_INTERRUPTED
    except Exception as exc:  # a bug: say so in one line, and show the trace only on request
        if os.environ.get("DOCKER_FORENSICS_DEBUG", "").lower() in ("1", "true", "yes"):
            raise
        click.echo(f"docker-forensics: internal error: {type(exc).__name__}: {exc}", err=True)
        click.echo("(set DOCKER_FORENSICS_DEBUG=1 to see the traceback)", err=True)
        status = EXIT_OPERATIONAL
    code = status if isinstance(status, int) else EXIT_OK
    sys.exit(code)
