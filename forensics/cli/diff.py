"""``docker-forensics diff``: what a container changed, as ``docker diff`` prints it."""

from __future__ import annotations

import click
from click.core import ParameterSource

from forensics.api import diff as api
from forensics.cli.common import (
    Command,
    containerd_root_option,
    emit,
    path_option,
    root_argument,
    warn,
)
from forensics.report import printable, to_json


@click.command(cls=Command)
@click.argument("container")
@root_argument
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@containerd_root_option
@path_option
@click.pass_context
def diff(
    ctx: click.Context,
    container: str,
    root: str,
    fmt: str,
    containerd_root: str | None,
    pick: str | None,
) -> int:
    """What CONTAINER's writable layer added (A), changed (C) and deleted (D), as docker diff."""
    if ctx.get_parameter_source("root") is ParameterSource.DEFAULT and api.names_a_path(container):
        raise click.UsageError(
            f"Missing argument 'CONTAINER' ({container} is ROOT: name the container first, "
            "as in: diff CONTAINER ROOT)"
        )
    result = api.diff(root, container, containerd_root, pick=pick, notify=warn)
    for path, message in result.problems:
        warn(f"{path}: {message}")
    if fmt == "json":
        emit(to_json(api.diff_document(result)))
    else:
        emit("".join(printable(line) + "\n" for line in result.lines()))
    return api.diff_status(result)
