"""The settings and pure helpers behind riding out faults: retry waits by time, the fault a
run's error names, the scratch directory and the download bound."""

import errno
from pathlib import Path

import pytest

from foundation.config import ConfigError, Settings
from storage.ledger import LedgerUnavailableError
from storage.objectstore import StoreUnavailableError
from tasks.retrying import countdown, describe_fault


def test_defaults_ride_out_minutes_and_keep_scratch_in_the_data_dir(tmp_path: Path):
    s = Settings.from_env({"RECPIPE_DATA_DIR": str(tmp_path)})
    assert (s.store_retry_seconds, s.requeue_after_seconds) == (600.0, 60.0)
    assert s.scratch_dir == tmp_path.resolve() / "scratch"
    assert s.css_fetch_max_seconds == 3600.0


def test_fault_settings_from_the_environment(tmp_path: Path):
    s = Settings.from_env(
        {
            "RECPIPE_DATA_DIR": str(tmp_path),
            "RECPIPE_STORE_RETRY_SECONDS": "120",
            "RECPIPE_REQUEUE_AFTER_SECONDS": "30",
            "RECPIPE_SCRATCH_DIR": str(tmp_path / "fast-disk"),
            "RECPIPE_CSS_FETCH_MAX_SECONDS": "900",
        }
    )
    assert (s.store_retry_seconds, s.requeue_after_seconds) == (120.0, 30.0)
    assert s.scratch_dir == (tmp_path / "fast-disk").resolve()
    assert s.css_fetch_max_seconds == 900.0


@pytest.mark.parametrize(
    ("name", "value"),
    [("RECPIPE_REQUEUE_AFTER_SECONDS", "1"), ("RECPIPE_STORE_RETRY_SECONDS", "soon")],
)
def test_bad_fault_settings_name_the_variable(tmp_path: Path, name: str, value: str):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({"RECPIPE_DATA_DIR": str(tmp_path), name: value})


@pytest.mark.parametrize("retries", range(8))
def test_retry_waits_double_from_2_seconds_up_to_30_plus_a_little_at_random(retries: int):
    expected = min(30.0, 2.0 * 2**retries)
    assert expected <= countdown(retries) <= expected + 2


@pytest.mark.parametrize(
    ("exc", "starts"),
    [
        (LedgerUnavailableError("connection refused"), "ledger unavailable: "),
        (StoreUnavailableError("s3://b/k: could not connect"), "object store unavailable: "),
        (OSError(errno.ENOSPC, "No space left on device"), "scratch disk full: "),
        (ValueError("odd"), "ValueError: "),
    ],
)
def test_a_run_error_names_the_dependency_that_failed(exc: Exception, starts: str):
    assert describe_fault(exc).startswith(starts)


def test_a_full_disk_is_told_apart_wherever_ffmpeg_said_it_in_its_tail():
    """ffmpeg's last line may be only "Conversion failed!": the disk-full line above it
    still makes the failure an OSError(ENOSPC), which the run retries; anything else
    stays a MediaError naming the last line."""
    import errno

    from tasks.media.tools import MediaError, tool_failure

    report = "size=  1024kB\n[out#0/ipod] Error writing trailer: No space left on device\n"
    full = tool_failure("transcoding recording r", 1, report + "Conversion failed!\n")
    assert isinstance(full, OSError) and full.errno == errno.ENOSPC
    assert "No space left on device" in str(full)
    bad = tool_failure("transcoding recording r", 1, "x.mp3: Invalid data found\n\n")
    assert isinstance(bad, MediaError)
    assert str(bad) == "transcoding recording r: x.mp3: Invalid data found"
    assert str(tool_failure("probing", 2, "")) == "probing: exit code 2"
