"""The package's shape: no import cycle, lower modules never import higher ones, short
functions, Captum's private names in one module."""

from __future__ import annotations

import ast
import importlib
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

import captum_groups

PACKAGE = Path(captum_groups.__file__).parent
ROOT = PACKAGE.parent

MODULES = sorted(
    ["captum_groups"]
    + [m.name for m in pkgutil.walk_packages([str(PACKAGE)], prefix="captum_groups.")]
)


def _source(module: str) -> tuple[Path, ast.Module]:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None
    path = Path(spec.origin)
    return path, ast.parse(path.read_text(), str(path))


def _under_type_checking(tree: ast.Module) -> set[int]:
    """Line numbers inside ``if TYPE_CHECKING:`` blocks (imports for annotations only)."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def _imports(module: str, top_level_only: bool = False) -> set[str]:
    """The package modules that ``module`` imports: at any depth (lazy imports count), or
    only at module level; imports for type checking excluded."""
    path, tree = _source(module)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    skipped = _under_type_checking(tree)
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if not isinstance(node, (ast.Import, ast.ImportFrom)) or node.lineno in skipped:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        found.update(t for t in targets if t in MODULES)
    return found


def test_the_package_has_no_import_cycle_not_even_a_lazy_one():
    graph = nx.DiGraph()
    for module in MODULES:
        graph.add_node(module)
        graph.add_edges_from((module, imported) for imported in _imports(module))
    assert list(nx.simple_cycles(graph)) == []


IMPORT_EACH_ALONE = """
import importlib, os, sys, traceback
import captum.attr, lucent.optvis.render, matplotlib, networkx, scipy, sklearn.cluster, torch
failed = []
for module in sys.argv[1:]:
    child = os.fork()
    if child == 0:
        try:
            importlib.import_module(module)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    if os.waitpid(child, 0)[1] != 0:
        failed.append(module)
print("failed:", failed)
"""


def test_every_module_imports_alone_in_a_fresh_interpreter():
    """Each module is the first of the package to be imported, in its own process: a child
    forked from a fresh interpreter that has loaded the third-party libraries only."""
    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork")
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_EACH_ALONE, *MODULES],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "failed: []", result.stdout + result.stderr


LAYERS = {
    # a module family, and the families it must never import (at any depth)
    "captum_groups._validation.errors": ("captum_groups.",),
    "captum_groups._validation.schemas": ("captum_groups.",),
    "captum_groups.groups": ("captum_groups.",),
    "captum_groups._model.captum": ("captum_groups.",),
    "captum_groups.data": ("captum_groups.",),
    "captum_groups._validation": ("captum_groups.attr", "captum_groups.circuits"),
    "captum_groups._io": ("captum_groups.",),
    "captum_groups._model.guards": ("captum_groups.",),
    "captum_groups._model": (
        "captum_groups.attr",
        "captum_groups.circuits",
        "captum_groups.discovery",
    ),
    "captum_groups.attr": (
        "captum_groups.circuits",
        "captum_groups.report",
        "captum_groups.viz",
        "captum_groups.labeling",
        "captum_groups.cli",
    ),
    "captum_groups.discovery": (
        "captum_groups.circuits",
        "captum_groups.report",
        "captum_groups.viz",
        "captum_groups.labeling",
    ),
    "captum_groups.viz": (
        "captum_groups.circuits",
        "captum_groups.report",
        "captum_groups.labeling",
    ),
    "captum_groups.circuits": (
        "captum_groups.report",
        "captum_groups.cli",
        "captum_groups.distributed",
    ),
    "captum_groups.distributed": ("captum_groups.report", "captum_groups.cli"),
    "captum_groups.transformers": (
        "captum_groups.circuits",
        "captum_groups.report",
        "captum_groups.cli",
        "captum_groups.distributed",
        "captum_groups.labeling",
        "captum_groups.viz",
        "captum_groups.neuro",
        "captum_groups.discovery",
    ),
    "captum_groups.patching": (
        "captum_groups.circuits",
        "captum_groups.report",
        "captum_groups.cli",
    ),
    "captum_groups.neuro": (
        "captum_groups.circuits",
        "captum_groups.report",
        "captum_groups.cli",
        "captum_groups.distributed",
        "captum_groups.labeling",
        "captum_groups.viz",
    ),
}


BELOW_EVERYTHING = {
    "captum_groups._validation",  # the subpackages themselves hold only a docstring
    "captum_groups._io",
    "captum_groups._model",
    "captum_groups._validation.errors",
    "captum_groups._validation.schemas",
}
"""Modules every module may import: they import nothing of the package but the errors."""


@pytest.mark.parametrize("family", sorted(LAYERS))
def test_lower_modules_never_import_higher_ones(family):
    members = [m for m in MODULES if m == family or m.startswith(family + ".")]
    assert members
    for module in members:
        for imported in _imports(module):
            forbidden = [
                prefix
                for prefix in LAYERS[family]
                if imported.startswith(prefix)
                and not imported.startswith(family)
                and imported not in BELOW_EVERYTHING
            ]
            assert not forbidden, f"{module} imports {imported}"


CLI_MAY_IMPORT_PRIVATE = {"captum_groups._validation.settings", "captum_groups._validation.checks"}
"""The settings the command line maps its options onto, and the checks they are declared with."""


def test_the_cli_imports_nothing_private_from_outside_its_package_beyond_the_settings():
    for module in [m for m in MODULES if m.startswith("captum_groups.cli")]:
        for imported in _imports(module):
            if imported.startswith("captum_groups.cli") or imported in CLI_MAY_IMPORT_PRIVATE:
                continue
            private = [part for part in imported.split(".") if part.startswith("_")]
            assert not private, f"{module} imports {imported}"


def test_circuits_never_import_viz_at_module_level():
    for module in [m for m in MODULES if m.startswith("captum_groups.circuits")]:
        assert not [m for m in _imports(module, top_level_only=True) if ".viz" in m], module


LONGEST = 60


def _code_lines(function: ast.FunctionDef | ast.AsyncFunctionDef, lines: list[str]) -> int:
    """Lines of code of a function: decorators and signature included; its docstring, blank
    lines and comment lines not."""
    body = function.body
    docstring: set[int] = set()
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        if isinstance(body[0].value.value, str):
            docstring = set(range(body[0].lineno, (body[0].end_lineno or 0) + 1))
    start = min([d.lineno for d in function.decorator_list] + [function.lineno])
    return sum(
        1
        for number in range(start, (function.end_lineno or start) + 1)
        if number not in docstring
        and lines[number - 1].strip()
        and not lines[number - 1].strip().startswith("#")
    )


def test_no_function_is_over_60_lines_of_code():
    lengths = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        text = path.read_text()
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lengths[f"{relative}:{node.lineno} {node.name}"] = _code_lines(node, lines)
    longest = max(lengths, key=lengths.get)
    assert lengths[longest] <= LONGEST, f"{longest} has {lengths[longest]} lines of code"


LONGEST_MODULE = 600


def test_no_module_is_over_600_lines():
    """A module holds one job; past 600 lines it holds several (split it by job)."""
    lengths = {
        path.relative_to(ROOT).as_posix(): len(path.read_text().splitlines())
        for path in PACKAGE.rglob("*.py")
    }
    longest = max(lengths, key=lengths.get)
    assert lengths[longest] <= LONGEST_MODULE, f"{longest} has {lengths[longest]} lines"


def test_code_line_count_leaves_out_docstrings_and_comments():
    source = (
        "@decorator\n"
        "def f(a,\n"
        "      b):\n"
        '    """Doc.\n'
        "\n"
        '    More doc."""\n'
        "    # a comment\n"
        "\n"
        "    return a + b\n"
    )
    (function,) = ast.parse(source).body
    assert _code_lines(function, source.splitlines()) == 4


def _private_captum_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "captum":
            private_path = any(part.startswith("_") for part in node.module.split("."))
            private_names = [a.name for a in node.names if a.name.startswith("_")]
            if private_path or private_names:
                found.append(f"{path.name}:{node.lineno} from {node.module}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "captum" and any(p.startswith("_") for p in parts):
                    found.append(f"{path.name}:{node.lineno} import {alias.name}")
    return found


def test_captum_private_names_are_imported_in_one_module_only():
    sources = [*PACKAGE.rglob("*.py"), *(ROOT / "tests").glob("*.py")]
    sources += [*(ROOT / "benchmarks").glob("*.py")]
    offenders = {
        str(path.relative_to(ROOT)): _private_captum_imports(path)
        for path in sources
        if path != PACKAGE / "_model" / "captum.py" and _private_captum_imports(path)
    }
    assert offenders == {}
    assert _private_captum_imports(PACKAGE / "_model" / "captum.py")  # the one place
