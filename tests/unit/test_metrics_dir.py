"""The multiprocess metrics directory: chosen, created and emptied at start."""

import os
from pathlib import Path

import pytest

from foundation import metrics


@pytest.fixture
def clean_env(monkeypatch):
    """No PROMETHEUS_MULTIPROC_DIR during the test, and none left after it (the code under
    test sets it in os.environ: setenv first so that monkeypatch undoes that too)."""
    monkeypatch.setenv(metrics.ENV, "unset-by-the-fixture")
    monkeypatch.delenv(metrics.ENV)
    return monkeypatch


def test_default_dir_is_created_and_stale_files_of_an_earlier_run_go(clean_env, tmp_path: Path):
    """Files left by an earlier run would add its figures to this one's."""
    path = tmp_path / "metrics" / f"worker-{os.getpid()}"
    path.mkdir(parents=True)
    (path / "counter_123.db").write_bytes(b"old")
    (path / "keep.txt").write_text("not a metrics file")
    assert metrics.use_multiprocess_dir(path) == path
    assert os.environ[metrics.ENV] == str(path)
    assert sorted(p.name for p in path.iterdir()) == ["keep.txt"]


def test_default_dirs_of_processes_that_are_gone_are_removed(clean_env, tmp_path: Path):
    root = tmp_path / "metrics"
    gone = root / "worker-999999999"
    alive = root / f"worker-{os.getppid()}"
    other_role = root / "webhook-999999999"
    for d in (gone, alive, other_role):
        d.mkdir(parents=True)
    metrics.use_multiprocess_dir(root / f"worker-{os.getpid()}")
    assert not gone.exists()
    assert alive.exists() and other_role.exists()


def test_an_explicit_dir_wins_over_the_default(clean_env, tmp_path: Path):
    explicit = tmp_path / "explicit"
    clean_env.setenv(metrics.ENV, str(explicit))
    assert metrics.use_multiprocess_dir(tmp_path / "default") == explicit
    assert explicit.is_dir() and not (tmp_path / "default").exists()
