"""``containers/<id>/``: the container configs of every era.

Modern roots keep ``config.v2.json`` (1.10+); legacy roots ``config.json`` (1.8/1.9). Migrated
roots hold both, and the modern one is the one the daemon reads. ``hostconfig.json`` may be
absent (the daemon then uses an empty one) but not damaged.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from forensics.evidence import DirHandle, Evidence, ReadFailure
from forensics.formats.ids import is_hex64
from forensics.formats.jsonfile import field
from forensics.model import Container, Host, MountPoint, Problem
from forensics.parallel import map_entries
from forensics.progress import track
from forensics.stores.reading import as_dict, as_int, as_str, read_json_object

ZERO_TIME = "0001-01-01T00:00:00Z"


def read_containers(ev: Evidence, host: Host) -> None:
    base = "containers"
    entries = ev.scandir_types(base)
    names = [n for n in sorted(entries) if is_hex64(n) and entries[n] == "dir"]
    for name in sorted(set(entries) - set(names)):
        host.add_leftover("containers-stray", f"{base}/{name}")

    read_one = partial(_read_container_in, base)
    for container in track(map_entries(ev, read_one, names), "containers", total=len(names)):
        host.containers[container.id] = container


def _read_container_in(base: str, ev: Evidence, name: str) -> Container:
    return read_container(ev, f"{base}/{name}", name)


def read_container(ev: Evidence, rel: str, cid: str, *, legacy_era: bool = False) -> Container:
    """The container in ``rel``; ``legacy_era`` reads the 1.8/1.9 ``config.json`` of a root that
    was migrated to 1.10+ (which then holds both configs)."""
    container = Container(id=cid, path=rel, config_file=f"{rel}/config.v2.json")
    try:
        with ev.opendir(rel) as d:
            _read_container_files(d, container, legacy_era)
    except ReadFailure as failure:
        container.problems["config"] = Problem(rel, failure.kind, failure.detail)
    return container


def _read_container_files(d: DirHandle, container: Container, legacy_era: bool) -> None:
    entries = d.types
    container.leftovers = [d.path_of(n) for n in sorted(entries) if n.startswith(".tmp-")]
    legacy = "config.json" in entries and (legacy_era or "config.v2.json" not in entries)
    config_name = "config.json" if legacy else "config.v2.json"
    container.config_file = d.path_of(config_name)
    config = read_json_object(d, config_name, container.problems, "config")
    if config is not None:
        container.config_ok = True
        _fill_from_config(container, config)
    read_json_object(d, "hostconfig.json", container.problems, "hostconfig", optional=True)


def _fill_from_config(container: Container, config: dict[str, Any]) -> None:
    container.config_id = as_str(field(config, "ID"))
    name = as_str(field(config, "Name"))
    container.name = name[1:] if name and name.startswith("/") else name
    container.image_id = as_str(field(config, "Image"))
    container.created = as_str(field(config, "Created"))
    container.driver = as_str(field(config, "Driver"))
    run_config = as_dict(field(config, "Config", nullable=True))
    container.image = as_str(field(run_config, "Image"))
    container.command = _command_of(config)
    state = as_dict(field(config, "State", nullable=True))
    container.state = state_of(state) if state else "unknown"
    container.exit_code = as_int(field(state, "ExitCode"))
    container.pid = as_int(field(state, "Pid"))
    container.started = _time_or_none(field(state, "StartedAt"))
    container.finished = _time_or_none(field(state, "FinishedAt"))
    container.mount_points = _mount_points(field(config, "MountPoints", nullable=True))


def state_of(state: dict[str, Any]) -> str:
    """Docker's own state word (``container/state.go StateString``) for a persisted State."""
    if field(state, "Running") is True:
        if field(state, "Paused") is True:
            return "paused"
        if field(state, "Restarting") is True:
            return "restarting"
        return "running"
    if field(state, "RemovalInProgress") is True:
        return "removing"
    if field(state, "Dead") is True:
        return "dead"
    if _time_or_none(field(state, "StartedAt")) is None:
        return "created"
    return "exited"


def _time_or_none(value: Any) -> str | None:
    if not isinstance(value, str) or not value or value.startswith("0001-01-01"):
        return None
    return value


def _command_of(config: dict[str, Any]) -> str | None:
    path = as_str(field(config, "Path"))
    args = field(config, "Args", nullable=True)
    parts = [path] if path else []
    if isinstance(args, list):
        parts += [a for a in args if isinstance(a, str)]
    return " ".join(parts) if parts else None


def _mount_points(value: Any) -> list[MountPoint]:
    points = []
    for dest, spec in sorted(as_dict(value).items()):
        spec = as_dict(spec)
        points.append(
            MountPoint(
                destination=as_str(field(spec, "Destination")) or dest,
                type=as_str(field(spec, "Type")),
                name=as_str(field(spec, "Name")),
                driver=as_str(field(spec, "Driver")),
                source=as_str(field(spec, "Source")),
            )
        )
    return points
