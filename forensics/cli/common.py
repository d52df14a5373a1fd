"""What every command of the command line shares: the command class that ends a run with its
exit status and turns the library's errors into click's (the one place where an error becomes
an exit status), writing the requested output, and saying warnings on stderr."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

import click

from forensics.api.root import DEFAULT_ROOT
from forensics.errors import Damage, ForensicsError, NotFound, OperationalError, UsageError
from forensics.exitstatus import EXIT_ERRORS, EXIT_OPERATIONAL, EXIT_USAGE

#: each kind of the library's errors, and the exit status it ends a run with (e2fsck's); any
#: other ForensicsError is operational
EXIT_STATUS: tuple[tuple[type[ForensicsError], int], ...] = (
    (UsageError, EXIT_USAGE),
    (Damage, EXIT_ERRORS),
    (OperationalError, EXIT_OPERATIONAL),
)

root_argument = click.argument("root", default=DEFAULT_ROOT, required=False)
containerd_root_option = click.option(
    "--containerd-root",
    metavar="DIR",
    help="The containerd root that goes with ROOT (a system containerd's /var/lib/containerd); "
    "without it, the one dockerd keeps under ROOT, or ROOT itself.",
)
#: with ROOT an archive or disk image: which Docker root in it (``forensics.api.root``)
path_option = click.option(
    "--path",
    "pick",
    metavar="[VOLUME:]/PATH",
    help="With ROOT an archive or disk image holding several Docker roots: the one to read "
    "(e.g. p2:/var/lib/docker, as the message listing them spells it).",
)


def reference_time_option(help_text: str) -> Any:
    """``--now TIME``: ISO 8601 with its zone, or ``now``; given to the command in ns."""

    def parse(ctx: click.Context, param: click.Parameter, now: str | None) -> int | None:
        from forensics.psview import BadTime, reference_time

        if now is None:
            return None
        try:
            return reference_time(now)
        except BadTime as exc:
            raise click.BadParameter(str(exc), ctx, param, param_hint="--now") from None

    return click.option("--now", "reference", metavar="TIME", callback=parse, help=help_text)


def exit_status_of(error: ForensicsError) -> int:
    return next((code for kind, code in EXIT_STATUS if isinstance(error, kind)), EXIT_OPERATIONAL)


def click_error(error: ForensicsError, ctx: click.Context) -> click.ClickException:
    """``error`` as click shows it: a usage error with the command's usage line, any other (a
    name that names nothing included) in one line; either with its exit status."""
    shown: click.ClickException
    if isinstance(error, UsageError) and not isinstance(error, NotFound):
        shown = click.UsageError(str(error), ctx)
    else:
        shown = click.ClickException(str(error))
    shown.exit_code = exit_status_of(error)
    return shown


class Command(click.Command):
    """A command whose body parses, calls the library, renders and returns the exit status.

    The status ends the run whether the command runs under the main command or on its own
    (``thin`` in a test, or through click's ``standalone_mode``); the library's errors become
    click's here (:func:`click_error`)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            status = super().invoke(ctx)
        except ForensicsError as error:
            raise click_error(error, ctx) from None
        except click.UsageError as error:  # the body's own: click gives them 2
            error.exit_code = EXIT_USAGE
            raise
        ctx.exit(status)


class Group(click.Group):
    """A group whose commands are :class:`Command` s."""

    command_class = Command


def printable(text: str) -> str:
    """:func:`forensics.report.printable`, loaded when a message is shown (not at start-up)."""
    from forensics.report import printable as safe_for_a_terminal

    return safe_for_a_terminal(text)


def warn(message: str, command: str | None = None) -> None:
    """``docker-forensics[ COMMAND]: MESSAGE`` on stderr, safe for a terminal."""
    where = f"docker-forensics {command}" if command else "docker-forensics"
    click.echo(printable(f"{where}: {message}"), err=True)


def emit(text: str | bytes) -> None:
    """Write the requested output (text, or bytes as they are). A reader that went away
    (``| head``) does not change the exit status: the rest of the output is dropped."""
    emit_chunks((text,))


#: how much of a long output is gathered before it is written
_EMIT_BATCH = 1 << 16


def emit_chunks(chunks: Iterable[str | bytes]) -> None:
    """Write the requested output as it is made, in batches: a long document is never held
    whole (as text nor as bytes). A reader that went away ends the writing as :func:`emit`."""
    out = sys.stdout.buffer
    batch: list[bytes] = []
    size = 0
    try:
        for chunk in chunks:
            data = chunk if isinstance(chunk, bytes) else chunk.encode("utf-8", "backslashreplace")
            batch.append(data)
            size += len(data)
            if size >= _EMIT_BATCH:
                out.write(b"".join(batch))
                batch, size = [], 0
        out.write(b"".join(batch))
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
