"""What standard output can show: colour and width when it is a terminal, nothing off one.

Colour follows https://no-color.org: never when ``NO_COLOR`` is set to anything but the empty
string, nor when ``TERM`` is ``dumb``. Lines are fitted to the terminal's width by wrapping
(never cut: a path or a message is evidence), continued under an indent.
"""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
from dataclasses import dataclass

_RESET = "\x1b[0m"
#: SGR codes of the styles the reports use
_STYLES = {
    "error": "1;31",  # bold red
    "warning": "1;33",  # bold yellow
    "info": "1;34",  # bold blue
    "heading": "1",  # bold
    "dim": "2",
}


@dataclass(frozen=True)
class Terminal:
    """How to write for standard output: ``colour`` on or off, ``width`` in columns (None:
    no terminal, lines are left as they are)."""

    colour: bool = False
    width: int | None = None

    @classmethod
    def of_stdout(cls) -> Terminal:
        try:
            tty = sys.stdout.isatty()
        except (AttributeError, ValueError):  # replaced or closed
            tty = False
        if not tty:
            return cls()
        colour = not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
        return cls(colour, max(40, shutil.get_terminal_size().columns))

    def style(self, text: str, style: str) -> str:
        if not self.colour or not text:
            return text
        return f"\x1b[{_STYLES[style]}m{text}{_RESET}"

    def fit(self, text: str, indent: int, hanging: int) -> list[str]:
        """``text`` indented by ``indent`` spaces, wrapped to the width with continuation lines
        indented by ``hanging`` more; one line off a terminal."""
        first = " " * indent
        if self.width is None or len(first) + len(text) <= self.width:
            return [first + text]
        return textwrap.wrap(
            text,
            width=self.width,
            initial_indent=first,
            subsequent_indent=" " * (indent + hanging),
            break_on_hyphens=False,
        )
