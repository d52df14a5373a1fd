"""The shape of the package that its layers rely on: the library imports no click (only
forensics/cli/ does), every error the library raises is of the one family of
:mod:`forensics.errors`, under a name no other error class has."""

from __future__ import annotations

import ast
import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import forensics
from forensics.errors import ForensicsError

PACKAGE = Path(forensics.__file__).resolve().parent
#: the modules that may import click: the command line, and what starts it
COMMAND_LINE = ("forensics.cli", "forensics.__main__")
#: error classes outside the family, and why
OUTSIDE_THE_FAMILY = {
    # a helper process failed: its trace is a bug of the helper, shown as an internal error
    "forensics.parallel.WorkerError",
    # a check id that no catalogue holds: a bug of the code that names it
    "forensics.catalog.UnknownCheck",
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _library_modules() -> list[str]:
    """Every module of the package but the command line's, found on disk (pkgutil's walk
    would import each package on its way, forensics.cli included)."""
    names = {_module_name(path) for path in PACKAGE.rglob("*.py")}
    return sorted(name for name in names if not name.startswith(COMMAND_LINE))


def _imported_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_no_module_outside_the_command_line_imports_click() -> None:
    """Read from the source: not even a function of the library imports click or the command
    line (which would bring click)."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        if module.startswith(COMMAND_LINE):
            continue
        for name in _imported_names(path):
            if name == "click" or name.startswith(("click.", "forensics.cli")):
                offenders.append(f"{module} imports {name}")
    assert not offenders


#: run in a process of its own: imports the verbs' library, then every other module, and says
#: what loaded click (the module whose import statement first asked for it)
_IMPORT_PROBE = """
import importlib, sys

class Probe:
    importer = None

    def find_spec(self, name, path=None, target=None):
        if name == "click" and Probe.importer is None:
            frame = sys._getframe(1)
            while frame.f_code.co_filename.startswith("<frozen"):
                frame = frame.f_back
            Probe.importer = frame.f_globals.get("__name__")
        return None

sys.meta_path.insert(0, Probe())
for name in sys.argv[1].split():
    importlib.import_module(name)
print("after the library:", "click" in sys.modules)
for name in sys.argv[2].split():
    importlib.import_module(name)
print("click loaded by:", Probe.importer)
"""


def test_importing_the_library_does_not_load_click() -> None:
    """The verbs' library (forensics.api.*) loads without click. The other modules load click
    only through sqlite-utils (which the export writes with, and which imports it itself)."""
    modules = _library_modules()
    api = [name for name in modules if name.startswith("forensics.api")]
    assert "forensics.api.verify" in api and "forensics.api.thin" in api
    others = [name for name in modules if name not in api]
    out = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE, " ".join(api), " ".join(others)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    said = out.stdout.splitlines()
    assert said[0] == "after the library: False"
    assert said[1].startswith("click loaded by: sqlite_utils."), said


def _error_classes() -> list[type[BaseException]]:
    found = []
    for name in _library_modules():
        module = importlib.import_module(name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == name:
                found.append(value)
    return found


def test_every_error_of_the_library_is_of_the_family() -> None:
    """Damage, an operational failure or a usage error: each maps to its exit status at the
    edge (forensics.cli.common), and none is left to be reported as an internal error."""
    outside = {
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in _error_classes()
        if not issubclass(cls, ForensicsError)
    }
    assert outside == OUTSIDE_THE_FAMILY


def test_no_two_error_classes_share_a_name() -> None:
    """Two ``RepairError`` s (or ``UnsafePath`` s) read alike in an ``except`` and are not."""
    seen: dict[str, list[str]] = {}
    for cls in _error_classes():
        seen.setdefault(cls.__qualname__, []).append(cls.__module__)
    assert {name: where for name, where in seen.items() if len(where) > 1} == {}


#: modules that need one helper of a heavier package, and must not load the rest of it
LIGHT_IMPORTS = {
    # the timeline shortens ids; importing forensics.checks.common loaded every rule
    "forensics.timeline": "forensics.checks",
}


def test_a_module_loads_only_what_it_needs() -> None:
    for module, heavy in LIGHT_IMPORTS.items():
        probe = f"import sys, {module}; print(sorted(m for m in sys.modules if m == {heavy!r} "
        probe += f"or m.startswith({heavy + '.'!r})))"
        out = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "[]", (module, out.stdout)


#: what the command line may import of the library besides forensics.api: the renderers of what
#: the api returns, the error family and exit statuses, and the switches of the process
#: (progress bars, interrupts); nothing that reads, judges or changes a root
RENDERING = {
    "forensics.errors",
    "forensics.exitstatus",
    "forensics.interrupt",
    "forensics.progress",
    "forensics.terminal",
    "forensics.jsonstream",
    "forensics.report",
    "forensics.textreport",
    "forensics.psview",
    "forensics.inventory",
    "forensics.timeline",
    "forensics.thin.check",
    "forensics.thin.ls",
    "forensics.thin.files",
}


def _runtime_imports(path: Path) -> set[str]:
    """The forensics modules ``path`` imports when it runs (``if TYPE_CHECKING:`` aside)."""
    tree = ast.parse(path.read_text(), str(path))
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
        for stmt in node.body
        for inner in ast.walk(stmt)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.update(
                _module_of(f"{node.module}.{alias.name}", node.module) for alias in node.names
            )
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("forensics.")}


def _module_of(name: str, parent: str) -> str:
    """``name`` when it is a module of the package (``from forensics import textreport``),
    else ``parent`` (``from forensics.report import to_json``)."""
    path = PACKAGE.parent.joinpath(*name.split("."))
    return name if path.with_suffix(".py").exists() or (path / "__init__.py").exists() else parent


def test_the_command_line_calls_the_api_and_renders() -> None:
    """A command parses, calls one function of forensics.api and renders what it returns: it
    imports nothing that reads, judges or changes a root (stores, checks, layers, repair,
    evidence, …); that work is the api's, where tests and programs call it too."""
    offenders = []
    for path in sorted((PACKAGE / "cli").glob("*.py")):
        for name in _runtime_imports(path):
            if name.startswith(("forensics.api", "forensics.cli")) or name in RENDERING:
                continue
            offenders.append(f"forensics/cli/{path.name} imports {name}")
    assert offenders == []
    assert _runtime_imports(PACKAGE / "cli" / "verify.py") >= {"forensics.api.verify"}


def _attribute_uses(path: Path) -> set[str]:
    """``Name.attr`` and ``Name(`` as the source spells them."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            found.add(f"{node.value.id}.{node.attr}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            found.add(f"{node.func.id}(")
    return found


def test_a_btree_nodes_rules_have_one_home() -> None:
    """thin/node.py alone makes a node rule or names a way a node breaks one: elsewhere a node
    is sound (``NodeError.NONE``) or not, as node.py judged it."""
    home = PACKAGE / "thin" / "node.py"
    assert {"NodeRule(", "NodeError.CHECKSUM", "NodeError.MAX_ENTRIES"} <= _attribute_uses(home)
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == home:
            continue
        for use in _attribute_uses(path):
            if use == "NodeRule(" or (use.startswith("NodeError.") and use != "NodeError.NONE"):
                offenders.append(f"{path.relative_to(PACKAGE)}: {use}")
    assert offenders == []
