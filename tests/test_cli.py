"""The command line contract: exit codes, streams, formats, and no traceback on any input."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import shutil
import struct
import subprocess
import sys
import termios
from pathlib import Path
from typing import Any

from conftest import Result, run_cli
from sample_paths import SamplePaths
from unprivileged import reachable_tmpdir, run_cli_unprivileged


def test_missing_root_is_operational_error(tmp_path: Path) -> None:
    for verb in ("inventory", "verify"):
        result = run_cli(verb, tmp_path / "nope")
        assert result.code == 8
        assert result.stdout == ""
        assert len(result.stderr.strip().splitlines()) == 1
        assert "nope" in result.stderr and "Traceback" not in result.stderr


def test_root_that_is_a_file_is_operational_error(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    result = run_cli("verify", f)
    assert result.code == 8 and "not a directory" in result.stderr


def test_unreadable_root_is_operational_error() -> None:
    with reachable_tmpdir() as base:
        root = base / "locked"
        root.mkdir()
        root.chmod(0)
        result = run_cli_unprivileged("verify", root)
        assert result.code == 8, result.stderr
        assert result.stderr == f"docker-forensics: {root}: permission denied\n"


def test_usage_errors_exit_16(sample_master: Path) -> None:
    for args in (
        ["verify", sample_master, "--format", "xml"],
        ["verify", sample_master, "--no-such-option"],
        ["no-such-verb"],
        ["inventory", sample_master, "extra-argument"],
    ):
        result = run_cli(*args)
        assert result.code == 16, (args, result.stderr)
        assert result.stdout == ""
        assert "Traceback" not in result.stderr


def test_help_and_version_exit_0() -> None:
    assert run_cli("--help").code == 0
    version = run_cli("--version")
    assert version.code == 0 and "docker-forensics" in version.stdout


def test_sqlite_inside_root_is_refused(sample_root: Path) -> None:
    result = run_cli("verify", sample_root, "--sqlite", sample_root / "out.db")
    assert result.code == 16
    assert not (sample_root / "out.db").exists()


def test_existing_sqlite_is_not_overwritten(sample_master: Path, tmp_path: Path) -> None:
    out = tmp_path / "case.db"
    out.write_text("precious")
    assert run_cli("verify", sample_master, "--sqlite", out).code == 8
    assert out.read_text() == "precious"
    assert run_cli("verify", sample_master, "--sqlite", out, "--overwrite").code == 0
    assert out.read_bytes().startswith(b"SQLite format 3")


def test_jsonl_is_one_finding_per_line(sample_root: Path) -> None:
    (sample_root / "overlay2" / ("e" * 64)).mkdir()
    result = run_cli("verify", sample_root, "--format", "jsonl")
    assert result.code == 4
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines and all({"check", "severity", "path", "message"} <= set(f) for f in lines)


def test_json_is_deterministic(sample_master: Path) -> None:
    first = run_cli("verify", sample_master, "--format", "json").stdout
    second = run_cli("verify", sample_master, "--format", "json").stdout
    assert first == second and first.strip()


def test_no_progress_bars_off_a_terminal(sample_master: Path) -> None:
    result = run_cli("verify", sample_master)
    assert result.code == 0
    assert result.stderr == ""


def test_progress_bars_on_a_terminal(sample_master: Path) -> None:
    """With stderr on a terminal, tqdm draws there, and stdout stays clean."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    exe = shutil.which("docker-forensics")
    assert exe
    proc = subprocess.Popen(
        [exe, "verify", str(sample_master), "--format", "json"],
        stdout=subprocess.PIPE,
        stderr=slave,
        stdin=subprocess.DEVNULL,
    )
    os.close(slave)
    drawn = _read_all(master)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert b"containers" in drawn and b"\r" in drawn
    assert out.startswith(b"{") and b"containers:" not in out


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO once the child closed its side
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


def test_names_with_control_characters_are_escaped_in_text(sample_root: Path) -> None:
    (sample_root / "overlay2" / "evil\nname\x1b[31m").mkdir()
    result = run_cli("verify", sample_root)
    assert "evil\\x0aname\\x1b[31m" in result.stdout
    assert "\x1b" not in result.stdout


#: what a hostile name may carry that a terminal obeys or that reorders what it shows: CSI and
#: OSC as C1 controls, a line separator, a right-to-left override and a first-strong isolate
UNSAFE = "\u009b31m\u009d0;pwned\u0007\u2028\u202e\u2068"
UNSAFE_CODES = set("\u009b\u009d\u0007\u2028\u202e\u2068")
UNSAFE_ESCAPED = "\\u009b31m\\u009d0;pwned\\x07\\u2028\\u202e\\u2068"


def test_c1_and_bidi_controls_are_escaped_in_every_text_output(
    sample_root: Path, truth: dict[str, Any]
) -> None:
    """A name is shown by verify, inventory, timeline, ``repair -n`` and diff: none of them may
    write a C1 control, a line separator or a bidi override raw to the terminal."""
    s = SamplePaths(sample_root, truth)
    (sample_root / "overlay2" / f"orphan{UNSAFE}").mkdir()
    config = sample_root / "containers" / s.container_id("exited") / "config.v2.json"
    doc = json.loads(config.read_text())
    doc["Name"] = f"/named{UNSAFE}"
    config.write_text(json.dumps(doc))
    (sample_root / "overlay2" / s.mount_id("exited") / "diff" / f"added{UNSAFE}").write_text("x")
    for args in (
        ["verify", sample_root],
        ["inventory", sample_root],
        ["timeline", sample_root],
        ["repair", sample_root, "--dry-run"],
        ["diff", s.container_id("exited"), sample_root],
    ):
        result = run_cli(*args)
        assert result.code in (0, 4), (args, result.stderr)
        assert UNSAFE_ESCAPED in result.stdout, (args, result.stdout)
        unsafe = sorted({f"U+{ord(c):04X}" for c in result.stdout if c in UNSAFE_CODES})
        assert not unsafe, (args, unsafe)


def test_c1_and_bidi_controls_are_escaped_in_every_json_output(
    sample_root: Path, truth: dict[str, Any]
) -> None:
    """The JSON outputs are printed to terminals too (``verify --format json`` before a pipe to
    jq): a hostile name is written with JSON escapes, the same value to a JSON reader."""
    s = SamplePaths(sample_root, truth)
    (sample_root / "overlay2" / f"orphan{UNSAFE}").mkdir()
    config = sample_root / "containers" / s.container_id("exited") / "config.v2.json"
    doc = json.loads(config.read_text())
    doc["Name"] = f"/named{UNSAFE}"
    config.write_text(json.dumps(doc))
    (sample_root / "overlay2" / s.mount_id("exited") / "diff" / f"added{UNSAFE}").write_text("x")
    for args, lines in (
        (["verify", sample_root, "--format", "json"], False),
        (["verify", sample_root, "--format", "jsonl"], True),
        (["inventory", sample_root, "--format", "json"], False),
        (
            ["inventory", sample_root, "--format", "json", "--container", s.container_id("exited")],
            False,
        ),
        (["timeline", sample_root, "--format", "jsonl"], True),
        (["repair", sample_root, "--dry-run", "--format", "json"], False),
        (["diff", s.container_id("exited"), sample_root, "--format", "json"], False),
    ):
        result = run_cli(*args)
        assert result.code in (0, 4), (args, result.stderr)
        unsafe = sorted({f"U+{ord(c):04X}" for c in result.stdout if c in UNSAFE_CODES})
        assert not unsafe, (args, unsafe)
        docs = (
            [json.loads(line) for line in result.stdout.splitlines()]
            if lines
            else [json.loads(result.stdout)]
        )
        as_value = json.dumps(UNSAFE, ensure_ascii=False)[1:-1]
        assert as_value in json.dumps(docs, ensure_ascii=False), (args, result.stdout[:2000])


def test_closed_stdout_keeps_the_exit_status_and_the_database(
    sample_root: Path, tmp_path: Path
) -> None:
    """``verify | head`` must still say 4 when there are errors, and still write --sqlite."""
    (sample_root / "overlay2" / ("e" * 64)).mkdir()
    exe = shutil.which("docker-forensics")
    assert exe
    out = tmp_path / "case.db"
    proc = subprocess.Popen(
        [exe, "verify", str(sample_root), "--format", "json", "--sqlite", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    proc.stdout.close()  # the reader goes away before anything is written
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 4, err
    assert b"Traceback" not in err
    assert out.read_bytes().startswith(b"SQLite format 3")


def test_startup_leaves_heavy_modules_for_the_commands_that_need_them() -> None:
    """numpy, construct and tqdm cost ~0.25 s to import: ``--version``, ``verify`` and
    ``inventory`` of a root without BuildKit or devicemapper must not pay for them."""
    code = (
        "import sys\n"
        "from forensics.cli import main\n"
        "try:\n"
        "    main(['--version'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = sorted(m for m in ('numpy', 'construct', 'tqdm') if m in sys.modules)\n"
        "print('heavy:' + ','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[-1] == "heavy:", out.stdout


def _diff_lines(root: Path, container: str) -> Result:
    return run_cli("diff", container, root)


def test_diff_without_container_says_so(sample_master: Path) -> None:
    """``diff ROOT`` forgets the container: not ``/var/lib/docker: no such file``."""
    for root in (str(sample_master), f"{sample_master}/", "."):
        result = run_cli("diff", root)
        assert result.code == 16 and result.stdout == ""
        assert "Missing argument 'CONTAINER'" in result.stderr
        assert "/var/lib/docker" not in result.stderr


def test_diff_of_a_namespaced_containerd_container_is_no_root(tmp_path: Path) -> None:
    """``diff k8s.io/ID`` names containerd's container in namespace k8s.io (ROOT left at its
    default): not a ROOT given in CONTAINER's place, unless a directory of that name exists."""
    result = run_cli("diff", "k8s.io/" + "a" * 64)
    assert result.code != 16 and "Missing argument" not in result.stderr, result.stderr
    (tmp_path / "k8s.io" / "x").mkdir(parents=True)
    here = subprocess.run(
        [sys.executable, "-m", "forensics", "diff", "k8s.io/x"],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert here.returncode == 16 and "Missing argument 'CONTAINER'" in here.stderr


def test_diff_finds_containers_as_docker_does(sample_root: Path, truth: dict[str, Any]) -> None:
    """A full id, a name with or without its slash, or a unique prefix of any length; a name
    before a prefix; docker's own words when none or several match."""
    ids = sorted(c["Id"] for c in truth["inspect_containers"])
    s = SamplePaths(sample_root, truth)
    exited = s.container_id("exited")
    expected = _diff_lines(sample_root, exited)
    assert expected.code == 0 and expected.stdout
    shortest = next(n for n in range(1, 65) if sum(o.startswith(exited[:n]) for o in ids) == 1)
    for wanted in ("exited", "/exited", exited[:shortest], exited[:12]):
        assert _diff_lines(sample_root, wanted).stdout == expected.stdout, wanted
    shared = next(cid[:1] for cid in ids if sum(o.startswith(cid[:1]) for o in ids) > 1)
    for wanted, message in (
        (shared, f"multiple IDs found with provided prefix: {shared}"),
        ("nothing-here", "No such container: nothing-here"),
        ("", "invalid container name or ID: value is empty"),
    ):
        result = _diff_lines(sample_root, wanted)
        assert (result.code, result.stdout) == (16, ""), wanted
        assert result.stderr == f"docker-forensics: {message}\n"
    # a container named like the prefix of another's id is found by its name
    other = next(cid for cid in ids if cid != exited)
    config = sample_root / "containers" / exited / "config.v2.json"
    doc = json.loads(config.read_text())
    doc["Name"] = f"/{other[:3]}"
    config.write_text(json.dumps(doc))
    assert _diff_lines(sample_root, other[:3]).stdout == expected.stdout
