"""The one-direction rule as `lint-imports` keeps it (pyproject.toml `[tool.importlinter]`):
the real tree keeps every contract, and a copy of it with one forbidden import added fails,
naming the contract and the import."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
CONTRACTS = {contract["name"] for contract in CONFIG["contracts"]}
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(where: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` as `make lint` runs it, on the packages under `where`."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=where,
        env={**os.environ, "PYTHONPATH": str(where), "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def copy_of_the_tree(dest: Path) -> Path:
    for package in CONFIG["root_packages"]:
        shutil.copytree(
            ROOT / package, dest / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


def domain_module(tree: Path) -> Path:
    """storage.domain, a module or (once split) a package."""
    package = tree / "storage" / "domain" / "__init__.py"
    return package if package.exists() else tree / "storage" / "domain.py"


def test_the_real_tree_keeps_every_contract():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in result.stdout


# (file to add the import to, the import, the module it is in -> what it imports, contract)
VIOLATIONS = [
    ("foundation/__init__.py", "import storage", "foundation -> storage",
     "foundation (settings, logs, metrics) imports none of recpipe's rooms"),
    ("storage/__init__.py", "import webhook.verify", "storage -> webhook.verify",
     "storage imports none of webhook, tasks or the entry points"),
    ("storage/__init__.py", "import recpipe.cli", "storage -> recpipe.cli",
     "storage imports none of webhook, tasks or the entry points"),
    ("<domain>", "import sqlalchemy", "storage.domain -> sqlalchemy",
     "storage.domain is plain values and rules: no SQLAlchemy, boto3 or requests"),
    ("<domain>", "import boto3", "storage.domain -> boto3",
     "storage.domain is plain values and rules: no SQLAlchemy, boto3 or requests"),
    ("<domain>", "import requests", "storage.domain -> requests",
     "storage.domain is plain values and rules: no SQLAlchemy, boto3 or requests"),
    ("webhook/__init__.py", "import tasks", "webhook -> tasks",
     "webhook imports neither tasks nor the entry points (it is handed a dispatcher)"),
    ("tasks/__init__.py", "import webhook", "tasks -> webhook",
     "tasks imports neither webhook nor the entry points"),
    ("tasks/__init__.py", "import recpipe", "tasks -> recpipe",
     "tasks imports neither webhook nor the entry points"),
    ("webhook/__init__.py", "import flask_login", "webhook -> flask_login",
     "webhook holds none of the console (its code, sessions, CSRF, throttling)"),
    ("recpipe/console/__init__.py", "import webhook.app", "recpipe.console -> webhook.app",
     "the console is a process of its own: it imports nothing of the webhook"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "statement", "edge", "contract"), VIOLATIONS, ids=[v[2] for v in VIOLATIONS]
)
def test_a_forbidden_import_breaks_its_contract(tmp_path, path, statement, edge, contract):
    assert contract in CONTRACTS
    tree = copy_of_the_tree(tmp_path)
    module = domain_module(tree) if path == "<domain>" else tree / path
    module.write_text(module.read_text() + f"\n{statement}  # the deliberate violation\n")

    result = lint_imports(tree)

    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{contract} BROKEN" in result.stdout
    broken = result.stdout.split("Broken contracts", 1)[1]
    assert f"-   {edge} (l." in broken, result.stdout
