"""Docker's ``container.Config`` read from a decoded JSON object: the ``config`` of an image
config (modern and legacy graph) and the ``Config`` of a container's config.v2.json/config.json.

Values of the wrong JSON type are left out rather than reported: the stores that read these
files judge the files; this only picks what ``docker inspect`` would show.
"""

from __future__ import annotations

from typing import Any

from forensics.formats.jsonfile import field
from forensics.model import RunConfig
from forensics.stores.reading import as_dict, as_str


def run_config_of(value: Any) -> RunConfig | None:
    """The run configuration in ``value``, or None when it is no JSON object."""
    if not isinstance(value, dict):
        return None
    health = field(value, "Healthcheck", nullable=True)
    return RunConfig(
        env=_strings(field(value, "Env", nullable=True)) or [],
        entrypoint=_strslice(field(value, "Entrypoint", nullable=True)),
        cmd=_strslice(field(value, "Cmd", nullable=True)),
        labels=_labels(field(value, "Labels", nullable=True)),
        working_dir=as_str(field(value, "WorkingDir")) or "",  # omitted when empty, as in Go
        user=as_str(field(value, "User")) or "",
        exposed_ports=sorted(as_dict(field(value, "ExposedPorts", nullable=True))),
        healthcheck=_strings(field(health, "Test", nullable=True)),
    )


def _labels(value: Any) -> dict[str, str]:
    return {k: v for k, v in sorted(as_dict(value).items()) if isinstance(v, str)}


def _strings(value: Any) -> list[str] | None:
    """A JSON array of strings (other elements left out), or None."""
    if not isinstance(value, list):
        return None
    return [v for v in value if isinstance(v, str)]


def _strslice(value: Any) -> list[str] | None:
    """Docker's ``StrSlice``: an array of strings, or a single string meaning a one-element
    array (``"Cmd": "sh"``, as old clients and hand-written configs have it)."""
    if isinstance(value, str):
        return [value]
    return _strings(value)
