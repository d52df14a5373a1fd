"""What ``docker ps`` prints for a container, worked out offline from what the root records.

docker prints times relative to its clock ("Exited (3) 2 hours ago", "Up 9 seconds"). Evidence
is read long after its host stopped, so here a time is absolute and carries its zone
(``Exited (3) at 2026-11-28 01:14:45 UTC``) unless the examiner gives the reference time: then
the words are docker's own, as docker would have printed them at that moment (``--now``).

Sources: ``container/state.go`` (State.String), go-units ``HumanDuration``, the CLI's
``formatter/container.go`` (Command, RunningFor, DisplayablePorts, Ellipsis), ``daemon/list.go``
(the Command of a listed container).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from forensics.errors import UsageError
from forensics.formats.rfc3339 import utc
from forensics.model import Container, PortBinding

_NS = 1_000_000_000
_ISO = re.compile(r"(\d{4}-\d\d-\d\d)[Tt ](\d\d:\d\d:\d\d)(\.\d+)?([Zz]|[+-]\d\d:?\d\d)")


class BadTime(UsageError, ValueError):
    """A reference time that is not ISO 8601 with a zone."""


def epoch_ns(recorded: str | None) -> int | None:
    """A time as Docker records it, in nanoseconds since the epoch; None for none."""
    text = utc(recorded)
    if text is None:
        return None
    moment = datetime.fromisoformat(text[:19] + "+00:00")
    return int(moment.timestamp()) * _NS + int(text[20:29])


def reference_time(text: str) -> int:
    """``--now``: ``now`` (this machine's clock) or ISO 8601 with its zone, in ns."""
    if text == "now":
        return int(datetime.now(UTC).timestamp() * _NS)
    match = _ISO.fullmatch(text.strip())
    if match is None:
        raise BadTime(f"{text!r}: give the time as ISO 8601 with its zone (2026-11-28T01:15:00Z)")
    date, clock, fraction, zone = match.groups()
    zone = "+00:00" if zone in ("Z", "z") else zone
    try:
        moment = datetime.fromisoformat(f"{date}T{clock}{zone}")
    except ValueError as exc:
        raise BadTime(f"{text!r}: {exc}") from None
    digits = ((fraction or ".")[1:] + "000000000")[:9]
    return int(moment.timestamp()) * _NS + int(digits)


def display_time(recorded: str | None) -> str:
    """``2026-11-28 01:14:45 UTC``: to the second, in UTC, saying so; ``-`` for no time."""
    text = utc(recorded)
    return f"{text[:10]} {text[11:19]} UTC" if text else "-"


def human_duration(ns: int) -> str:
    """go-units ``HumanDuration``: docker's words for how long ago."""
    seconds = ns // _NS if ns >= 0 else -((-ns) // _NS)
    if seconds < 1:
        return "Less than a second"
    if seconds == 1:
        return "1 second"
    if seconds < 60:
        return f"{seconds} seconds"
    minutes = seconds // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(ns / 3600 / _NS + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(ns / 3600 / _NS) // 24 // 365} years"


def _since(recorded: str | None, now: int | None, *, ago: bool) -> str:
    """How long ago ``recorded`` was at ``now`` (docker's words), or when it was."""
    if now is None:
        return display_time(recorded)
    moment = epoch_ns(recorded)
    # Docker's zero time is two thousand years ago: what it would print for a time not recorded
    words = human_duration(now - moment) if moment is not None else human_duration(now + _ZERO)
    return f"{words} ago" if ago else words


#: nanoseconds from 0001-01-01 to the epoch (Go's zero time.Time)
_ZERO = 62_135_596_800 * _NS


def status(c: Container, now: int | None = None) -> str:
    """``docker ps``'s STATUS (``State.String``): with ``now``, docker's words at that time;
    without, the time itself. ``(OOM killed)`` is added where the kernel killed it."""
    health = c.details.health if c.details else None
    code = c.exit_code if c.exit_code is not None else 0
    if c.state in ("running", "paused", "restarting"):
        if c.state == "paused":
            return f"Up {_up(c, now)} (Paused)"
        if c.state == "restarting":
            return f"Restarting ({code}) {_at(c.finished, now)}" + _oom(c)
        if health is not None:
            return f"Up {_up(c, now)} ({'health: starting' if health == 'starting' else health})"
        return f"Up {_up(c, now)}"
    words = {"removing": "Removal In Progress", "dead": "Dead", "created": "Created"}
    if c.state in words:
        return words[c.state]
    if c.state == "unknown" or c.finished is None:
        return ""
    return f"Exited ({code}) {_at(c.finished, now)}" + _oom(c)


def _up(c: Container, now: int | None) -> str:
    return (
        _since(c.started, now, ago=False) if now is not None else f"since {display_time(c.started)}"
    )


def _at(recorded: str | None, now: int | None) -> str:
    return _since(recorded, now, ago=True) if now is not None else f"at {display_time(recorded)}"


def _oom(c: Container) -> str:
    return " (OOM killed)" if c.details is not None and c.details.oom_killed else ""


def created(c: Container, now: int | None = None) -> str:
    """``docker ps``'s CREATED: ``RunningFor`` (from the creation time cut to the second, as
    the API gives it) with ``now``; the time itself without."""
    if now is None:
        return display_time(c.created)
    moment = epoch_ns(c.created)
    if moment is None:
        return "-"
    return f"{human_duration(now - moment // _NS * _NS)} ago"


def ps_command(c: Container) -> str | None:
    """The command as the daemon lists it: Path, then the Args, each holding a space in single
    quotes (``daemon/list.go``); None when the config names no program."""
    if c.details is None or (c.details.process_path is None and not c.details.args):
        return None
    path = c.details.process_path or ""
    if not c.details.args:
        return path
    args = [f"'{a}'" if " " in a else a for a in c.details.args]
    return f"{path} {' '.join(args)}"


def ellipsis(text: str, width: int) -> str:
    """The CLI's ``Ellipsis``: ``text`` cut to ``width`` characters, the last one ``…``."""
    if len(text) <= width:
        return text
    return text[: max(width - 1, 0)] + "…"


def displayable_ports(ports: list[PortBinding]) -> str:
    """``docker ps``'s PORTS (the CLI's ``DisplayablePorts``): ports published on the same host
    port grouped into ranges, ``0.0.0.0:8080->80/tcp``, ``443/tcp``."""
    listed = sorted(_api_ports(ports), key=lambda p: (p[0], p[3], p[1], p[2]))
    groups: dict[str, list[int]] = {}
    result: list[str] = []
    mappings: list[str] = []
    for private, public, proto, ip in listed:
        key = proto
        if ip:
            if public != private:
                host = f"[{ip}]" if ":" in ip else ip
                mappings.append(f"{host}:{public}->{private}/{proto}")
                continue
            key = f"{ip}/{proto}"
        group = groups.get(key)
        if group is None:
            groups[key] = [private, private]
        elif private == group[1] + 1:
            group[1] = private
        else:
            result.append(_form_group(key, *group))
            groups[key] = [private, private]
    result += [_form_group(key, *group) for key, group in groups.items()]
    return ", ".join(result + mappings)


def _api_ports(ports: list[PortBinding]) -> list[tuple[int, int, str, str]]:
    """The API's port list (private, public, type, ip) from a port map, as ``daemon/list.go``
    makes it: a port whose number or host port does not parse is left out."""
    out = []
    for p in ports:
        number, _, proto = p.container_port.partition("/")
        if not number.isdigit() or not 0 <= int(number) <= 65535:
            continue
        host = p.host_port or ""
        if p.host_port is None and p.host_ip is None:
            out.append((int(number), 0, proto or "tcp", ""))
        elif host == "" or (host.isdigit() and int(host) <= 65535):
            out.append((int(number), int(host or 0), proto or "tcp", p.host_ip or ""))
    return out


def _form_group(key: str, first: int, last: int) -> str:
    ip, _, proto = key.rpartition("/")
    group = str(first) if first == last else f"{first}-{last}"
    if ip:
        group = f"{ip}:{group}->{group}"
    return f"{group}/{proto}"
