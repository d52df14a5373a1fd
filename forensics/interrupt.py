"""Ctrl-C while the program starts: exit 32 (interrupted), never a ``KeyboardInterrupt`` trace.

Importing the command line and what it needs takes a good part of a second on a slow machine,
and until :func:`forensics.cli.main` has entered its ``try`` nothing would catch the
``KeyboardInterrupt`` that Python raises for SIGINT. This module is imported first by
:mod:`forensics.cli`: from then on, SIGINT ends the process at once with the documented status
(there is nothing to clean up yet). ``main`` hands SIGINT back to Python with
:func:`python_handles_interrupts` as soon as it can catch the exception, so that a command that
is interrupted while it works still ends through its own cleanup.

Only Python's default handler is replaced, and only in the main thread: a program that set its
own handler keeps it.
"""

from __future__ import annotations

import os
import signal
from types import FrameType

#: the exit status of an interrupted run (e2fsck's); the same as exitstatus.EXIT_INTERRUPTED,
#: written out here so that nothing else need be imported first
EXIT_INTERRUPTED = 32
_MESSAGE = b"docker-forensics: interrupted\n"


def _exit_interrupted(signum: int, frame: FrameType | None) -> None:
    os.write(2, _MESSAGE)
    os._exit(EXIT_INTERRUPTED)


def _install() -> None:
    try:
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, _exit_interrupted)
    except ValueError:  # not the main thread: signals are not ours to handle
        pass


def python_handles_interrupts() -> None:
    """SIGINT raises ``KeyboardInterrupt`` again (where the caller is ready to catch it)."""
    try:
        if signal.getsignal(signal.SIGINT) is _exit_interrupted:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:
        pass


_install()
