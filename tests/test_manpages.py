"""The manual pages in man/ document every command, option and check id that the code has.

A check added to ``forensics.checks.catalog``, a command added to the click group, or an option
added to a command fails these tests until its page says what it is. The pages must also render
without a single warning from groff or man.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest

from forensics import exitstatus
from forensics.checks.catalog import CHECKS
from forensics.cli import cli
from forensics.export import RepairRecord, RunInfo, export_sqlite
from forensics.inventory import build_inventory
from forensics.model import Container, Host, Image, Layer, MountPoint, Volume
from forensics.report import Finding

MAN = Path(__file__).resolve().parents[1] / "man"
PROG = "docker-forensics"
MAIN_PAGE = MAN / f"{PROG}.1"
VERIFY_PAGE = MAN / f"{PROG}-verify.1"
REPAIR_PAGE = MAN / f"{PROG}-repair.1"

# roff escapes that can occur inside names and options, and what they stand for
_ESCAPES = (("\\-", "-"), ("\\(dq", '"'), ("\\(em", "\u2014"), ("\\~", " "), ("\\&", ""))
_FONT = re.compile(r"\\f(?:[BIRP]|\[[A-Z]*\])")
_BODY_END = (".TP", ".SS", ".SH", ".PP", ".IP", ".RS", ".RE")
_CHECK_TAG = re.compile(r"(?P<id>[a-z0-9]+\.[a-z0-9-]+) \((?P<severity>error|warning|info)\)")


def plain(roff: str) -> str:
    """``roff`` with escaped hyphens, font changes and zero-width escapes resolved."""
    text = _FONT.sub("", roff)
    for escape, char in _ESCAPES:
        text = text.replace(escape, char)
    return text.replace("\\e", "\\")


def page_lines(page: Path) -> list[str]:
    """The lines of ``page`` in plain text, comments dropped."""
    lines = page.read_text(encoding="utf-8").splitlines()
    return [plain(line) for line in lines if not line.startswith('.\\"')]


def sections(page: Path) -> dict[str, list[str]]:
    """The ``.SH`` sections of ``page`` by name, each as its plain lines."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in page_lines(page):
        if line.startswith(".SH "):
            current = out.setdefault(line[4:].strip().strip('"'), [])
        elif current is not None:
            current.append(line)
    return out


def unmacro(line: str) -> str:
    """The text of a line without its leading macro name and the quotes of its arguments."""
    if line.startswith("."):
        line = line.split(" ", 1)[1] if " " in line else ""
    return line.replace('"', "")


def tagged_paragraphs(lines: list[str]) -> list[tuple[str, str, str]]:
    """``(subsection, tag, body)`` of each ``.TP`` paragraph in ``lines``."""
    out: list[tuple[str, str, str]] = []
    subsection = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith(".SS "):
            subsection = line[4:].strip()
        if line != ".TP" or i + 1 >= len(lines):
            i += 1
            continue
        tag = unmacro(lines[i + 1])
        body: list[str] = []
        i += 2
        while i < len(lines) and not lines[i].startswith(_BODY_END):
            body.append(unmacro(lines[i]))
            i += 1
        out.append((subsection, tag, " ".join(" ".join(body).split())))
    return out


def mentions(text: str, word: str) -> bool:
    """True when ``word`` occurs in ``text`` as a whole option, command or id."""
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text) is not None


def option_names(command: click.Command) -> list[str]:
    """Every option string of ``command``, help option included (``-h``, ``--help``, …)."""
    ctx = click.Context(command, info_name=PROG)
    names: list[str] = []
    for param in command.get_params(ctx):
        if isinstance(param, click.Option):
            names += [*param.opts, *param.secondary_opts]
    return names


def verb_page(verb: str) -> Path:
    return MAN / f"{PROG}-{verb}.1"


def entries_of(lines: list[str], subsection: str | None = None) -> dict[str, str]:
    """Tag → body of the ``.TP`` paragraphs in ``lines`` (in ``subsection`` when given); a tag
    that names several fields (``created, started, finished``) gives one entry per field."""
    out: dict[str, str] = {}
    for sub, tag, body in tagged_paragraphs(lines):
        if subsection is None or sub == subsection:
            for name in tag.replace(",", " ").split():
                out[name] = body
    return out


ROOT_CTX = click.Context(cli, info_name=PROG)
#: every command, the lazily imported ones included
COMMANDS = {name: cli.get_command(ROOT_CTX, name) for name in cli.list_commands(ROOT_CTX)}
VERBS = sorted(name for name, command in COMMANDS.items() if command and not command.hidden)
PAGES = sorted(MAN.glob("*.1"))
INVENTORY_PAGE = MAN / f"{PROG}-inventory.1"


# -- check ids --------------------------------------------------------------------------------


def documented_checks() -> dict[str, tuple[str, str, str]]:
    """Check id → (subsection, severity, description) from the CHECKS section of the verify page."""
    out: dict[str, tuple[str, str, str]] = {}
    for subsection, tag, body in tagged_paragraphs(sections(VERIFY_PAGE)["CHECKS"]):
        match = _CHECK_TAG.fullmatch(tag.strip())
        assert match, f"a CHECKS entry that is not 'id (severity)': {tag!r}"
        assert match["id"] not in out, f"{match['id']} is documented twice"
        out[match["id"]] = (subsection, match["severity"], body)
    return out


def test_catalogue_is_not_empty() -> None:
    assert len(CHECKS) > 50


def test_every_check_id_appears_in_the_verify_page() -> None:
    text = "\n".join(page_lines(VERIFY_PAGE))
    missing = sorted(check for check in CHECKS if not mentions(text, check))
    assert not missing, f"check ids missing from {VERIFY_PAGE.name}: {missing}"


def test_checks_section_lists_exactly_the_catalogue() -> None:
    documented = set(documented_checks())
    undocumented = sorted(set(CHECKS) - documented)
    assert not undocumented, f"checks without an entry in CHECKS: {undocumented}"
    stale = sorted(documented - set(CHECKS))
    assert not stale, f"entries in CHECKS that the catalogue does not have: {stale}"


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_check_entry_gives_severity_and_summary(check: str) -> None:
    entries = documented_checks()
    assert check in entries, f"{check} has no entry in CHECKS of {VERIFY_PAGE.name}"
    subsection, severity, body = entries[check]
    assert severity == CHECKS[check].severity
    assert subsection == f"{check.split('.')[0]}.*", "grouped under the wrong prefix"
    summary = " ".join(CHECKS[check].summary.split())
    assert summary.lower() in body.lower(), f"{check}: the summary differs from the catalogue"


# -- commands and options ---------------------------------------------------------------------


def test_cli_has_commands() -> None:
    assert VERBS, "no subcommands found on forensics.cli.cli"


@pytest.mark.parametrize("verb", VERBS)
def test_every_command_has_its_page(verb: str) -> None:
    page = verb_page(verb)
    assert page.is_file(), f"no manual page {page.name} for '{PROG} {verb}'"
    parts = sections(page)
    assert any(line.startswith(f"{PROG}-{verb} - ") for line in parts["NAME"]), "NAME line"
    synopsis = " ".join(parts["SYNOPSIS"])
    assert mentions(synopsis, verb) and mentions(synopsis, PROG)


@pytest.mark.parametrize("verb", VERBS)
def test_every_command_is_named_in_the_main_page(verb: str) -> None:
    parts = sections(MAIN_PAGE)
    tags = [tag.split()[0] for _, tag, _ in tagged_paragraphs(parts["COMMANDS"]) if tag.split()]
    assert verb in tags, f"COMMANDS of {MAIN_PAGE.name} has no entry for {verb}"
    see_also = " ".join(parts["SEE ALSO"]).replace(" (1)", "(1)")
    assert f"{PROG}-{verb}(1)" in see_also, f"SEE ALSO of {MAIN_PAGE.name}"


def test_main_page_names_no_command_that_does_not_exist() -> None:
    tags = [tag.split()[0] for _, tag, _ in tagged_paragraphs(sections(MAIN_PAGE)["COMMANDS"])]
    assert set(tags) == set(VERBS)


@pytest.mark.parametrize("option", option_names(cli))
def test_every_global_option_is_documented(option: str) -> None:
    parts = sections(MAIN_PAGE)
    tags = " ".join(tag for _, tag, _ in tagged_paragraphs(parts["GLOBAL OPTIONS"]))
    assert mentions(tags, option), f"{option} has no entry in GLOBAL OPTIONS"
    assert mentions(" ".join(parts["SYNOPSIS"]), option), f"{option} not in SYNOPSIS"


def command_options(verb: str) -> dict[str, click.Option]:
    """Option string → option of command ``verb``, help option included."""
    command = COMMANDS[verb]
    assert command is not None
    ctx = click.Context(command, info_name=verb, parent=ROOT_CTX)
    return {
        name: param
        for param in command.get_params(ctx)
        if isinstance(param, click.Option)
        for name in (*param.opts, *param.secondary_opts)
    }


@pytest.mark.parametrize(
    ("verb", "option"), [(verb, option) for verb in VERBS for option in command_options(verb)]
)
def test_every_command_option_is_documented(verb: str, option: str) -> None:
    parts = sections(verb_page(verb))
    entries = [
        f"{tag} {body}"
        for _, tag, body in tagged_paragraphs(parts["OPTIONS"])
        if mentions(tag, option)
    ]
    assert entries, f"{option} has no entry in OPTIONS of {verb_page(verb).name}"
    param = command_options(verb)[option]
    if not param.hidden and option not in ("-h", "--help"):
        assert mentions(" ".join(parts["SYNOPSIS"]), option), f"{option} not in SYNOPSIS"
    if isinstance(param.type, click.Choice):
        for choice in param.type.choices:
            assert mentions(" ".join(entries), str(choice)), f"{option} {choice} not described"


@pytest.mark.parametrize("verb", VERBS)
def test_command_arguments_are_in_the_synopsis(verb: str) -> None:
    synopsis = " ".join(sections(verb_page(verb))["SYNOPSIS"])
    command = COMMANDS[verb]
    assert command is not None
    for param in command.params:
        if isinstance(param, click.Argument):
            assert mentions(synopsis, param.human_readable_name), param.human_readable_name


# -- output fields, tables and exit codes ------------------------------------------------------


def sample_inventory() -> dict[str, Any]:
    """An inventory with one of everything, so that every field of every record is present."""
    image_id, present, absent = ("sha256:" + c * 64 for c in "abc")
    host = Host(root="/nowhere", layout="modern", driver="overlay2")
    host.images[image_id] = Image(id=image_id, path="image", layers=[present, absent])
    host.layers[present] = Layer(id=present, path="layer")
    host.containers["d" * 64] = Container(
        id="d" * 64,
        path="container",
        mount_points=[MountPoint("/data", "volume", "v", "local", None)],
    )
    host.volumes["v"] = Volume(name="v", path="volumes/v")
    return build_inventory(host)


def test_inventory_json_fields_are_documented() -> None:
    doc = sample_inventory()
    lines = sections(INVENTORY_PAGE)["JSON OUTPUT"]
    expected = {
        "Top level": set(doc),
        "Each of images[]": set(doc["images"][0]),
        "Each of containers[]": set(doc["containers"][0]),
        "Each of volumes[]": set(doc["volumes"][0]),
    }
    for subsection, keys in expected.items():
        documented = entries_of(lines, subsection)
        missing = sorted(keys - set(documented))
        assert not missing, f"{subsection}: fields without an entry: {missing}"
    nested = {
        ("Each of images[]", "layers"): {k for layer in doc["images"][0]["layers"] for k in layer},
        ("Each of containers[]", "volumes"): set(doc["containers"][0]["volumes"][0]),
    }
    for (subsection, field), keys in nested.items():
        body = entries_of(lines, subsection)[field]
        missing = sorted(k for k in keys if not mentions(body, k))
        assert not missing, f"{subsection} {field}: fields not described: {missing}"


def test_finding_fields_are_documented() -> None:
    documented = entries_of(sections(VERIFY_PAGE)["OUTPUT"])
    fields = {f.name for f in dataclasses.fields(Finding)}
    assert not fields - set(documented), sorted(fields - set(documented))


def test_verify_json_document_is_documented(sample_master: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "forensics", "verify", str(sample_master), "--format", "json"],
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    lines = sections(VERIFY_PAGE)["OUTPUT"]
    documented = entries_of(lines, "json")
    assert not set(doc) - set(documented), sorted(set(doc) - set(documented))
    summary = documented["summary"]
    assert all(mentions(summary, severity) for severity in doc["summary"])
    assert doc["findings"], "the sample's info findings expected"
    assert not set(doc["findings"][0]) - set(entries_of(lines)), "finding fields"


def _tables(out: Path) -> dict[str, list[str]]:
    db = sqlite3.connect(out)
    try:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: [row[1] for row in db.execute(f"PRAGMA table_info('{t}')")] for t in tables}
    finally:
        db.close()


def test_repair_sqlite_tables_and_columns_are_documented(tmp_path: Path) -> None:
    out = tmp_path / "plan.db"
    run = RunInfo("docker-forensics", "0", "repair", [], "/nowhere", "host", "user", "now")
    export_sqlite(out, Host(root="/nowhere"), [], run, repair=RepairRecord([], [], False))
    documented = entries_of(sections(REPAIR_PAGE)["SQLITE DATABASE"])
    for table, names in _tables(out).items():
        if not table.startswith("repair_"):  # the others are verify's
            continue
        assert table in documented, table
        missing = [name for name in names if not mentions(documented[table], name)]
        assert not missing, f"table {table}: columns not described: {missing}"


def test_sqlite_tables_and_columns_are_documented(tmp_path: Path) -> None:
    out = tmp_path / "case.db"
    run = RunInfo("docker-forensics", "0", "verify", [], "/nowhere", "host", "user", "now")
    export_sqlite(out, Host(root="/nowhere"), [], run, timeline=[])
    columns = _tables(out)
    tables = list(columns)
    documented = entries_of(sections(VERIFY_PAGE)["SQLITE DATABASE"])
    assert not set(tables) - set(documented), sorted(set(tables) - set(documented))
    for table, names in columns.items():
        missing = [name for name in names if not mentions(documented[table], name)]
        assert not missing, f"table {table}: columns not described: {missing}"


def test_exit_codes_are_documented() -> None:
    codes = {
        getattr(exitstatus, name)
        for name in dir(exitstatus)
        if name.startswith("EXIT_") and isinstance(getattr(exitstatus, name), int)
    }
    assert codes >= {0, 4, 8, 16, 32}
    documented = {int(tag) for tag in entries_of(sections(MAIN_PAGE)["EXIT STATUS"])}
    assert documented == codes
    for page in (VERIFY_PAGE, INVENTORY_PAGE):
        assert {int(tag) for tag in entries_of(sections(page)["EXIT STATUS"])} <= codes


# -- rendering --------------------------------------------------------------------------------


def test_pages_exist() -> None:
    assert MAIN_PAGE in PAGES and VERIFY_PAGE in PAGES


def _render_command(tool: str, page: Path) -> list[str]:
    if tool == "groff":
        return ["groff", "-man", "-ww", "-z", "-Tutf8", str(page)]
    return ["man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", str(page)]


@pytest.mark.parametrize("tool", ["groff", "man"])
@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_page_renders_without_warnings(tool: str, page: Path) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (Debian: groff-base, man-db)")
    env = {**os.environ, "LC_ALL": "C.UTF-8", "MANWIDTH": "80"}
    result = subprocess.run(
        _render_command(tool, page), capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", f"{tool} warns about {page.name}:\n{result.stderr}"


def test_pages_carry_the_tool_version() -> None:
    from forensics import __version__

    for page in sorted(MAN.glob("*.1")):
        th = next(line for line in page.read_text().splitlines() if line.startswith(".TH "))
        assert f'"docker\\-forensics {__version__}"' in th, page.name
