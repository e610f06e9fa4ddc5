"""pyproject.toml as setuptools reads it: an install ships every package, and building it
raises no deprecation warning."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.licenses import canonicalize_license_expression
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LISTED = PYPROJECT["tool"]["setuptools"]["packages"]


def test_every_package_under_the_listed_roots_is_listed():
    """A folder with an __init__.py that is not listed is missing from `pip install .` (the
    image), though an editable install still finds it."""
    roots = {name.split(".")[0] for name in LISTED}
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for root in roots
        for init in (ROOT / root).rglob("__init__.py")
    }
    assert found - set(LISTED) == set()


def test_the_license_is_an_spdx_expression_with_a_setuptools_that_reads_it():
    """A license table (`{ text = ... }`) is deprecated in setuptools and warns at every
    install; the SPDX string form needs setuptools 77 or later to build."""
    license_ = PYPROJECT["project"]["license"]
    assert isinstance(license_, str)
    assert canonicalize_license_expression(license_) == license_
    [setuptools] = [
        Requirement(r) for r in PYPROJECT["build-system"]["requires"] if r.startswith("setuptools")
    ]
    assert not setuptools.specifier.contains("76.1", prereleases=True)
    assert setuptools.specifier.contains("77.0.0")


def test_the_consoles_templates_and_static_files_are_shipped():
    """`pip install .` copies only .py files unless package-data names the others."""
    from fnmatch import fnmatch

    globs = PYPROJECT["tool"]["setuptools"]["package-data"]["recpipe.console"]
    console = ROOT / "recpipe" / "console"
    files = [p.relative_to(console).as_posix() for p in console.rglob("*")
             if p.is_file() and p.suffix != ".py" and "__pycache__" not in p.parts]  # fmt: skip
    assert files
    for name in files:
        assert any(fnmatch(name, pattern) for pattern in globs), name
