"""docs/ARCHITECTURE.md names every folder of the package: a newcomer looks a folder up there
before a change, and a new folder is described when it is made."""

from __future__ import annotations

from pathlib import Path

import forensics

PACKAGE = Path(forensics.__file__).resolve().parent
REPO = PACKAGE.parent
NOTE = REPO / "docs" / "ARCHITECTURE.md"


def _folders() -> list[str]:
    return sorted(
        f"forensics/{path.relative_to(PACKAGE).as_posix()}/"
        for path in PACKAGE.rglob("*")
        if path.is_dir() and any(path.glob("*.py"))
    )


def test_every_folder_of_the_package_is_named_in_the_architecture_note() -> None:
    text = NOTE.read_text()
    folders = _folders()
    assert "forensics/cli/" in folders and "forensics/thin/salvage/" in folders
    assert [f for f in folders if f"`{f}`" not in text] == []


def test_the_readme_points_to_the_note() -> None:
    assert "docs/ARCHITECTURE.md" in (REPO / "README.md").read_text()
