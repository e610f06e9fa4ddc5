"""The suite's own layout: what tests share lives in tests/support, never in a test module;
markers come from the directory (tests/conftest.py); no fixture hides another of its name.
That no test writes a tracked file is checked by every run (tests/conftest.py)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent


def python_files() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if "__pycache__" not in p.parts)


def imported_modules(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_no_test_module_imports_another_test_module():
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            m for m in imported_modules(ast.parse(path.read_text()))
            if m.startswith("tests.") and m.rsplit(".", 1)[-1].startswith(("test_", "conftest"))
        )
        for path in python_files()
    }  # fmt: skip
    assert {path: found for path, found in offenders.items() if found} == {}


def test_markers_come_from_the_directory_not_from_each_file():
    marking = [
        str(path.relative_to(ROOT))
        for path in python_files()
        if any(
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets)
            for node in ast.parse(path.read_text()).body
        )
    ]
    assert marking == []


def fixtures_of(path: Path) -> set[str]:
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef):
            for decorator in node.decorator_list:
                if ast.unparse(decorator).startswith("pytest.fixture"):
                    call = decorator if isinstance(decorator, ast.Call) else None
                    named = [k.value for k in (call.keywords if call else []) if k.arg == "name"]
                    names.add(ast.literal_eval(named[0]) if named else node.name)
    return names


def test_no_fixture_shadows_one_of_a_conftest_above_it():
    conftests = {p.parent: fixtures_of(p) for p in python_files() if p.name == "conftest.py"}
    shadowing: defaultdict[str, list[str]] = defaultdict(list)
    for path in python_files():
        # A conftest is shadowed by the modules beside and below it and by conftests below.
        above = [d for d in conftests if d in path.parents and d != path.parent] + (
            [path.parent] if path.parent in conftests and path.name != "conftest.py" else []
        )
        for name in fixtures_of(path):
            if any(name in conftests[d] for d in above):
                shadowing[str(path.relative_to(ROOT))].append(name)
    assert dict(shadowing) == {}
