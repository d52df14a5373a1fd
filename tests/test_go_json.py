"""Docker's JSON judged as dockerd's Go decoder judges it, on copies of the real-daemon sample:
a config that Go reads is no damage (and ``repair`` leaves it alone), one that Go refuses is.

The rules themselves are tested one by one in ``test_formats.py``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from sample_paths import SamplePaths


def _config(root: Path, truth: dict[str, Any], name: str) -> tuple[str, Path]:
    cid = SamplePaths(root, truth).container_id(name)
    return cid, root / "containers" / cid / "config.v2.json"


def _verify(cli, root: Path) -> list[dict[str, Any]]:
    result = cli("verify", root, "--format", "json")
    assert result.code in (0, 4), result.stderr
    return result.json()["findings"]


def _plan(cli, root: Path) -> list[dict[str, Any]]:
    result = cli("repair", root, "--dry-run", "--format", "json")
    assert result.code in (0, 4), result.stderr
    return result.json()["actions"]


def _about(items: list[dict[str, Any]], cid: str) -> list[dict[str, Any]]:
    return [i for i in items if cid in i["path"]]


def test_nan_in_a_config_is_damage(cli, sample_root: Path, truth: dict[str, Any]) -> None:
    """Go refuses NaN (dockerd skips the container); Python's decoder read it as a float."""
    cid, path = _config(sample_root, truth, "exited")
    data, count = re.subn(rb'"ExitCode":\d+', b'"ExitCode":NaN', path.read_bytes())
    assert count == 1
    path.write_bytes(data)
    errors = [f for f in _about(_verify(cli, sample_root), cid) if f["severity"] == "error"]
    assert [f["check"] for f in errors] == ["container.config-damaged"], errors
    assert "NaN" in errors[0]["message"]
    assert _about(_plan(cli, sample_root), cid), "an unreadable config is quarantined"


@pytest.mark.parametrize("spelling", ["lower", "folded"])
def test_keys_in_another_case_are_read(
    cli, sample_root: Path, truth: dict[str, Any], spelling: str
) -> None:
    """Go matches keys to struct fields case-insensitively: ``"id"``, ``"driver"`` (or with the
    long s U+017F, which folds to ``s``) load the container, so nothing is wrong."""
    cid, path = _config(sample_root, truth, "exited")
    doc = json.loads(path.read_bytes())
    before = _verify(cli, sample_root)
    renamed = {"ID": "id", "Driver": "driver", "State": "state", "Name": "name"}
    if spelling == "kelvin":
        doc["Config"] = {
            ("\u212a" + k[1:] if k == "Kind" else k): v for k, v in doc["Config"].items()
        }
    text = json.dumps({renamed.get(k, k): v for k, v in doc.items()}, separators=(",", ":"))
    path.write_text(text)
    assert _about(_verify(cli, sample_root), cid) == _about(before, cid)
    assert not _about(_plan(cli, sample_root), cid)
    inventory = cli("inventory", sample_root, "--format", "json").json()
    (container,) = [c for c in inventory["containers"] if c["id"] == cid]
    assert container["name"] == "exited" and container["state"] == "exited"


def test_invalid_utf8_in_a_string_is_read(cli, sample_root: Path, truth: dict[str, Any]) -> None:
    """Go replaces bytes that are not UTF-8 inside a string with U+FFFD and loads the
    container: no damaged config, and repair plans nothing for it."""
    cid, path = _config(sample_root, truth, "exited")
    data = path.read_bytes()
    before = _verify(cli, sample_root)
    start = data.index(b'"Hostname":"') + len(b'"Hostname":"')
    path.write_bytes(data[:start] + b"\xff\xfe" + data[start:])
    assert _about(_verify(cli, sample_root), cid) == _about(before, cid)
    assert not _about(_plan(cli, sample_root), cid)


def test_trailing_bytes_after_a_config_are_read(
    cli, sample_root: Path, truth: dict[str, Any]
) -> None:
    """dockerd reads config.v2.json with a json.Decoder, which stops after the object: bytes
    after it (a NUL tail of a file that grew) do not stop the container loading."""
    cid, path = _config(sample_root, truth, "exited")
    before = _verify(cli, sample_root)
    path.write_bytes(path.read_bytes() + b"\x00" * 300)
    assert _about(_verify(cli, sample_root), cid) == _about(before, cid)


def test_trailing_bytes_after_an_image_config_are_damage(
    cli, sample_root: Path, truth: dict[str, Any]
) -> None:
    """Image configs go through json.Unmarshal, which refuses anything after the value (their
    sha256 no longer matches either: both are reported)."""
    paths = SamplePaths(sample_root, truth)
    rel = paths.image_config("sample/app:1.0")
    paths.path(rel).write_bytes(paths.path(rel).read_bytes() + b" x")
    checks = {f["check"] for f in _verify(cli, sample_root) if f["path"] == rel}
    assert "image.config-damaged" in checks, checks


def _rewrite(path: Path, change) -> None:
    doc = json.loads(path.read_bytes())
    change(doc)
    path.write_text(json.dumps(doc, separators=(",", ":")))


@pytest.mark.parametrize(
    ("file", "change", "where"),
    [
        ("config.v2.json", lambda d: d.update(RestartCount="3"), "RestartCount"),
        ("config.v2.json", lambda d: d["State"].update(Pid=1.5), "State.Pid"),
        ("config.v2.json", lambda d: d["Config"].update(Env="A=1"), "Config.Env"),
        ("config.v2.json", lambda d: d.update(Created="yesterday"), "Created"),
        ("hostconfig.json", lambda d: d.update(Memory="1g"), "Memory"),
        ("hostconfig.json", lambda d: d["RestartPolicy"].update(Name=1), "RestartPolicy.Name"),
    ],
)
def test_a_value_of_the_wrong_type_is_damage(
    cli, sample_root: Path, truth: dict[str, Any], file: str, change, where: str
) -> None:
    """Go's decoder refuses a value that does not fit its field's type, and with it the whole
    file: dockerd skips the container. Python's decoder reads the file happily."""
    cid, config = _config(sample_root, truth, "exited")
    _rewrite(config.parent / file, change)
    errors = [f for f in _about(_verify(cli, sample_root), cid) if f["severity"] == "error"]
    role = "config" if file == "config.v2.json" else "hostconfig"
    assert [f["check"] for f in errors] == [f"container.{role}-damaged"], errors
    assert errors[0]["damage"] == "wrong-type"
    assert errors[0]["message"].split(": ")[1] == where
    assert errors[0]["path"].endswith(f"{cid}/{file}")
    assert _about(_plan(cli, sample_root), cid), "a container dockerd skips is quarantined"


def test_values_that_go_reads_are_no_damage(cli, sample_root: Path, truth: dict[str, Any]) -> None:
    """null for any field, a command as one string (strslice), a key in another case holding
    the right type, and keys of no field: Go loads the container."""
    cid, config = _config(sample_root, truth, "exited")
    before = _verify(cli, sample_root)

    def odd(doc: dict[str, Any]) -> None:
        doc["Config"].update(Cmd="sleep 1", Entrypoint=None, Labels=None, NoSuchField=[1])
        doc["State"].update(Error=None, Pid=0)
        doc["restartcount"] = 0

    _rewrite(config, odd)
    _rewrite(config.parent / "hostconfig.json", lambda d: d.update(CapAdd="NET_ADMIN"))
    assert _about(_verify(cli, sample_root), cid) == _about(before, cid)
    assert not _about(_plan(cli, sample_root), cid)
