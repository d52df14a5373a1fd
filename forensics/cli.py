"""The command line: parse arguments, call the library, render, return the exit code.

Exit codes follow e2fsck: 0 clean, 1 repaired, 4 errors found, 8 operational error, 16 usage error,
32 interrupted. Only the requested output goes to stdout; progress and messages go to stderr.
"""

from __future__ import annotations

# isort: off
# first of all, before the imports that take most of the start-up: Ctrl-C from here on exits 32
from forensics.interrupt import python_handles_interrupts

# isort: on
import importlib
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from forensics import __version__, textreport
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
    open_containerd_root,
    open_root,
    read_root,
)
from forensics.evidence import Evidence
from forensics.heap import keep_until_exit
from forensics.inventory import (
    container_record,
    container_text,
    inventory_document,
    inventory_text,
)
from forensics.jsonstream import json_chunks
from forensics.lookup import NoSuchContainer, find_container
from forensics.model import Host
from forensics.nextstep import fixable, repair_command
from forensics.progress import set_enabled
from forensics.psview import BadTime, reference_time
from forensics.report import (
    SEVERITIES,
    Finding,
    at_least,
    count_by_severity,
    findings_jsonl,
    printable,
    to_json,
)
from forensics.stores import read_host
from forensics.terminal import Terminal

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
containerd_root_option = click.option(
    "--containerd-root",
    metavar="DIR",
    help="The containerd root that goes with ROOT (a system containerd's /var/lib/containerd); "
    "without it, the one dockerd keeps under ROOT, or ROOT itself.",
)


def _no_progress(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        set_enabled(False)


NO_PROGRESS_HELP = "Never show progress bars."


def accept_global_options(command: click.Command) -> click.Command:
    """Let ``command`` (and a group's subcommands) take the global options after its name too:
    ``verify --no-progress`` as well as ``--no-progress verify``."""
    names = {name for p in command.params if isinstance(p, click.Option) for name in p.opts}
    if "--no-progress" not in names:
        command.params.append(
            click.Option(
                ["--no-progress"],
                is_flag=True,
                expose_value=False,
                callback=_no_progress,
                help=f"{NO_PROGRESS_HELP} (Also accepted before the command.)",
            )
        )
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            accept_global_options(sub)
    return command


class LazyGroup(click.Group):
    """A group whose heavier subcommands (``repair``, ``thin``: numpy, construct, the pool
    writer) are imported only when they run, so that every other command starts quicker.
    Every subcommand also takes the global options after its name."""

    #: command name -> "module:attribute"
    LAZY = {"repair": "forensics.cli_repair:repair", "thin": "forensics.cli_thin:thin"}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.LAZY])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = self.LAZY.get(cmd_name)
        if target is None:
            found = super().get_command(ctx, cmd_name)
            return None if found is None else accept_global_options(found)
        module, attribute = target.split(":")
        command: click.Command = getattr(importlib.import_module(module), attribute)
        return accept_global_options(command)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="docker-forensics")
@click.option("--no-progress", is_flag=True, help=NO_PROGRESS_HELP)
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
@containerd_root_option
def inventory(
    root: str,
    fmt: str,
    all_images: bool,
    wanted: str | None,
    now: str | None,
    no_trunc: bool,
    containerd_root: str | None,
) -> int:
    """List the images, containers and volumes of ROOT (default /var/lib/docker)."""
    reference = _reference_time(now)
    host = read_root(open_root(root), open_containerd_root(containerd_root))
    keep_until_exit()
    if wanted is not None:
        try:
            cid = find_container(host, wanted)
        except NoSuchContainer as exc:
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
@click.option(
    "--now",
    metavar="TIME",
    help="Judge the containerd store's expiring leases and ingests, and its garbage, at TIME "
    "(ISO 8601 with zone, or 'now') rather than when the store was last written.",
)
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
    now: str | None,
) -> int:
    """Cross-check everything in ROOT and report each problem with its check id and path."""
    reference = _reference_time(now)
    if quiet:
        set_enabled(False)
    started = now_iso()
    if metadata_out is not None:
        if sqlite_out is None:
            raise click.UsageError("--datasette-metadata describes the --sqlite database")
        if metadata_out.absolute() == sqlite_out.absolute():
            raise click.UsageError("--datasette-metadata and --sqlite name the same file")
    ev = open_root(root, record_reads=sqlite_out is not None)
    containerd = open_containerd_root(containerd_root)
    for out in (sqlite_out, metadata_out):
        for evidence in (ev, containerd):
            if out is not None and evidence is not None:
                check_output_path(out, evidence.root, overwrite)
    host = read_root(ev, containerd)
    if reference is not None:
        from forensics.stores.containerd_host import judge_at

        judge_at(host, reference)
    keep_until_exit()
    deep_result = None
    if deep:
        from forensics.deep import verify_deep

        deep_result = verify_deep(ev, host)
    findings = run_checks(host, deep_result.findings if deep_result else ())
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
    shown = at_least(findings, severity)
    if fmt == "json":
        emit_chunks(json_chunks(_verify_document(host, shown, counts, deep_result)))
    elif fmt == "jsonl":
        emit(findings_jsonl(shown))
    elif quiet:
        emit("".join(line + "\n" for line in textreport.plain(shown)))
    else:
        emit(_verify_text(root, ev, host, findings, shown, deep_result))
    return status


def _verify_text(
    root: str,
    ev: Evidence,
    host: Host,
    findings: list[Finding],
    shown: list[Finding],
    deep: DeepResult | None,
) -> str:
    """The report for people: what was checked, the findings shown, what to do next."""
    checked = textreport.Checked.of(host)
    if deep is not None:
        checked.deep_layers = len(deep.layers)
        checked.files_read = sum(r.files_read for r in deep.layers)
        checked.bytes_read = sum(r.bytes_read for r in deep.layers)
    advice = None
    if any(f.severity in ("error", "warning") for f in findings):
        advice = textreport.Advice(repair_command(root), fixable(ev, host, findings))
    return textreport.render(host, findings, shown, checked, advice, Terminal.of_stdout())


def _verify_document(
    host: Host, findings: list[Finding], counts: dict[str, int], deep: DeepResult | None
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "root": host.root,
        "layout": host.layout,
        "driver": host.driver,
        "summary": counts,
        "findings": (f.as_dict() for f in findings),  # written one at a time (jsonstream)
    }
    if host.containerd is not None:  # the root its findings' paths are relative to
        doc["containerd_root"] = host.containerd.location
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
@click.pass_context
def diff_command(ctx: click.Context, container: str, root: str, fmt: str) -> int:
    """What CONTAINER's writable layer added (A), changed (C) and deleted (D), as docker diff."""
    if ctx.get_parameter_source("root") is ParameterSource.DEFAULT and _is_a_path(container):
        raise click.UsageError(
            f"Missing argument 'CONTAINER' ({container} is ROOT: name the container first, "
            "as in: diff CONTAINER ROOT)"
        )
    ev = open_root(root)
    host = read_host(ev)
    try:
        cid = find_container(host, container)
    except NoSuchContainer as exc:
        raise ContainerNotFound(str(exc)) from None
    from forensics.layers import container_diff, diff_plan

    plan = diff_plan(host, cid)
    if isinstance(plan, str):
        raise OperationalError(plan)
    result = container_diff(plan)
    for path, message in result.problems:
        click.echo(printable(f"docker-forensics: {path}: {message}"), err=True)
    if fmt == "json":
        changes = [{"kind": c.kind, "path": c.path} for c in result.changes]
        emit(to_json({"container": cid, "changes": changes, "problems": result.problems}))
    else:
        emit("".join(printable(line) + "\n" for line in result.lines()))
    return EXIT_ERRORS if result.problems else EXIT_OK


class ContainerNotFound(click.ClickException):
    """CONTAINER names no container of ROOT, or several: a usage error, said in one line."""

    exit_code = EXIT_USAGE


def _is_a_path(argument: str) -> bool:
    """A container name never holds a ``/`` but its leading one: an argument that does is a
    path (ROOT given in CONTAINER's place)."""
    return "/" in argument.removeprefix("/") or argument in (".", "..")


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
@containerd_root_option
def timeline(root: str, fmt: str, no_file_times: bool, containerd_root: str | None) -> int:
    """When ROOT's images were built and tagged and its containers created, started, stopped
    and last logged: every time Docker recorded, oldest first, with the file it came from."""
    from forensics.timeline import build_timeline, timeline_csv, timeline_jsonl, timeline_text

    ev = open_root(root)
    host = read_root(ev, open_containerd_root(containerd_root))
    events = build_timeline(ev, host, file_times=not no_file_times)
    render = {"text": timeline_text, "jsonl": timeline_jsonl, "csv": timeline_csv}[fmt]
    emit(render(events))
    return EXIT_OK


@cli.command("docker-cli-plugin-metadata", hidden=True)
def plugin_metadata() -> int:
    """What the Docker CLI asks a plugin before it lists or runs it."""
    emit(json.dumps(PLUGIN_METADATA) + "\n")
    return EXIT_OK


def _plugin_arguments(argv: list[str]) -> tuple[list[str], str]:
    """The arguments and the program's name in usage lines: as a Docker CLI plugin we are
    called with our own name first (``docker forensics …``), and say ``docker forensics``."""
    if argv[:1] == ["forensics"]:
        return argv[1:], "docker forensics"
    return argv, "docker-forensics"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns (and exits with) the e2fsck-style code."""
    try:
        python_handles_interrupts()
        args, prog_name = _plugin_arguments(sys.argv[1:] if argv is None else argv)
        status = cli.main(args=args, prog_name=prog_name, standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc), err=True)
        status = EXIT_USAGE
    except click.UsageError as exc:
        exc.message = printable(exc.message)
        exc.show()
        status = EXIT_USAGE
    except click.ClickException as exc:
        click.echo(f"docker-forensics: {printable(exc.format_message())}", err=True)
        status = exc.exit_code
    except click.exceptions.Exit as exc:
        status = exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("docker-forensics: interrupted", err=True)
        status = EXIT_INTERRUPTED
    except Exception as exc:  # a bug: say so in one line, and show the trace only on request
        if os.environ.get("DOCKER_FORENSICS_DEBUG", "").lower() in ("1", "true", "yes"):
            raise
        click.echo(
            printable(f"docker-forensics: internal error: {type(exc).__name__}: {exc}"), err=True
        )
        click.echo("(set DOCKER_FORENSICS_DEBUG=1 to see the traceback)", err=True)
        status = EXIT_OPERATIONAL
    code = status if isinstance(status, int) else EXIT_OK
    sys.exit(code)


def _run_as_the_program() -> bool:
    """True when this process is docker-forensics itself (its console script, the Docker CLI
    plugin, ``python -m forensics``), not a program that imports the library."""
    return Path(sys.argv[0] if sys.argv else "").name in ("docker-forensics", "__main__.py")


if not _run_as_the_program():
    python_handles_interrupts()  # a library import leaves Ctrl-C as Python has it
