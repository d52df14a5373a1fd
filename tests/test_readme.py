"""The README's first command does what the README says: after the install, the bundled sample
verified straight from its archive, from the checkout's top directory."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

from conftest import SAMPLES

README = Path(__file__).resolve().parent.parent / "README.md"


def first_command() -> str:
    """The first command of the "Try it" section (its first fenced block)."""
    text = README.read_text()
    section = text[text.index("## Try it") :]
    block = re.search(r"```\n(.*?)\n```", section, re.S)
    assert block is not None
    return block.group(1).strip()


def test_first_command_installs_then_verifies_the_sample_archive() -> None:
    install, _, run = first_command().partition(" && ")
    assert install == "python3 -m pip install ."  # the tests run with the package installed
    assert run == "docker-forensics verify samples/modern-overlay2.tar.gz"
    done = subprocess.run(
        shlex.split(run), cwd=SAMPLES.parent, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "reading the Docker root /docker of the archive" in done.stderr
    assert "0 errors, 0 warnings" in done.stdout
