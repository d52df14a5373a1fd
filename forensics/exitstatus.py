"""The exit statuses of a run, e2fsck's: what each command returns, and what the SQLite
export records as a run's ``exit_status``."""

from __future__ import annotations

#: nothing found (or nothing to do)
EXIT_OK = 0
#: repaired (or undone)
EXIT_REPAIRED = 1
#: errors found (``repair``: errors left)
EXIT_ERRORS = 4
#: an operational error: the run could not be done
EXIT_OPERATIONAL = 8
#: a usage error
EXIT_USAGE = 16
#: interrupted (Ctrl-C)
EXIT_INTERRUPTED = 32
