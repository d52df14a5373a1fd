"""Pure decoders: identifiers and damaged JSON."""

from __future__ import annotations

import hashlib
import json

import pytest
from conftest import LAYOUT_EXAMPLES

from forensics.formats.ids import chain_ids
from forensics.formats.jsonfile import (
    GoObject,
    JsonDamage,
    decode_json,
    field,
    go_int,
    go_uint,
    reads_one_value,
)


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


# -- Go's encoding/json rules, one test each (forensics/formats/jsonfile.py cites the source) ----


def _damage(data: bytes, **kwargs: bool) -> JsonDamage:
    with pytest.raises(JsonDamage) as exc:
        decode_json(data, **kwargs)
    return exc.value


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_go_rule_nan_and_infinity_are_refused(literal: bytes) -> None:
    damage = _damage(b'{"ExitCode":' + literal + b"}")
    assert damage.kind == "invalid" and literal.decode().lstrip("-") in damage.detail


@pytest.mark.parametrize("number", [b"01", b"-01", b"1.", b".5", b"+1", b"1e", b"0x10", b"-"])
def test_go_rule_numbers_follow_the_json_grammar(number: bytes) -> None:
    assert _damage(b'{"a":' + number + b"}").kind == "invalid"


@pytest.mark.parametrize("escape", [rb"\x41", rb"\'", rb"\u12", rb"\U0041", rb"\a"])
def test_go_rule_bad_escapes_are_refused(escape: bytes) -> None:
    assert _damage(b'{"a":"' + escape + b'"}').kind == "invalid"


def test_go_rule_control_characters_in_strings_are_refused() -> None:
    assert _damage(b'{"a":"x\ty"}').kind == "invalid"


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"x\xffy", "x\ufffdy"),  # a byte that starts nothing
        (b"\xe2\x82", "\ufffd\ufffd"),  # a sequence cut short: one U+FFFD per byte
        (b"\xed\xa0\x80", "\ufffd" * 3),  # a UTF-8-encoded surrogate
        (b"\xc0\x80", "\ufffd\ufffd"),  # an overlong NUL
        (b"\xf4\x90\x80\x80", "\ufffd" * 4),  # past U+10FFFF
        ("é€😀".encode(), "é€😀"),  # valid UTF-8 stays as it is
    ],
)
def test_go_rule_invalid_utf8_in_strings_becomes_u_fffd(raw: bytes, text: str) -> None:
    doc = decode_json(b'{"k' + raw + b'":"' + raw + b'","l":["' + raw + b'"]}')
    assert doc == {"k" + text: text, "l": [text]}


def test_go_rule_invalid_utf8_outside_strings_is_refused() -> None:
    damage = _damage(b'{"a":\xff1}')
    assert damage.kind == "not-utf8" and "byte 5" in damage.detail


@pytest.mark.parametrize(
    ("escaped", "text"),
    [
        (rb"\ud83d\ude00", "\U0001f600"),  # a valid pair
        (rb"\ud83dx", "\ufffdx"),  # a high half alone
        (rb"\ude00", "\ufffd"),  # a low half alone
        (rb"\ud83d\ud83d\ude00", "\ufffd\U0001f600"),  # the second high half pairs
        (rb"\u00e9\/\b\f\n\r\t", "é/\b\f\n\r\t"),
    ],
)
def test_go_rule_unpaired_surrogate_escapes_become_u_fffd(escaped: bytes, text: str) -> None:
    assert decode_json(b'{"a":"' + escaped + b'"}') == {"a": text}


def test_go_rule_a_byte_order_mark_is_refused() -> None:
    damage = _damage(b'\xef\xbb\xbf{"a":1}')
    assert damage.kind == "invalid" and "byte order mark" in damage.detail


def test_go_rule_unmarshal_refuses_data_after_the_value() -> None:
    assert _damage(b'{"a":1} {"a":2}').kind == "invalid"
    assert _damage(b'{"a":1}x').kind == "invalid"
    assert _damage(b'{"a":1}' + b"\0" * 10).kind == "nul-filled"
    assert decode_json(b'{"a":1} \r\n\t') == {"a": 1}


def test_go_rule_a_decoder_stops_after_the_first_value() -> None:
    assert decode_json(b'{"a":1} {"a":2}', one_value=True) == {"a": 1}
    assert decode_json(b"[1]garbage\xff", one_value=True) == [1]
    assert decode_json(b'{"a":1}' + b"\0" * 10, one_value=True) == {"a": 1}
    # after a bare number, string or literal the scanner needs the next byte: it must be space
    assert decode_json(b"12 x", one_value=True) == 12
    assert _damage(b"12x", one_value=True).kind == "invalid"
    assert _damage(b"nullx", one_value=True).kind == "invalid"
    # the value itself is still judged whole
    assert _damage(b'{"a":NaN} x', one_value=True).kind == "invalid"
    assert _damage(b'{"a":1', one_value=True).kind == "truncated"


def test_go_rule_which_files_dockerd_reads_with_a_decoder() -> None:
    for name in ("config.v2.json", "config.json", "hostconfig.json", "repositories.json"):
        assert reads_one_value(f"containers/x/{name}")
    assert reads_one_value("repositories-devicemapper")
    assert reads_one_value("graph/abc/json")
    for name in ("imagedb/content/sha256/" + "a" * 64, "devicemapper/metadata/base", "opts.json"):
        assert not reads_one_value(name)


def test_go_rule_duplicate_keys_the_last_wins() -> None:
    doc = decode_json(b'{"a":1,"b":2,"a":3}')
    assert doc == {"a": 3, "b": 2}
    assert isinstance(doc, GoObject) and doc.pairs == [("a", 1), ("b", 2), ("a", 3)]


def test_go_rule_struct_fields_match_keys_case_insensitively() -> None:
    doc = decode_json(b'{"id":"x","DRIVER":"overlay2","Name":"/n"}')
    assert field(doc, "ID") == "x"
    assert field(doc, "Driver") == "overlay2"
    assert field(doc, "Name") == "/n"
    assert field(doc, "Image") is None
    assert doc.get("ID") is None, "as a map, keys stay exact"


def test_go_rule_keys_fold_as_unicode_simple_folding() -> None:
    """K (U+212A KELVIN SIGN) folds to k and ſ (U+017F LONG S) to s; no other non-ASCII rune
    reaches an ASCII letter (ı, İ and ﬀ do not)."""
    doc = decode_json('{"\u212aey":1,"\u017ftate":2,"\u0131d":3,"\u0130D":4}'.encode())
    assert field(doc, "Key") == 1
    assert field(doc, "State") == 2
    assert field(doc, "ID") is None


def test_go_rule_objects_of_the_same_keys_share_their_lookups_not_their_values() -> None:
    """Objects with one set of keys resolve a name once (forensics.formats.jsonfile._Names);
    keys in another case or order, a repeated key or two keys folding alike are their own."""
    first, second = decode_json(b'{"Id":"a","Name":"x"}'), decode_json(b'{"Id":"b","Name":"y"}')
    assert [field(first, "ID"), field(second, "ID"), field(second, "Image")] == ["a", "b", None]
    assert field(first, "Image") is None and field(first, "name") == "x"
    assert field(decode_json(b'{"ID":"c","Name":"z"}'), "id") == "c"
    assert field(decode_json(b'{"Id":"d","Name":"w","Id":null}'), "ID") == "d"
    assert field(decode_json(b'{"Id":"d","Name":"w","Id":null}'), "ID", nullable=True) is None
    assert field(decode_json(b'{"Id":"e","id":"f"}'), "ID") == "f"


def test_go_rule_the_last_key_reaching_a_field_wins() -> None:
    assert field(decode_json(b'{"ID":"a","id":"b"}'), "ID") == "b"
    assert field(decode_json(b'{"id":"b","ID":"a"}'), "ID") == "a"


def test_go_rule_null_leaves_a_value_field_and_clears_a_pointer() -> None:
    doc = decode_json(b'{"Name":"x","name":null,"State":{"Pid":1},"state":null}')
    assert field(doc, "Name") == "x"  # a string field: null changes nothing
    assert field(doc, "State", nullable=True) is None  # *State: null sets nil
    assert field(doc, "State") == {"Pid": 1}


def test_go_rule_numbers_into_integer_fields() -> None:
    doc = decode_json(b'{"a":3,"b":3.0,"c":1e3,"d":-1,"e":9223372036854775808,"f":true}')
    assert go_int(field(doc, "a")) == 3
    assert go_int(field(doc, "b")) is None  # strconv.ParseInt("3.0") fails
    assert go_int(field(doc, "c")) is None
    assert go_uint(field(doc, "d")) is None
    assert go_int(field(doc, "e")) is None and go_uint(field(doc, "e")) == 1 << 63
    assert go_int(field(doc, "f")) is None
    assert go_int(200, bits=8) is None and go_int(-128, bits=8) == -128


def test_go_rule_a_huge_number_is_no_crash() -> None:
    doc = decode_json(b'{"a":' + b"7" * 5000 + b"}")
    assert go_int(field(doc, "a")) is None
