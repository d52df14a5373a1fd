"""The main command: its global options, the verbs (each imported when it runs, so that every
command starts with only what it needs), the Docker CLI plugin's handshake, and :func:`main`,
which maps what ends a run to its exit status."""

from __future__ import annotations

import importlib
import json
import os
import sys

import click

from forensics import __version__
from forensics.cli.common import Command, emit, printable
from forensics.exitstatus import EXIT_INTERRUPTED, EXIT_OK, EXIT_OPERATIONAL, EXIT_USAGE
from forensics.interrupt import python_handles_interrupts
from forensics.progress import set_enabled

PLUGIN_METADATA = {
    "SchemaVersion": "0.1.0",
    "Vendor": "docker-forensics",
    "Version": __version__,
    "ShortDescription": "Examine Docker's storage directory offline",
}
NO_PROGRESS_HELP = "Never show progress bars."


def _no_progress(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        set_enabled(False)


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
    """The main command. Each verb's module (and the library behind it: numpy, construct, the
    pool writer for some) is imported only when that verb runs, so that every command starts
    quicker; the list of verbs in ``--help`` is written from :attr:`SUMMARIES` without
    importing any. Every subcommand also takes the global options after its name."""

    #: command name -> "module:attribute"
    LAZY = {
        "diff": "forensics.cli.diff:diff",
        "inventory": "forensics.cli.inventory:inventory",
        "repair": "forensics.cli.repair:repair",
        "thin": "forensics.cli.thin:thin",
        "timeline": "forensics.cli.timeline:timeline",
        "verify": "forensics.cli.verify:verify",
    }
    #: the first paragraph of each verb's help, which click shortens for the list of verbs
    #: (tests/test_startup.py holds them to the commands' own)
    SUMMARIES = {
        "diff": "What CONTAINER's writable layer added (A), changed (C) and deleted (D), as "
        "docker diff.",
        "inventory": "List the images, containers and volumes of ROOT (default "
        "/var/lib/docker; or an archive or disk image holding it).",
        "repair": "Repair a stopped Docker root (default /var/lib/docker): quarantine what is "
        "broken or orphaned, recreate missing overlay2 links, rewrite a damaged "
        "repositories.json; in a containerd store, quarantine leftover snapshot directories "
        "and stale ingests, and write a salvaged copy of a damaged bolt database beside it "
        "(with --containerd-root, the repair works on that root).",
        "thin": "Read dm-thin pool metadata (devicemapper's metadata file) offline.",
        "timeline": "When ROOT's images were built and tagged and its containers created, "
        "started, stopped and last logged: every time Docker recorded, oldest first, with the "
        "file it came from.",
        "verify": "Cross-check everything in ROOT and report each problem with its check id "
        "and path.",
    }

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

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The list of verbs, each with its summary, as click writes it, from
        :attr:`SUMMARIES` for the verbs not imported."""
        rows = []
        for name in self.list_commands(ctx):
            summary = self.SUMMARIES.get(name)
            command = click.Command(name, help=summary) if summary else self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command))
        if rows:
            limit = formatter.width - 6 - max(len(name) for name, _ in rows)
            with formatter.section("Commands"):
                formatter.write_dl([(name, c.get_short_help_str(limit)) for name, c in rows])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="docker-forensics")
@click.option("--no-progress", is_flag=True, help=NO_PROGRESS_HELP)
def cli(no_progress: bool) -> None:
    """Examine Docker's storage directory offline: what is there, what is broken, and why."""
    set_enabled(not no_progress)


@cli.command("docker-cli-plugin-metadata", cls=Command, hidden=True)
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
        if _caused_by_interrupt(exc):
            click.echo("docker-forensics: interrupted", err=True)
            status = EXIT_INTERRUPTED
        elif os.environ.get("DOCKER_FORENSICS_DEBUG", "").lower() in ("1", "true", "yes"):
            raise
        else:
            message = f"docker-forensics: internal error: {type(exc).__name__}: {exc}"
            click.echo(printable(message), err=True)
            click.echo("(set DOCKER_FORENSICS_DEBUG=1 to see the traceback)", err=True)
            status = EXIT_OPERATIONAL
    code = status if isinstance(status, int) else EXIT_OK
    sys.exit(code)


def _caused_by_interrupt(exc: BaseException) -> bool:
    """True when a ``KeyboardInterrupt`` is behind ``exc``: Python wraps one raised while a
    class is being made (``RuntimeError: Error calling __set_name__ …``, a dataclass defined
    while a module is imported), and Ctrl-C then must still say "interrupted"."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False
