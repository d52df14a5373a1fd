"""``docker-forensics timeline``: every time ROOT records, oldest first."""

from __future__ import annotations

import click

from forensics.api import timeline as api
from forensics.cli.common import Command, containerd_root_option, emit, root_argument
from forensics.exitstatus import EXIT_OK


@click.command(cls=Command)
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
    from forensics.timeline import timeline_csv, timeline_jsonl, timeline_text

    events = api.timeline(root, file_times=not no_file_times, containerd_root=containerd_root)
    render = {"text": timeline_text, "jsonl": timeline_jsonl, "csv": timeline_csv}[fmt]
    emit(render(events))
    return EXIT_OK
