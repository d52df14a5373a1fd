"""``containers/<id>/``: the container configs of every era.

Modern roots keep ``config.v2.json`` (1.10+); legacy roots ``config.json`` (1.8/1.9). Migrated
roots hold both, and the modern one is the one the daemon reads. ``hostconfig.json`` may be
absent (the daemon then uses an empty one) but not damaged.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from forensics.evidence import DirHandle, Evidence, ReadFailure
from forensics.formats.gotypes import Struct, first_type_error
from forensics.formats.ids import is_hex64
from forensics.formats.jsonfile import field
from forensics.model import (
    Container,
    ContainerDetails,
    Host,
    MountPoint,
    Network,
    PortBinding,
    Problem,
)
from forensics.parallel import map_entries
from forensics.progress import track
from forensics.stores.container_types import CONTAINER, HOST_CONFIG
from forensics.stores.reading import as_dict, as_int, as_str, read_json_object
from forensics.stores.runconfig import run_config_of

ZERO_TIME = "0001-01-01T00:00:00Z"


def read_containers(ev: Evidence, host: Host, *, host_configs: bool = True) -> None:
    """Every container of ``containers/``; without ``host_configs`` their ``hostconfig.json``
    is not read (the details it holds are then left empty: a view that prints none)."""
    start_containers(ev, host, host_configs=host_configs)()


def start_containers(ev: Evidence, host: Host, *, host_configs: bool = True) -> Callable[[], None]:
    """Start reading ``containers/`` into ``host`` (handed to the helpers when there are
    many); the function returned finishes it."""
    base = "containers"
    entries = ev.scandir_types(base)
    names = []
    for name in sorted(entries):  # one pass: no set of every name beside the list of them
        if is_hex64(name) and entries[name] == "dir":
            names.append(name)
        else:
            host.add_leftover("containers-stray", f"{base}/{name}")
    del entries

    read = map_entries(ev, partial(_read_container_in, base, host_configs), names)

    def finish() -> None:
        for container in track(read, "containers", total=len(names)):
            host.containers[container.id] = container

    return finish


def _read_container_in(base: str, host_configs: bool, ev: Evidence, name: str) -> Container:
    return read_container(ev, f"{base}/{name}", name, host_configs=host_configs)


def read_container(
    ev: Evidence, rel: str, cid: str, *, legacy_era: bool = False, host_configs: bool = True
) -> Container:
    """The container in ``rel``; ``legacy_era`` reads the 1.8/1.9 ``config.json`` of a root that
    was migrated to 1.10+ (which then holds both configs)."""
    container = Container(id=cid, path=rel, config_file=f"{rel}/config.v2.json")
    try:
        with ev.opendir(rel) as d:
            _read_container_files(d, container, legacy_era, host_configs)
    except ReadFailure as failure:
        container.problems["config"] = Problem(rel, failure.kind, failure.detail)
    return container


def _read_container_files(
    d: DirHandle, container: Container, legacy_era: bool, host_configs: bool = True
) -> None:
    entries = d.types
    container.leftovers = tuple(d.path_of(n) for n in sorted(entries) if n.startswith(".tmp-"))
    legacy = "config.json" in entries and (legacy_era or "config.v2.json" not in entries)
    config_name = "config.json" if legacy else "config.v2.json"
    container.config_file = d.path_of(config_name)
    config = read_json_object(d, config_name, container.problems, "config")
    _share_config_path(container)
    hostconfig = (
        read_json_object(d, "hostconfig.json", container.problems, "hostconfig", optional=True)
        if host_configs
        else None
    )
    if config is not None and not legacy:
        _judge_types(config, CONTAINER, container, "config", container.config_file)
    if hostconfig is not None:
        _judge_types(hostconfig, HOST_CONFIG, container, "hostconfig", d.path_of("hostconfig.json"))
    if config is not None:
        container.config_ok = True
        _fill_from_config(container, config)
        container.details = _details_of(config, hostconfig or {})


def _judge_types(
    document: dict[str, Any], schema: Struct, container: Container, role: str, rel: str
) -> None:
    """Record the first value of ``document`` that Go's decoder refuses for ``schema``: dockerd
    then refuses the whole file and skips the container (its data is still shown)."""
    refused = first_type_error(document, schema)
    if refused is not None:
        detail = f"{refused}: Go's decoder refuses the file, so dockerd skips the container"
        container.problems[role] = Problem(rel, "wrong-type", detail)


def _share_config_path(container: Container) -> None:
    """A problem with the config names the config's path: one string for both, not two (a root
    of a million container directories without a config holds a million such problems)."""
    problem = container.problems.get("config")
    if problem is not None and problem.path == container.config_file:
        container.problems["config"] = Problem(
            container.config_file, problem.damage, problem.detail
        )


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
    container.run_config = run_config_of(field(config, "Config", nullable=True))


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


def _mount_points(value: Any) -> tuple[MountPoint, ...]:
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
                rw=_bool_or_none(field(spec, "RW")),
                mode=as_str(field(spec, "Relabel")) or "",  # omitted when empty, as in Go
                propagation=as_str(field(spec, "Propagation")) or "",
            )
        )
    return tuple(points)


def _bool_or_none(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _details_of(config: dict[str, Any], hostconfig: dict[str, Any]) -> ContainerDetails:
    """What ``docker ps`` and ``docker inspect`` show beyond identity and state."""
    state = as_dict(field(config, "State", nullable=True))
    health = as_dict(field(state, "Health", nullable=True))
    args = field(config, "Args", nullable=True)
    restart = as_dict(field(hostconfig, "RestartPolicy"))
    settings = as_dict(field(config, "NetworkSettings", nullable=True))
    network_mode = as_str(field(hostconfig, "NetworkMode"))
    return ContainerDetails(
        process_path=as_str(field(config, "Path")),
        args=[a for a in args if isinstance(a, str)] if isinstance(args, list) else [],
        oom_killed=field(state, "OOMKilled") is True,
        error=as_str(field(state, "Error")) or None,
        restart_count=as_int(field(config, "RestartCount")),
        health=health_status(health) if field(state, "Health", nullable=True) is not None else None,
        health_failing_streak=as_int(field(health, "FailingStreak")),
        log_path=as_str(field(config, "LogPath")) or None,
        log_driver=as_str(field(field(hostconfig, "LogConfig"), "Type")) or None,
        hostname=as_str(field(field(config, "Config", nullable=True), "Hostname")) or None,
        network_mode=network_mode,
        restart_policy=as_str(field(restart, "Name")) or None,
        restart_retries=as_int(field(restart, "MaximumRetryCount")),
        ports=_port_map(field(settings, "Ports", nullable=True)),
        port_bindings=_port_map(field(hostconfig, "PortBindings", nullable=True)),
        networks=_networks(settings, network_mode),
        image_manifest=as_str(field(field(config, "ImageManifest", nullable=True), "digest")),
    )


def health_status(health: dict[str, Any]) -> str:
    """``State.Health.Status`` as the daemon reports it: an empty status (the monitor not yet
    set up) is ``unhealthy`` (``container/health.go``)."""
    return as_str(field(health, "Status")) or "unhealthy"


def _port_map(value: Any) -> list[PortBinding]:
    """A ``nat.PortMap`` (``"80/tcp": [{"HostIp": …, "HostPort": …}]`` or ``null``): one
    entry per binding, one without a host side for a port bound nowhere, sorted by port."""
    out = []
    for port, bindings in sorted(as_dict(value).items(), key=lambda item: _port_key(item[0])):
        if not isinstance(bindings, list) or not bindings:
            out.append(PortBinding(port))
            continue
        for binding in bindings:
            binding = as_dict(binding)
            ip, host_port = as_str(field(binding, "HostIp")), as_str(field(binding, "HostPort"))
            out.append(PortBinding(port, ip, host_port))
    return out


def _port_key(port: str) -> tuple[int, str]:
    number, _, proto = port.partition("/")
    return (int(number) if number.isdigit() else -1, proto)


def _networks(settings: dict[str, Any], network_mode: str | None) -> list[Network]:
    """Attached networks: ``Networks`` (1.9+), else the flat settings of 1.8 under the mode."""
    networks = field(settings, "Networks", nullable=True)
    if isinstance(networks, dict):
        return [
            Network(
                name,
                _address(field(as_dict(n), "IPAddress")),
                _address(field(as_dict(n), "MacAddress")),
            )
            for name, n in sorted(networks.items())
        ]
    if field(settings, "IPAddress") is not None and network_mode:
        return [
            Network(
                network_mode,
                _address(field(settings, "IPAddress")),
                _address(field(settings, "MacAddress")),
            )
        ]
    return []


def _address(value: Any) -> str | None:
    return as_str(value) or None
