"""``docker-forensics inventory``: the images, containers and volumes of ROOT."""

from __future__ import annotations

import click

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
from forensics.exitstatus import EXIT_OK


@click.command(cls=Command)
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
    "--images",
    "sections",
    flag_value="images",
    multiple=True,
    help="Show the images (docker images); with the others: those sections alone.",
)
@click.option(
    "--containers",
    "sections",
    flag_value="containers",
    multiple=True,
    help="Show the containers (docker ps -a), reading no image config nor layer.",
)
@click.option(
    "--volumes",
    "sections",
    flag_value="volumes",
    multiple=True,
    help="Show the volumes (docker volume ls).",
)
@reference_time_option(
    "Say times as docker would have at TIME (ISO 8601 with zone, or 'now'): "
    "'Exited (3) 2 hours ago'. Without it, times are absolute, in UTC."
)
@click.option("--no-trunc", is_flag=True, help="Full ids and commands in the text tables.")
@containerd_root_option
@path_option
def inventory(
    root: str,
    fmt: str,
    all_images: bool,
    wanted: str | None,
    sections: tuple[str, ...],
    reference: int | None,
    no_trunc: bool,
    containerd_root: str | None,
    pick: str | None,
) -> int:
    """List the images, containers and volumes of ROOT (default /var/lib/docker; or an
    archive or disk image holding it)."""
    from forensics.api import inventory as api  # the library: loaded to run, not for --help
    from forensics.inventory import container_record, container_text, inventory_text
    from forensics.jsonstream import json_chunks
    from forensics.report import to_json

    if wanted is not None and sections:
        raise click.UsageError("--container shows one container: not with a section option")
    shown = frozenset(sections)
    found = api.inventory(
        root,
        container=wanted,
        sections=shown,
        tables=fmt == "text",
        long_lived=True,
        containerd_root=containerd_root,
        pick=pick,
        notify=warn,
    )
    host, container = found.host, found.container
    if container is not None and fmt == "json":
        emit(to_json(container_record(host, container, reference)))
    elif container is not None:
        emit(container_text(host, container, reference))
    elif fmt == "json":
        # the model's values are typed: no float to render
        emit_chunks(json_chunks(found.document(reference, shown), floats=False))
    else:
        text = inventory_text(
            host, now=reference, all_images=all_images, no_trunc=no_trunc, sections=shown
        )
        emit(text)
    return EXIT_OK
