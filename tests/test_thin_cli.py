"""The ``thin`` command group: its manual page documents every subcommand, option and check id;
usage errors are usage errors; JSON output has its documented shape."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from test_manpages import _CHECK_TAG, mentions, sections, tagged_paragraphs

from forensics.cli_thin import thin
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
        [sys.executable, "-c", "from forensics.cli_thin import thin; thin()", "check", "nope"],
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
    """cli_thin names the fatal severity without importing the thin modules (numpy)."""
    from forensics import cli_thin
    from forensics.thin.findings import ERROR

    assert cli_thin.ERROR == ERROR
