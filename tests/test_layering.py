"""The layering of DESIGN.md, pinned: which of our packages may import which.

The line that matters most: the harness (and what stands on it: scenarios, load tests,
the simulator) judges a marketplace from outside, so it never imports one. Every
import counts, inside functions and under TYPE_CHECKING too.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# package (or module path prefix) -> the module prefixes of ours it may import
ALLOWED: dict[str, tuple[str, ...]] = {
    "escrow_protocol": (),
    "regtest_cluster": (),
    "reference_app": ("escrow_protocol", "regtest_cluster.nodes"),
    "harness": ("escrow_protocol", "regtest_cluster"),
    "scenarios": ("harness", "escrow_protocol", "regtest_cluster"),
    "loadtests": ("harness", "escrow_protocol", "regtest_cluster", "reports"),
    "simulator": ("harness", "escrow_protocol", "regtest_cluster", "scenarios"),
    "reports": ("harness.oracle",),  # the oracle's invariant names are the reports' result types
    # the example marketplace knows only the protocol; its driver is harness code
    "examples.minimarket.driver": ("harness", "escrow_protocol", "regtest_cluster", "examples"),
    "examples": ("escrow_protocol", "examples"),
    "bench": ("bench", "harness", "escrow_protocol", "regtest_cluster", "reference_app", "reports", "scenarios",
              "simulator", "loadtests"),
}
OURS = ("escrow_protocol", "regtest_cluster", "reference_app", "harness", "scenarios", "loadtests", "simulator",
        "reports", "examples", "bench", "escrowlab", "tests")


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in the tree, relative ones resolved."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[:len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((node.lineno, target))
    return out


def rule_for(module: str) -> tuple[str, tuple[str, ...]] | None:
    """The most specific rule whose prefix names this module."""
    matches = [p for p in ALLOWED if module == p or module.startswith(p + ".")]
    return (max(matches, key=len), ALLOWED[max(matches, key=len)]) if matches else None


def violations(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        if any(part.startswith(".") or part in ("tests", "node_modules") for part in path.relative_to(root).parts):
            continue
        module = module_name(root, path)
        rule = rule_for(module)
        if rule is None:
            continue
        own, allowed = rule
        for line, target in imported(ast.parse(path.read_text(), str(path)), module, path.name == "__init__.py"):
            top = target.split(".")[0]
            if top not in OURS or top == module.split(".")[0]:
                continue  # a library, or its own package
            if not any(target == a or target.startswith(a + ".") for a in allowed):
                found.append(f"{path.relative_to(root)}:{line}: {module} imports {target} "
                             f"({own} may import {', '.join(allowed) or 'nothing of ours'})")
    return found


def test_the_layers_import_only_what_design_allows():
    assert violations(ROOT) == []


def test_a_forbidden_import_is_caught(tmp_path):
    (tmp_path / "harness").mkdir()
    (tmp_path / "harness" / "__init__.py").write_text("")
    (tmp_path / "harness" / "oracle.py").write_text(
        "from escrow_protocol import states\n\ndef peek():\n    from reference_app.services import orders\n")
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "__init__.py").write_text("from ..harness import oracle\nimport reference_app.main\n")
    found = violations(tmp_path)
    assert [f.split(": ")[1].split(" (")[0] for f in found] == ["harness.oracle imports reference_app.services",
                                                 "scenarios imports reference_app.main"], found


def test_the_harness_speaks_to_marketplaces_only_through_drivers():
    """No HTTP path of the reference app outside its driver: the catalogue, oracle, load
    oracle and live simulator act through ``Marketplace`` verbs."""
    paths = ("'/orders", '"/orders', "'/me", '"/me', "'/admin", '"/admin', "'/wallet", '"/wallet',
             'f"/orders', "f'/orders", 'f"/admin', 'f"/me')
    offenders = []
    for package in ("harness", "scenarios", "simulator"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.relative_to(ROOT).as_posix() == "harness/http.py":
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if any(p in line for p in paths):
                    offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert offenders == []
