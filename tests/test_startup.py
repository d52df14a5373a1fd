"""What the start of each command imports: ``--version`` and ``--help`` only what they print,
the verbs' help and a listing of a root without containerd, BuildKit or devicemapper none of
the heavy libraries (numpy, construct, sqlite-utils, tqdm: a quarter of a second together on
a slow machine). Each is run in a fresh interpreter that reports ``sys.modules`` at its end."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from forensics import __version__
from forensics.cli.app import LazyGroup, cli

HEAVY = ("numpy", "construct", "sqlite_utils", "tqdm")
#: runs the command line in-process, then prints the top-level modules it loaded (JSON)
PROBE = """
import json, sys
from forensics.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
sys.stdout.flush()
names = sorted({name.split('.')[0] for name in sys.modules} | {
    name for name in sys.modules if name.startswith('forensics.')})
sys.stderr.write('\\nMODULES ' + json.dumps(names) + '\\n')
"""


def loaded_by(*args: str) -> tuple[str, set[str]]:
    """The standard output of ``docker-forensics ARGS`` and the modules it loaded."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120
    )
    line = proc.stderr.rsplit("MODULES ", 1)[-1]
    return proc.stdout, set(json.loads(line))


def test_version_loads_neither_click_nor_the_library() -> None:
    out, modules = loaded_by("--version")
    assert out == f"docker-forensics, version {__version__}\n"
    assert not modules & {*HEAVY, "click", "forensics.cli.app", "forensics.report"}, modules


def test_version_says_what_click_says() -> None:
    """The quick answer is click's own ``--version`` output, word for word."""
    result = CliRunner().invoke(cli, ["--version"], prog_name="docker-forensics")
    out, _ = loaded_by("--version")
    assert result.exit_code == 0 and out == result.output
    assert loaded_by("forensics", "--version")[0] == result.output  # as a Docker CLI plugin


def test_help_imports_no_verb() -> None:
    out, modules = loaded_by("--help")
    assert "Commands:" in out
    verbs = {target.split(":")[0] for target in LazyGroup.LAZY.values()}
    assert not modules & (verbs | set(HEAVY)), modules & (verbs | set(HEAVY))


@pytest.mark.parametrize("width", [40, 80, 200])
def test_help_lists_the_verbs_as_their_own_help_would(width: int) -> None:
    """The summaries kept in the main command say what each verb's own help says: the list
    of verbs is the one click writes from the imported commands, at any terminal width."""
    group = click.Group(name="docker-forensics", commands=dict(cli.commands))
    ctx = click.Context(group, terminal_width=width, max_content_width=width)
    for name, target in LazyGroup.LAZY.items():
        module, attribute = target.split(":")
        group.add_command(getattr(importlib.import_module(module), attribute), name)
    formatter = ctx.make_formatter()
    group.format_commands(ctx, formatter)  # from every verb's own help
    expected = formatter.getvalue()
    formatter = ctx.make_formatter()
    LazyGroup.format_commands(cli, ctx, formatter)  # from the summaries
    assert formatter.getvalue() == expected


@pytest.mark.parametrize("verb", sorted(LazyGroup.LAZY))
def test_verb_help_loads_no_heavy_library(verb: str) -> None:
    out, modules = loaded_by(verb, "--help")
    assert out.startswith("Usage:")
    assert not modules & set(HEAVY), modules & set(HEAVY)


def test_listing_a_plain_root_loads_no_heavy_library(tmp_path: Path) -> None:
    """A root of the graphdriver store without containerd, BuildKit or devicemapper: inventory
    and verify read it without numpy or construct (the containerd store's bbolt reader, the
    archive and disk-image readers are loaded only for roots that have them)."""
    root = tmp_path / "docker"
    for rel in ("image/overlay2/imagedb/content/sha256", "image/overlay2/layerdb", "overlay2/l"):
        (root / rel).mkdir(parents=True)
    (root / "containers").mkdir()
    (root / "image/overlay2/repositories.json").write_text('{"Repositories":{}}')
    for args in (("inventory", str(root)), ("verify", str(root), "--format", "json")):
        out, modules = loaded_by(*args)
        assert out, args
        assert not modules & set(HEAVY), (args, modules & set(HEAVY))
