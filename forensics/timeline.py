"""A timeline of a Docker root: the times it records, each with the file it was read from.

Images: when each was built (its config's ``created``), every build step of its history (with
the command that made it), when it was last tagged or pulled (imagedb ``lastUpdated``), and for
the 1.8/1.9 store when each graph image was made. Containers: created, started, finished (with
the exit code), the first and last line of a ``json-file`` log. With ``file_times``, also the
modification times that Docker leaves on its own records: each layerdb entry, each container's
``config.v2.json`` and each volume's directory (when they were last written); and the inode
times of the files each container changed (what ``diff`` lists as added or changed) where the
container's files are a filesystem image whose times are the evidence's own: the thin devices
of devicemapper (mtime, ctime, and crtime where the filesystem keeps it). A directory of ROOT
may be a copy whose ctimes are the copy's: its files are not told.

Every time is converted to UTC and written with nine digits of fraction, as precise as Docker
wrote it (``2026-11-28T01:14:45.123456789Z``); Docker's zero time (never started) is no
event. Events are sorted by time, then kind, then message: the same root gives the same
timeline. The JSONL and CSV forms carry Timesketch's ``message``, ``datetime`` and
``timestamp_desc`` (and ``timestamp`` in microseconds).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, NamedTuple

from forensics.drivers import layout_of
from forensics.evidence import Evidence, ReadFailure
from forensics.formats.ids import short
from forensics.formats.jsonfile import JsonDamage, decode_json, field
from forensics.formats.rfc3339 import utc
from forensics.model import Container, Host, Image
from forensics.report import json_safe, printable

__all__ = ["Event", "build_timeline", "timeline_csv", "timeline_jsonl", "timeline_text", "utc"]

#: RFC 3339 as Go writes it: seconds, an optional fraction, Z or an offset
#: how much of a log's start and end is read for its first and last line
_LOG_WINDOW = 64 * 1024
_MESSAGE_TEXT = 160


class Event(NamedTuple):
    """One time, ordered (as a tuple) by time, then kind, then message."""

    datetime: str  # ISO 8601, UTC, nanoseconds: 2026-11-28T01:14:45.123456789Z
    timestamp_desc: str  # what happened then: "Container created", "Image built", …
    message: str
    object_type: str  # image, container, layer, volume
    object_id: str
    path: str  # the file the time was read from, relative to ROOT

    @property
    def timestamp(self) -> int:
        """Microseconds since the epoch (Timesketch's ``timestamp``)."""
        seconds = datetime.fromisoformat(self.datetime[:19] + "+00:00").timestamp()
        return int(seconds) * 1_000_000 + int(self.datetime[20:26])

    def as_dict(self) -> dict[str, Any]:
        return {**self._asdict(), "timestamp": self.timestamp}


def build_timeline(ev: Evidence, host: Host, *, file_times: bool = True) -> list[Event]:
    """Every event of ``host`` (and of the 1.8/1.9 store a migrated root keeps), sorted."""
    events: set[Event] = set()
    for store in (host, host.legacy):
        if store is None:
            continue
        events.update(_image_events(ev, store))
        events.update(_container_events(ev, store))
        if file_times:
            events.update(_file_time_events(ev, store))
            events.update(_changed_file_events(ev, store))
    if host.containerd is not None:
        from forensics.timeline_containerd import containerd_events

        events.update(containerd_events(host))
    return sorted(events)


# -- images -----------------------------------------------------------------------------------


def _image_events(ev: Evidence, host: Host) -> Iterator[Event]:
    legacy = host.image_store == "graph"
    histories: list[list[Event]] = []
    for image in sorted(host.images.values(), key=lambda i: i.id):
        names = ", ".join(sorted(image.tags)) or "untagged"
        label = f"image {short(image.id)} ({names})"
        when = utc(image.created)
        if when is not None:
            desc = "Legacy image created" if legacy else "Image created"
            yield Event(when, desc, label, "image", image.id, image.path)
        when = utc(image.last_updated)
        if when is not None:
            meta = f"{host.image_store}/imagedb/metadata/{image.id.replace(':', '/')}/lastUpdated"
            yield Event(when, "Image last tagged", label, "image", image.id, meta)
        histories.append(list(_history_steps(ev, image, legacy)))
    yield from _distinct_steps(histories)


def _distinct_steps(histories: list[list[Event]]) -> Iterator[Event]:
    """Each build step once: a child image repeats its parents' history, so a step is told
    as the image with the shortest history records it (the one it made)."""
    seen: set[tuple[str, str]] = set()
    for steps in sorted(histories, key=len):
        for step in steps:
            if (step.datetime, step.message) not in seen:
                seen.add((step.datetime, step.message))
                yield step


def _history_steps(ev: Evidence, image: Image, legacy: bool) -> Iterator[Event]:
    """The build steps an image config records (``history``; for a graph image, the command
    that made it). The config is read again: the store keeps no history."""
    if not image.config_ok:
        return
    try:
        config = decode_json(ev.read_bytes(image.path), one_value=legacy)
    except (ReadFailure, JsonDamage):
        return
    if not isinstance(config, dict):
        return
    if legacy:
        cmd = field(field(config, "container_config", nullable=True), "Cmd", nullable=True)
        when = utc(field(config, "created"))
        if when is not None and isinstance(cmd, list) and cmd:
            text = " ".join(str(part) for part in cmd)
            yield Event(when, "Image build step", text, "image", image.id, image.path)
        return
    history = field(config, "history", nullable=True)
    for step in history if isinstance(history, list) else ():
        if not isinstance(step, dict):
            continue
        when = utc(field(step, "created"))
        command = field(step, "created_by") or field(step, "comment")
        if when is not None and isinstance(command, str):
            text = command + (" (no layer)" if field(step, "empty_layer") else "")
            yield Event(when, "Image build step", text, "image", image.id, image.path)


# -- containers -------------------------------------------------------------------------------


def _container_events(ev: Evidence, host: Host) -> Iterator[Event]:
    for c in sorted(host.containers.values(), key=lambda c: c.id):
        label = f"container {c.name or '?'} ({short(c.id)})"
        source = c.config_file or c.path
        image = c.image or (short(c.image_id) if c.image_id else "?")
        when = utc(c.created)
        if when is not None:
            yield Event(
                when,
                "Container created",
                f"{label} from {image}: {c.command or ''}",
                "container",
                c.id,
                source,
            )
        when = utc(c.started)
        if when is not None:
            yield Event(when, "Container started", label, "container", c.id, source)
        when = utc(c.finished)
        if when is not None:
            code = "" if c.exit_code is None else f", exit code {c.exit_code}"
            yield Event(when, "Container finished", label + code, "container", c.id, source)
        yield from _log_events(ev, c, label)


def _log_events(ev: Evidence, c: Container, label: str) -> Iterator[Event]:
    """The first and the last line of the container's json-file log, read from its two ends."""
    rel = f"{c.path}/{c.id}-json.log"
    try:
        head, tail = ev.read_ends(rel, _LOG_WINDOW)
    except ReadFailure:
        return
    first = _log_line(head, first=True)
    last = _log_line(tail, first=False)
    for line, desc in ((first, "Container log first line"), (last, "Container log last line")):
        if line is not None:
            when, text = line
            yield Event(when, desc, f"{label}: {text}", "container", c.id, rel)


def _log_line(data: bytes, *, first: bool) -> tuple[str, str] | None:
    """The time and text of the first (or last) whole line of a json-file log window."""
    lines = data.split(b"\n")
    candidates = lines if first else reversed(lines)
    for raw in candidates:
        try:
            record = json.loads(raw)
        except (ValueError, RecursionError):
            continue
        if not isinstance(record, dict):
            continue
        when = utc(record.get("time"))
        if when is None:
            continue
        text = record.get("log")
        stream = record.get("stream")
        shown = text.rstrip("\n") if isinstance(text, str) else ""
        return when, f"{stream}: {shown}" if isinstance(stream, str) else shown
    return None


# -- file times -------------------------------------------------------------------------------


def _file_time_events(ev: Evidence, host: Host) -> Iterator[Event]:
    """Modification times of Docker's own records, each written once when its object was made
    (a later change to the object rewrites them)."""
    # a graph image's json records its own creation: the better record than any mtime
    layers = [] if host.image_store == "graph" else host.layers.values()
    for layer in sorted(layers, key=lambda layer: layer.id):
        when = _mtime(ev, f"{layer.path}/diff")
        if when is not None:
            label = f"layer {short(layer.id)} (DiffID {short(layer.diff_id or '?')})"
            yield Event(
                when, "Layer registered (mtime)", label, "layer", layer.id, f"{layer.path}/diff"
            )
    for c in sorted(host.containers.values(), key=lambda c: c.id):
        if c.config_file is None:
            continue
        when = _mtime(ev, c.config_file)
        if when is not None:
            label = f"container {c.name or '?'} ({short(c.id)})"
            yield Event(
                when,
                "Container config last written (mtime)",
                label,
                "container",
                c.id,
                c.config_file,
            )
    for volume in sorted(host.volumes.values(), key=lambda v: v.name):
        when = _mtime(ev, volume.path)
        if when is not None:
            yield Event(
                when,
                "Volume directory changed (mtime)",
                f"volume {volume.name}",
                "volume",
                volume.name,
                volume.path,
            )


def _mtime(ev: Evidence, rel: str) -> str | None:
    st = ev.lstat(rel)
    if st is None:
        return None
    return _iso_ns(st.st_mtime_ns)


def _iso_ns(ns: int) -> str | None:
    """Nanoseconds since the epoch as the events write a time; None for what UTC cannot hold."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    try:
        moment = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, ValueError, OSError):
        return None
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


#: the inode times told of a file a container changed: (StatLike field, what happened then)
_INODE_TIMES = (
    ("st_mtime_ns", "Container file modified (mtime)"),
    ("st_ctime_ns", "Container file changed (ctime)"),
    ("st_birthtime_ns", "Container file created (crtime)"),
)


def _changed_file_events(ev: Evidence, host: Host) -> Iterator[Event]:
    """The inode times of what each container added or changed (its ``diff``), when its
    files are in thin devices (their times are the filesystem's own, not a copy's)."""
    layout = layout_of(host.driver)
    if layout is None or layout.thin is None:
        return
    from forensics.layers import container_diff, diff_plan
    from forensics.layers.devices import close_pools

    try:
        for c in sorted(host.containers.values(), key=lambda c: c.id):
            plan = diff_plan(host, c.id)
            if isinstance(plan, str) or not plan.devices:
                continue  # ``diff`` says why
            result = container_diff(plan, ev, keep_stats=True)
            label = f"container {c.name or '?'} ({short(c.id)})"
            for change in result.changes:
                if change.path in result.stats:
                    st, where = result.stats[change.path]
                    yield from _inode_events(st, f"{label}: {change.line()}", c.id, where)
    finally:
        close_pools(ev)


def _inode_events(st: object, message: str, cid: str, where: str) -> Iterator[Event]:
    for name, desc in _INODE_TIMES:
        ns = getattr(st, name, None)
        when = _iso_ns(ns) if isinstance(ns, int) else None
        if when is not None:
            yield Event(when, desc, message, "container", cid, where)


# -- output -----------------------------------------------------------------------------------


def _clip(text: str) -> str:
    """A message as the text form shows it: one line, and not too long (JSONL and CSV keep
    the whole of it)."""
    text = printable(text)
    return text if len(text) <= _MESSAGE_TEXT else text[: _MESSAGE_TEXT - 1] + "…"


_COLUMNS = (
    "datetime",
    "timestamp",
    "timestamp_desc",
    "message",
    "object_type",
    "object_id",
    "path",
)


def timeline_jsonl(events: list[Event]) -> str:
    return "".join(
        json_safe(json.dumps(e.as_dict(), sort_keys=True, ensure_ascii=False)) + "\n"
        for e in events
    )


def timeline_csv(events: list[Event]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(e.as_dict() for e in events)
    return out.getvalue()


def timeline_text(events: list[Event]) -> str:
    width = max((len(e.timestamp_desc) for e in events), default=0)
    lines = [f"{e.datetime:<30}  {e.timestamp_desc:<{width}}  {_clip(e.message)}" for e in events]
    lines.append(f"{len(events)} events")
    return "\n".join(lines) + "\n"
