"""Pure decoders: identifiers and damaged JSON."""

from __future__ import annotations

import hashlib
import json

import pytest
from conftest import LAYOUT_EXAMPLES

from forensics.formats.ids import chain_ids
from forensics.formats.jsonfile import JsonDamage, decode_json


def test_chain_ids_match_the_reference_tree() -> None:
    ids = json.loads((LAYOUT_EXAMPLES / "IDS.json").read_text())
    text = json.dumps(ids)
    diff = [
        "sha256:85a9aa0b50367c436af24d88c410f963fb63e0665f55b40f2e981d5f9f339cf1",
        "sha256:547eb78f5e8b6f334cfad30704a87509494c45cb7e707002aaf6fe23ffb80d4f",
    ]
    chains = chain_ids(diff)
    assert chains[0] == diff[0]
    assert chains[1] == "sha256:d6372967f65de8ab397a1f9f46a8cd3bd3f187174ad6b96acf29c0f123b62cf0"
    assert chains[1] in text
    layerdb = LAYOUT_EXAMPLES / "modern_28.x_overlay2/image/overlay2/layerdb/sha256"
    assert {p.name for p in layerdb.iterdir()} == {c.removeprefix("sha256:") for c in chains}


def test_image_id_is_sha256_of_config() -> None:
    content = LAYOUT_EXAMPLES / "modern_28.x_overlay2/image/overlay2/imagedb/content/sha256"
    for path in content.iterdir():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"", "empty"),
        (b"  \n", "empty"),
        (b"\0" * 512, "nul-filled"),
        (b'{"a": 1}' + b"\0" * 100, "nul-filled"),
        (b'{"State":{"Running":tr', "truncated"),
        (b'{"Repositories":{"a":{"a:1":"sha256:', "truncated"),
        (b'{"a": [1, 2', "truncated"),
        (b'{"a": 1}}', "invalid"),
        (b"{'a': 1}", "invalid"),
        (b"\xff\xfe{}", "not-utf8"),
    ],
)
def test_json_damage_is_told_apart(data: bytes, kind: str) -> None:
    with pytest.raises(JsonDamage) as exc:
        decode_json(data)
    assert exc.value.kind == kind


def test_json_values_decode() -> None:
    assert decode_json(b'{"a": [1, "x"]}\n') == {"a": [1, "x"]}
    with pytest.raises(JsonDamage):
        decode_json(b"[" * 100000)
