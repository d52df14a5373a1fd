"""The type rules of Go's ``encoding/json`` (``decode.go literalStore``, ``object``, ``array``;
``time.Time.UnmarshalJSON``), one by one, and Docker's container schemas on every real file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from forensics.formats.gotypes import (
    ANY,
    BOOL,
    STRING,
    STRING_OR_STRINGS,
    TIME,
    Int,
    Map,
    Slice,
    Struct,
    Uint,
    first_type_error,
    is_rfc3339,
)
from forensics.formats.jsonfile import decode_json
from forensics.stores.container_types import CONTAINER, HOST_CONFIG

DOC = Struct(
    "Doc",
    {
        "Count": Int(64),
        "Small": Int(8),
        "Weight": Uint(16),
        "Name": STRING,
        "On": BOOL,
        "When": TIME,
        "Cmd": STRING_OR_STRINGS,
        "Env": Slice(STRING),
        "Labels": Map(STRING),
        "Inner": Struct("Inner", {"Pid": Int(64)}),
        "Anything": ANY,
    },
)


def _error(text: str) -> str | None:
    refused = first_type_error(decode_json(text.encode()), DOC)
    return None if refused is None else refused.where


@pytest.mark.parametrize(
    "text",
    [
        '{"Count": 1, "Small": -128, "Weight": 65535, "Name": "x", "On": true}',
        '{"Count": null, "Name": null, "On": null, "Env": null, "Inner": null, "When": null}',
        '{"Env": ["a", null], "Labels": {"a": "b", "c": null}, "Inner": {"Pid": 3, "x": []}}',
        '{"Cmd": "sh -c true"}',
        '{"Cmd": ["sh", null]}',
        '{"When": "2024-02-29T23:59:59.123456789Z"}',
        '{"When": "2001-01-01T00:00:00+05:30"}',
        '{"When": "2001-01-01T00:00:00,5Z"}',
        '{"Anything": {"a": [1, "b", null]}, "Unknown": {"Count": "x"}}',
        '{"count": 2, "NAME": "y", "inner": {"pid": 1}}',
        '{"Count": -9223372036854775808}',
    ],
)
def test_values_go_takes(text: str) -> None:
    assert _error(text) is None


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('{"Count": "1"}', "Count"),  # a string into an int
        ('{"Count": 1.0}', "Count"),  # ParseInt("1.0") fails
        ('{"Count": 1e3}', "Count"),
        ('{"Count": 9223372036854775808}', "Count"),  # out of int64
        ('{"Small": 128}', "Small"),  # out of int8
        ('{"Weight": -1}', "Weight"),  # ParseUint refuses a sign
        ('{"Count": true}', "Count"),  # a bool is no number
        ('{"On": 1}', "On"),
        ('{"Name": 5}', "Name"),
        ('{"Env": "A=1"}', "Env"),  # a string into a slice
        ('{"Env": ["a", 1]}', "Env[1]"),
        ('{"Labels": ["a"]}', "Labels"),  # an array into a map
        ('{"Labels": {"a": 1}}', "Labels['a']"),
        ('{"Inner": []}', "Inner"),  # an array into a struct
        ('{"Inner": {"Pid": "1"}}', "Inner.Pid"),
        ('{"Cmd": 5}', "Cmd"),
        ('{"Cmd": ["a", 5]}', "Cmd"),
        ('{"When": 0}', "When"),
        ('{"When": "2023-02-29T00:00:00Z"}', "When"),  # no 29 February in 2023
        ('{"When": "2001-01-01 00:00:00Z"}', "When"),
        ('{"count": "x"}', "Count"),  # folded keys are decoded too
        ('{"Count": "x", "Count": 1}', "Count"),  # each key is decoded: the first is refused
        ('{"Name": 1, "Count": "x"}', "Name"),  # the first in document order
    ],
)
def test_values_go_refuses(text: str, where: str) -> None:
    assert _error(text) == where


def test_the_message_says_what_and_where() -> None:
    refused = first_type_error(decode_json(b'{"Inner": {"Pid": "12"}}'), DOC)
    assert str(refused) == "Inner.Pid: the JSON string '12' where dockerd reads a Go int"


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("0001-01-01T00:00:00Z", True),
        ("2026-12-07T08:44:41.123Z", True),
        ("2026-12-07T08:44:41-07:00", True),
        ("2026-12-07t08:44:41Z", False),
        ("2026-12-07T24:00:00Z", False),
        ("2026-12-32T00:00:00Z", False),
        ("2026-04-31T00:00:00Z", False),
        ("2000-02-29T00:00:00Z", True),
        ("1900-02-29T00:00:00Z", False),
        ("2026-12-07T08:44:41", False),
        ("", False),
    ],
)
def test_rfc3339_as_go_parses_it(text: str, ok: bool) -> None:
    assert is_rfc3339(text) is ok


def _judge_every_config(root: Path) -> int:
    checked = 0
    for path in sorted(root.glob("**/containers/*/*.json")):
        schema = {"config.v2.json": CONTAINER, "hostconfig.json": HOST_CONFIG}.get(path.name)
        if schema is None:
            continue
        refused = first_type_error(decode_json(path.read_bytes(), one_value=True), schema)
        assert refused is None, (path, str(refused))
        checked += 1
    return checked


def test_every_real_config_fits_the_schemas(driver_sample: tuple[Path, dict[str, Any]]) -> None:
    """Every config.v2.json and hostconfig.json a real dockerd wrote is taken whole: no value
    is judged that dockerd reads."""
    assert _judge_every_config(driver_sample[0]) >= 2


def test_real_configs_of_devicemapper_and_the_corpus_fit(
    dm_master: Path, modern_dm_master: Path, corpus_roots: dict[str, Path]
) -> None:
    """The 1.8 host's hostconfig.json (its config.json is not judged: another struct), the
    devicemapper sample and the trees captured on real hosts."""
    assert _judge_every_config(dm_master) >= 1
    assert _judge_every_config(modern_dm_master) >= 2
    assert sum(_judge_every_config(root) for root in corpus_roots.values()) >= 2
