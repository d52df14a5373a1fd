"""The ``thin`` command group: its manual page documents every subcommand, option and check id;
usage errors are usage errors; JSON output has its documented shape."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
import thin_fixtures as tf
from click.testing import CliRunner
from test_manpages import _CHECK_TAG, mentions, sections, tagged_paragraphs

from forensics.cli.thin import thin
from forensics.formats import thin as fmt
from forensics.thin.findings import CHECKS

PAGE = Path(__file__).resolve().parents[1] / "man" / "docker-forensics-thin.1"


def documented_checks() -> dict[str, tuple[str, str, str]]:
    out: dict[str, tuple[str, str, str]] = {}
    for subsection, tag, body in tagged_paragraphs(sections(PAGE)["CHECKS"]):
        match = _CHECK_TAG.fullmatch(tag.strip())
        assert match, f"a CHECKS entry that is not 'id (severity)': {tag!r}"
        out[match["id"]] = (subsection, match["severity"], body)
    return out


def test_checks_section_lists_exactly_the_catalogue() -> None:
    assert set(documented_checks()) == set(CHECKS)


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_check_entry_gives_severity_and_summary(check: str) -> None:
    subsection, severity, body = documented_checks()[check]
    assert severity == CHECKS[check].severity
    assert subsection == f"{check.split('.')[0]}.*"
    assert CHECKS[check].summary.lower() in body.lower()


@pytest.mark.parametrize("command", sorted(thin.commands))
def test_every_subcommand_is_documented(command: str) -> None:
    parts = sections(PAGE)
    assert mentions(" ".join(parts["SYNOPSIS"]), command)
    tags = [tag.split()[0] for _, tag, _ in tagged_paragraphs(parts["COMMANDS"])]
    assert command in tags


def _options() -> list[tuple[str, str, click.Option]]:
    out = []
    for name, command in sorted(thin.commands.items()):
        ctx = click.Context(command, info_name=name)
        for param in command.get_params(ctx):
            if isinstance(param, click.Option):
                out += [(name, opt, param) for opt in (*param.opts, *param.secondary_opts)]
    return out


@pytest.mark.parametrize(("command", "option", "param"), _options())
def test_every_option_is_documented(command: str, option: str, param: click.Option) -> None:
    parts = sections(PAGE)
    entries = [
        f"{tag} {body}"
        for _, tag, body in tagged_paragraphs(parts["OPTIONS"])
        if mentions(tag, option)
    ]
    assert entries, f"{command} {option} has no entry in OPTIONS"
    if option not in ("-h", "--help"):
        assert mentions(" ".join(parts["SYNOPSIS"]), option)
    if isinstance(param.type, click.Choice):
        for choice in param.type.choices:
            assert mentions(" ".join(entries), str(choice))


@pytest.mark.parametrize("argv", [["check"], ["extract", "m", "d"], ["ls", "--format", "xml", "m"]])
def test_usage_errors(argv: list[str]) -> None:
    with pytest.raises(click.UsageError):
        thin.main(args=argv, standalone_mode=False)


def test_group_runs_as_a_program(tmp_path: Path) -> None:
    """The same module works standalone; a missing file exits 8 with one line on stderr."""
    result = subprocess.run(
        [sys.executable, "-c", "from forensics.cli.thin import thin; thin()", "check", "nope"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 8
    assert "nope" in result.stderr and "Traceback" not in result.stderr


def test_help_lists_the_subcommands() -> None:
    result = CliRunner().invoke(thin, ["--help"])
    assert result.exit_code == 0
    for command in ("check", "dump", "ls", "extract"):
        assert command in result.output


def test_cli_knows_the_fatal_severity() -> None:
    """The thin verbs name the fatal severity without importing the thin modules (numpy)."""
    from forensics.api import thin as api
    from forensics.thin.findings import ERROR

    assert api.ERROR == ERROR


# -- what the commands say (trust items: not metadata, findings, an empty pool) -----------------


def _invoke(*argv: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(thin, [str(a) for a in argv])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.stderr
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def random_bytes(tmp_path: Path) -> Path:
    path = tmp_path / "random.bin"
    path.write_bytes(bytes((i * 7919 + 13) * 2654435761 % 251 for i in range(64 * 4096)))
    return path


@pytest.mark.parametrize(
    "argv",
    [["check"], ["check", "--format", "json"], ["dump"], ["ls"], ["ls", "--format", "json"]],
)
def test_random_bytes_are_not_thin_pool_metadata(argv: list[str], random_bytes: Path) -> None:
    """e2fsck exits 8 on a bad magic number, and so do these: no superblock magic is no pool,
    not a damaged one."""
    status, stdout, stderr = _invoke(*argv, random_bytes)
    assert status == 8, stdout
    assert "not thin-pool metadata" in stderr and "magic" in stderr
    if argv[0] != "check":
        assert stdout == ""


def test_a_bad_magic_with_a_good_checksum_is_not_metadata(tmp_path: Path) -> None:
    path = tf.restore(tf.three_device_pool().xml(), tmp_path / "meta.bin")
    tf.edit_block(path, 0, tf.put("Q", 0x20, 1234), xor=fmt.SUPERBLOCK_CSUM_XOR)
    status, _, stderr = _invoke("check", path)
    assert status == 8 and "not thin-pool metadata" in stderr
    status, _, stderr = _invoke("extract", path, path, "--dev", "1", "-o", tmp_path / "x.img")
    assert status == 8 and "not thin-pool metadata" in stderr


@pytest.mark.parametrize("content", [b"", b"<superblock uuid=''>\n"])
def test_a_file_smaller_than_a_block_is_not_metadata(content: bytes, tmp_path: Path) -> None:
    path = tmp_path / "meta.bin"
    path.write_bytes(content)
    status, _, stderr = _invoke("check", path)
    assert status == 8 and "less than one 4096-byte block" in stderr


def test_check_json_has_findings_like_verify(tmp_path: Path) -> None:
    """``findings`` holds every finding (as verify's JSON does); ``errors`` only the errors;
    the text's last line counts them, one error in the singular."""
    path = tf.restore(tf.three_device_pool().xml(), tmp_path / "meta.bin")
    details = int(fmt.parse_superblock(bytes(tf.read_block(path, 0))).device_details_root)
    tf.edit_block(path, details, tf.put("Q", 32 + 8 * 126 + 24, 200), xor=fmt.BTREE_CSUM_XOR)
    status, stdout, _ = _invoke("check", "--format", "json", path)
    doc = json.loads(stdout)
    assert status == 4
    assert {f["check"] for f in doc["findings"]} == {"device.mapped-blocks", "metasm.nr-allocated"}
    assert [f["check"] for f in doc["errors"]] == ["device.mapped-blocks"]
    assert doc["summary"] == {"error": 1, "warning": 0, "info": 1}
    _, text, _ = _invoke("check", path)
    assert text.rstrip().endswith("1 error, 0 warnings, 1 info")


def test_ls_prints_no_header_without_devices(tmp_path: Path) -> None:
    path = tf.restore(tf.Pool().xml(), tmp_path / "empty.bin")
    status, stdout, _ = _invoke("ls", path)
    assert status == 0 and stdout == ""
    status, stdout, _ = _invoke("ls", tf.restore(tf.three_device_pool().xml(), tmp_path / "3.bin"))
    assert stdout.startswith("DEV ") and len(stdout.splitlines()) == 4
