"""The README's synopsis names what the commands take: every option of every command (a new
option fails here until the README shows it) and every ``thin`` subcommand."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from test_manpages import COMMANDS, PROG, VERBS, command_options, mentions

README = Path(__file__).resolve().parent.parent / "README.md"
#: options every command takes, said once in the README's text rather than on each line
GLOBAL = {"-h", "--help", "--no-progress"}


def synopsis_by_verb() -> dict[str, str]:
    """The README's synopsis block (the first fenced block, a line per form of a command and
    its continuation lines), joined per command."""
    block = re.search(r"```\n(.*?)\n```", README.read_text(), re.S)
    assert block is not None
    by_verb: dict[str, str] = {}
    verb = ""
    for line in block.group(1).splitlines():
        words = line.split()
        if words and words[0] == PROG:
            verb = words[1]
            line = " ".join(words[2:])
        by_verb[verb] = f"{by_verb.get(verb, '')} {line}"
    return by_verb


def options_of(verb: str) -> dict[str, tuple[str, ...]]:
    """The options of ``verb`` shown to users, each by its longest name with all its names."""
    options: dict[str, tuple[str, ...]] = {}
    for param in {id(p): p for p in command_options(verb).values()}.values():
        names = (*param.opts, *param.secondary_opts)
        if not param.hidden and not GLOBAL.intersection(names):
            options[max(names, key=len)] = names
    return options


@pytest.mark.parametrize(
    ("verb", "option"),
    [(verb, option) for verb in VERBS if verb != "thin" for option in options_of(verb)],
)
def test_every_option_of_a_command_is_in_the_readme_synopsis(verb: str, option: str) -> None:
    synopsis = synopsis_by_verb()
    assert verb in synopsis, f"the README's synopsis has no line for {verb}"
    names = options_of(verb)[option]
    assert any(mentions(synopsis[verb], name) for name in names), (
        f"{verb} {option} is not in the README's synopsis"
    )


def test_every_thin_subcommand_is_in_the_readme_synopsis() -> None:
    thin = COMMANDS["thin"]
    assert isinstance(thin, click.Group)
    named = set(synopsis_by_verb()["thin"].split()[0].split("|"))
    assert named == set(thin.list_commands(click.Context(thin))), named
