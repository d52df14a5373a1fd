"""The library behind each command: one function per verb, each returning a typed result.

:mod:`forensics.cli` turns a command line into one of these calls and renders what it returns;
a program or a test calls them the same way::

    from forensics.api.verify import verify

    result = verify("/mnt/evidence/var/lib/docker", deep=True)
    errors = [f for f in result.findings if f.severity == "error"]

No module here imports click, prints, or exits: failures are raised as the errors of
:mod:`forensics.errors`, and warnings met on the way go to a ``notify`` callable when one is
given (and into the result). Each verb has its module (``inventory``, ``verify``, ``diff``,
``timeline``, ``repair``, ``thin``), imported on its own so that a command loads only what it
needs.
"""
