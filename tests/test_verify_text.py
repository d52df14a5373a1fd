"""verify's text report for people (header, findings by severity and object, fitted to the
terminal, colour, the advice of the real repair planner), --severity and --quiet, and the global
options after the verb; JSON and JSON lines unchanged."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import shutil
import struct
import subprocess
import termios
from pathlib import Path
from typing import Any

import click
import pytest
from conftest import run_cli
from sample_paths import SamplePaths

from forensics.checks import run_checks
from forensics.cli import cli
from forensics.evidence import Evidence
from forensics.report import findings_jsonl, to_json
from forensics.stores import read_host

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
ORPHAN = "e" * 64


def _damage(root: Path, truth: dict[str, Any]) -> tuple[str, str]:
    """An error repair fixes (an orphan driver directory), two findings about one container
    (a warning repair fixes, a leftover config write, beside the sample's info) and an error
    it leaves alone (a layer without its cache-id file); returns the container id and the
    layer's path."""
    s = SamplePaths(root, truth)
    (root / "overlay2" / ORPHAN).mkdir()
    cid = s.container_id("running")
    (root / "containers" / cid / ".tmp-config.v2.json123").write_text("{")
    layer = s.layer_dir(s.chain("sample/app:1.0")[-1])
    (root / layer / "cache-id").unlink()
    return cid, layer


def _sections(text: str) -> dict[str, list[str]]:
    """The lines under each severity heading (``ERRORS (2)`` → ``ERRORS``)."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        heading = re.fullmatch(r"(ERRORS|WARNINGS|INFOS) \((\d+)\)", line)
        if heading:
            current = out.setdefault(heading[1], [])
        elif not line:
            current = None
        elif current is not None:
            current.append(line)
    return out


def test_the_report_has_a_header_groups_and_advice(
    sample_root: Path, truth: dict[str, Any]
) -> None:
    cid, layer = _damage(sample_root, truth)
    result = run_cli("verify", sample_root)
    assert result.code == 4, result.stderr
    doc = run_cli("verify", sample_root, "--format", "json").json()
    inventory = run_cli("inventory", sample_root, "--format", "json").json()
    lines = result.stdout.splitlines()
    assert lines[0] == f"docker-forensics verify {sample_root}"
    assert lines[1] == "  layout:  modern, driver overlay2"
    images, containers = len(inventory["images"]), len(inventory["containers"])
    assert lines[2].startswith(f"  checked: {images} images, ")
    assert f", {containers} containers, {len(inventory['volumes'])} volumes;" in lines[2]
    assert lines[2].endswith("layer contents not read (--deep reads them)")

    sections = _sections(result.stdout)
    assert list(sections) == ["ERRORS", "WARNINGS", "INFOS"]
    assert result.stdout.index("ERRORS (") < result.stdout.index("WARNINGS (")
    for severity, heading in (("error", "ERRORS"), ("warning", "WARNINGS"), ("info", "INFOS")):
        findings = [f for f in doc["findings"] if f["severity"] == severity]
        causes = [f for f in findings if f["caused_by"] is None]
        assert f"{heading} ({len(causes)})" in lines
        body = sections[heading]
        for f in causes:
            assert f"    {f['check']}  {f['path'] or '.'}: {f['message']}" in body
    # the layer's directory, orphaned by the lost cache-id file, is shown under that cause
    (orphaned,) = [f for f in doc["findings"] if f["caused_by"]]
    assert orphaned["caused_by"] == f"layer.cache-id-missing:{layer}/cache-id"
    assert (
        f"      error {orphaned['check']}  {orphaned['path']}: {orphaned['message']}"
        in (sections["ERRORS"])
    )
    # one heading per object, its findings under it
    container_heading = f"  container {cid[:12]} running"
    assert sections["WARNINGS"].count(container_heading) == 1
    assert sections["INFOS"].count(container_heading) == 1
    under = sections["WARNINGS"][sections["WARNINGS"].index(container_heading) + 1]
    assert under.startswith("    container.") and cid in under
    chain = layer.rsplit("/", 1)[1]
    assert f"  layer {chain[:12]}" in sections["ERRORS"]
    assert f"  driver-dir {ORPHAN[:12]}" in sections["ERRORS"]

    errors, warnings, infos = (doc["summary"][s] for s in ("error", "warning", "info"))
    assert lines[-2] == f"{errors} errors, {warnings} warning{'s' * (warnings != 1)}, {infos} infos"
    fixable = _fixable_by_the_plan(sample_root, doc)
    assert 0 < fixable < errors + warnings
    assert lines[-1] == (
        f"Next: docker-forensics repair --dry-run {sample_root} shows how repair would fix "
        f"{fixable} of the {errors + warnings} errors and warnings; what it leaves alone, it "
        "says why."
    )


def _fixable_by_the_plan(root: Path, doc: dict[str, Any]) -> int:
    """The errors and warnings that ``repair --dry-run`` does not list as left alone, each
    cause once: a cause whose consequences the plan all answers is fixed too."""
    plan = run_cli("repair", root, "--dry-run", "--format", "json").json()
    left = {(s["check"], s["path"]) for s in plan["skipped"]}

    def answered(f: dict[str, Any]) -> bool:
        return (f["check"], f["path"]) not in left

    def fixed(cause: dict[str, Any]) -> bool:
        key = f"{cause['check']}:{cause['path']}"
        these = [f for f in doc["findings"] if f["caused_by"] == key]
        return answered(cause) or (bool(these) and all(answered(f) for f in these))

    return sum(
        1
        for f in doc["findings"]
        if f["severity"] in ("error", "warning") and f["caused_by"] is None and fixed(f)
    )


def test_the_advice_follows_the_plan(sample_root: Path) -> None:
    (sample_root / "overlay2" / ORPHAN).mkdir()
    one = run_cli("verify", sample_root).stdout.splitlines()[-1]
    assert one == (
        f"Next: docker-forensics repair --dry-run {sample_root} shows how repair would fix it."
    )
    (sample_root / "overlay2" / ORPHAN).rmdir()
    clean = run_cli("verify", sample_root)
    assert clean.stdout.splitlines()[-2:] == ["0 errors, 0 warnings, 6 infos", "Nothing to repair."]


def test_severity_filters_every_format_and_counts_stay_whole(
    sample_root: Path, truth: dict[str, Any]
) -> None:
    _damage(sample_root, truth)
    full = run_cli("verify", sample_root, "--format", "json").json()
    for level, kept in (("error", {"error"}), ("warning", {"error", "warning"})):
        doc = run_cli("verify", sample_root, "--format", "json", "--severity", level)
        assert doc.code == 4
        assert doc.json()["summary"] == full["summary"]
        assert doc.json()["findings"] == [f for f in full["findings"] if f["severity"] in kept]
        jsonl = run_cli("verify", sample_root, "--format", "jsonl", "--severity", level)
        assert [json.loads(line) for line in jsonl.stdout.splitlines()] == doc.json()["findings"]
        text = run_cli("verify", sample_root, "--severity", level)
        assert text.code == 4
        assert set(_sections(text.stdout)) == {f"{s.upper()}S" for s in kept}
        hidden = len(full["findings"]) - len(doc.json()["findings"])
        assert f"({hidden} not shown: see --severity)" in text.stdout


def test_quiet_prints_the_findings_alone(sample_root: Path, truth: dict[str, Any]) -> None:
    _damage(sample_root, truth)
    jsonl = run_cli("verify", sample_root, "--format", "jsonl").stdout.splitlines()
    quiet = run_cli("verify", sample_root, "-q")
    assert quiet.code == 4
    lines = quiet.stdout.splitlines()
    assert len(lines) == len(jsonl)
    for line, f in zip(lines, map(json.loads, jsonl), strict=True):
        assert line.split()[:2] == [f["severity"], f["check"]]
        assert line.endswith(f"{f['path']}: {f['message']}")
    errors = run_cli("verify", sample_root, "--quiet", "--severity", "error").stdout
    assert all(line.startswith("error ") for line in errors.splitlines())


def test_quiet_and_clean_prints_nothing(sample_master: Path) -> None:
    result = run_cli("verify", sample_master, "--quiet", "--severity", "warning")
    assert (result.code, result.stdout, result.stderr) == (0, "", "")


def test_json_and_jsonl_are_what_the_library_finds(sample_root: Path) -> None:
    """The text report changed; the formats that scripts read did not: byte for byte what
    the findings and the host make."""
    (sample_root / "overlay2" / ORPHAN).mkdir()
    host = read_host(Evidence(sample_root))
    findings = run_checks(host)
    counts = {s: sum(f.severity == s for f in findings) for s in ("error", "warning", "info")}
    expected = to_json(
        {
            "driver": host.driver,
            "findings": [f.as_dict() for f in findings],
            "layout": host.layout,
            "root": host.root,
            "summary": counts,
        }
    )
    assert run_cli("verify", sample_root, "--format", "json").stdout == expected
    assert run_cli("verify", sample_root, "--format", "jsonl").stdout == findings_jsonl(findings)


# -- on a terminal ------------------------------------------------------------------------------


def _on_a_terminal(
    args: list[str], columns: int, env: dict[str, str], stream: str = "stdout"
) -> tuple[int, str]:
    """Run with standard output (or error) on a pseudo-terminal of ``columns`` columns; what
    was written there."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    exe = shutil.which("docker-forensics")
    assert exe
    environ = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "COLUMNS")}
    proc = subprocess.Popen(
        [exe, *args],
        stdout=slave if stream == "stdout" else subprocess.DEVNULL,
        stderr=slave if stream == "stderr" else subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env={**environ, "TERM": "xterm", **env},
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO once the child closed its side
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    code = proc.wait(timeout=60)
    return code, b"".join(chunks).decode().replace("\r\n", "\n")


def test_on_a_terminal_lines_are_fitted_and_coloured(
    sample_root: Path, truth: dict[str, Any]
) -> None:
    _damage(sample_root, truth)
    code, out = _on_a_terminal(["verify", str(sample_root)], 70, {})
    assert code == 4
    assert "\x1b[1;31mERRORS (" in out and "\x1b[1;33mWARNINGS (" in out
    plain = _ANSI.sub("", out)
    assert max(len(line) for line in plain.splitlines()) <= 70
    # wrapped, not cut: every word of every finding is there
    piped = run_cli("verify", sample_root).stdout
    assert max(len(line) for line in piped.splitlines()) > 70
    assert "\x1b" not in piped
    assert "".join(plain.split()) == "".join(piped.split())


@pytest.mark.parametrize("env", [{"NO_COLOR": "1"}, {"TERM": "dumb"}])
def test_no_colour_when_asked(sample_root: Path, env: dict[str, str]) -> None:
    (sample_root / "overlay2" / ORPHAN).mkdir()
    code, out = _on_a_terminal(["verify", str(sample_root)], 100, env)
    assert code == 4 and "ERRORS (1)" in out
    assert "\x1b" not in out


# -- global options after the verb -------------------------------------------------------------


def _all_commands() -> list[tuple[str, click.Command]]:
    ctx = click.Context(cli, info_name="docker-forensics")
    out: list[tuple[str, click.Command]] = []
    for name in cli.list_commands(ctx):
        command = cli.get_command(ctx, name)
        assert command is not None
        out.append((name, command))
        if isinstance(command, click.Group):
            out += [(f"{name} {sub}", c) for sub, c in command.commands.items()]
    return out


@pytest.mark.parametrize("name", [name for name, _ in _all_commands()])
def test_every_command_takes_no_progress_after_its_name(name: str) -> None:
    help_text = run_cli(*name.split(), "--help")
    assert help_text.code == 0 and "--no-progress" in help_text.stdout


def test_no_progress_after_the_verb_turns_the_bars_off(sample_master: Path) -> None:
    json_out = ["--format", "json"]
    code, bars = _on_a_terminal(["verify", str(sample_master), *json_out], 100, {}, "stderr")
    assert code == 0 and "containers" in bars
    for args in (
        ["verify", "--no-progress", str(sample_master), *json_out],
        ["verify", str(sample_master), *json_out, "--no-progress"],
        ["verify", str(sample_master), *json_out, "--quiet"],
    ):
        assert _on_a_terminal(args, 100, {}, "stderr") == (0, ""), args
