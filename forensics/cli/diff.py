"""``docker-forensics diff``: what a container changed, as ``docker diff`` prints it."""

from __future__ import annotations

import os
import re

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

#: containerd's ``<namespace>/<id>`` (its namespace and identifier rules)
_NAMESPACED = re.compile(r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*/[A-Za-z0-9][A-Za-z0-9_.-]*")


def _is_a_path(argument: str) -> bool:
    """A container name never holds a ``/`` but its leading one: an argument that does is a
    path (ROOT given in CONTAINER's place) — unless it names containerd's container as
    ``<namespace>/<id>`` and no such path exists."""
    if argument in (".", ".."):
        return True
    if "/" not in argument.removeprefix("/"):
        return False
    return os.path.lexists(argument) or not _NAMESPACED.fullmatch(argument)


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
    if ctx.get_parameter_source("root") is ParameterSource.DEFAULT and _is_a_path(container):
        raise click.UsageError(
            f"Missing argument 'CONTAINER' ({container} is ROOT: name the container first, "
            "as in: diff CONTAINER ROOT)"
        )
    result = api.diff(root, container, containerd_root, pick=pick, notify=warn)
    for path, message in result.problems:
        warn(f"{path}: {message}")
    if fmt == "json":
        changes = [{"kind": c.kind, "path": c.path} for c in result.changes]
        doc = {"container": result.container_id, "changes": changes, "problems": result.problems}
        if result.evidence is not None:
            doc["evidence"] = result.evidence
        emit(to_json(doc))
    else:
        emit("".join(printable(line) + "\n" for line in result.lines()))
    return api.diff_status(result)
