"""The two catalogues of checks (verify's, thin check's) are one kind of thing, and a check id
that neither holds fails loudly wherever code names it: a misspelt id must never find nothing,
and so plan nothing, without a word."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import forensics
from forensics.catalog import Catalog, Check, FindingsByCheck, UnknownCheck
from forensics.checks import run_checks
from forensics.checks.cascade import FindingIndex
from forensics.checks.catalog import CHECKS
from forensics.evidence import Evidence
from forensics.repair import plan_overlay2
from forensics.repair.plan import make_plan
from forensics.repair.plan_containerd import ContainerdPlanner
from forensics.repair.planbase import PlannerBase
from forensics.stores import read_host
from forensics.thin.findings import CHECKS as THIN_CHECKS
from forensics.thin.findings import Findings

PACKAGE = Path(forensics.__file__).resolve().parent
CHECK_ID = re.compile(r"[a-z0-9]+(\.[a-z0-9-]+)+")
ORPHAN = "e" * 64


def test_both_catalogues_are_catalogs_of_well_formed_ids() -> None:
    for catalog in (CHECKS, THIN_CHECKS):
        assert isinstance(catalog, Catalog)
        assert len(catalog) > 40
        for check_id, check in catalog.items():
            assert check.id == check_id and CHECK_ID.fullmatch(check_id), check_id
            assert check.summary and check.summary == check.summary.strip()


def test_a_catalogue_refuses_an_id_twice_and_an_unknown_severity() -> None:
    with pytest.raises(ValueError, match="declared twice"):
        Catalog("t", [Check("a.b", "error", "one"), Check("a.b", "warning", "two")])
    with pytest.raises(ValueError, match="no severity"):
        Catalog("t", [Check("a.b", "fatal", "one")])


@pytest.mark.parametrize("catalog", [CHECKS, THIN_CHECKS], ids=["verify", "thin"])
def test_a_misspelt_id_is_no_check(catalog: Catalog) -> None:
    with pytest.raises(UnknownCheck, match="'layer.cache-id-mising' is no check of the"):
        catalog["layer.cache-id-mising"]
    assert "layer.cache-id-mising" not in catalog


def test_thin_findings_refuse_an_unknown_id() -> None:
    found = Findings()
    found.add("node.checksum", 3, "bad")
    with pytest.raises(UnknownCheck):
        found.add("node.check-sum", 3, "bad")
    assert [f.severity for f in found] == ["error"]


def _orphaned(sample_root: Path) -> tuple[Evidence, list]:
    """The sample with an overlay2 directory that no layer owns (driver.orphan-dir)."""
    (sample_root / "overlay2" / ORPHAN / "diff").mkdir(parents=True)
    ev = Evidence(sample_root)
    host = read_host(ev)
    return ev, [host, run_checks(host)]


def test_findings_by_check_fail_loudly_on_a_misspelt_id(sample_root: Path) -> None:
    ev, (host, findings) = _orphaned(sample_root)
    by_check = PlannerBase(ev, host, findings).by_check
    assert isinstance(by_check, FindingsByCheck)
    assert [f.object_id for f in by_check["driver.orphan-dir"]] == [ORPHAN]
    assert by_check["layer.empty-dir"] == []  # a check of the catalogue, with no finding
    with pytest.raises(UnknownCheck, match="driver.orphan-dirs"):
        by_check["driver.orphan-dirs"]
    index = FindingIndex(findings)
    assert [f.object_id for f in index.of("driver.orphan-dir")] == [ORPHAN]
    for lookup in (
        lambda: index.of("driver.orphan-dirs"),
        lambda: index.about("driver.orphan-dirs", ORPHAN),
        lambda: index.first(["layer.empty-dir", "driver.orphan-dirs"], ORPHAN),
    ):
        with pytest.raises(UnknownCheck):
            lookup()


def test_a_planning_rule_with_a_misspelt_id_stops_the_plan(
    sample_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, a rule that looked for ``overlay2.link-mising`` found nothing and the plan went
    on without that repair; now the plan stops on it."""
    ev, (host, findings) = _orphaned(sample_root)
    assert make_plan(ev, host, findings).actions  # the orphan is quarantined
    monkeypatch.setattr(plan_overlay2, "LINK_FILE_CHECKS", ("overlay2.link-mising",))
    with pytest.raises(UnknownCheck, match="overlay2.link-mising"):
        make_plan(ev, host, findings)


# -- every id the code names is in its catalogue (read from the source) -----------------------


def _ids_named(tree: ast.AST, thin: bool) -> set[str]:
    """String literals that name a check: ``by_check["…"]``, ``finding("…")``, ``.of("…")``,
    ``.about("…")``, thin's ``found.add("…", block, message)``, and the strings of module
    constants named ``*CHECKS`` or ``*CAUSES``."""
    named: set[str] = set()

    def literal(node: ast.AST) -> None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            named.add(node.value)

    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute):
            if node.value.attr == "by_check":
                literal(node.slice)
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if name == "finding" or name == "about":
                literal(node.args[0])
            elif name == "of":
                for arg in node.args:
                    literal(arg)
            elif thin and name == "add" and len(node.args) == 3:
                literal(node.args[0])
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id.endswith(("CHECKS", "CAUSES")):
                if target.id not in ("CHECKS", "_CHECKS"):
                    for sub in ast.walk(node.value):
                        if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                            if CHECK_ID.fullmatch(sub.value):
                                named.add(sub.value)
    return named


def test_every_check_id_named_in_the_code_is_in_its_catalogue() -> None:
    unknown = []
    seen = 0
    for path in sorted(PACKAGE.rglob("*.py")):
        thin = path.is_relative_to(PACKAGE / "thin")
        catalog = THIN_CHECKS if thin else CHECKS
        named = _ids_named(ast.parse(path.read_text(), str(path)), thin)
        seen += len(named)
        unknown += [f"{path.relative_to(PACKAGE)}: {n}" for n in sorted(named) if n not in catalog]
    assert seen > 100
    assert unknown == []


def test_the_containerd_planner_fails_loudly_on_a_misspelt_id(containerd_root: Path) -> None:
    """Its findings by check were a plain ``defaultdict``: ``containerd.ingest-leftovr`` found
    nothing and planned nothing, without a word."""
    ev = Evidence(containerd_root)
    host = read_host(ev)
    assert host.containerd is not None
    planner = ContainerdPlanner(ev, host.containerd, run_checks(host))
    assert isinstance(planner.by_check, FindingsByCheck)
    assert planner.by_check["containerd.ingest-leftover"] == []  # the sample holds none
    with pytest.raises(UnknownCheck, match="containerd.ingest-leftovr"):
        planner.by_check["containerd.ingest-leftovr"]
