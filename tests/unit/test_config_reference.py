"""Settings are defined once, in foundation/config.py: every RECPIPE_* name the repository
mentions is one of them, docs/configuration.md is generated from them, and `recpipe config`
prints the ones in effect with secrets masked."""

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from foundation import config
from foundation.config import SETTINGS, Settings
from recpipe.cli import main

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "configuration.md"
ENV_EXAMPLE = ROOT / "deploy" / "recpipe.env.example"
NAME = re.compile(r"\bRECPIPE_[A-Z0-9_]*[A-Z0-9]\b")
# Knobs of the test suite and the benches, not of recpipe; and a test's Python constant.
NOT_SETTINGS = re.compile(r"RECPIPE_(TEST|BENCH|FUZZ)_\w+|RECPIPE_PACKAGES")
SKIP_DIRS = {".git", ".venv", "var", "node_modules", "__pycache__", "out", "recpipe.egg-info"}
TEXT_SUFFIXES = {".py", ".md", ".yml", ".yaml", ".sh", ".toml", ".example", ".ini", ".cfg"}


def repository_files() -> list[Path]:
    found = []
    for path in ROOT.rglob("*"):
        parts = set(path.relative_to(ROOT).parts[:-1])
        if parts & SKIP_DIRS or any(p.startswith(".") and p != ".ci" for p in parts):
            continue
        if path.is_file() and (
            path.suffix in TEXT_SUFFIXES or path.name in ("Makefile", "Dockerfile", "run")
        ):
            found.append(path)
    return found


def test_every_recpipe_name_in_the_repository_is_a_defined_setting():
    defined = {item.env for item in SETTINGS}
    strays = {
        f"{name} ({path.relative_to(ROOT)})"
        for path in repository_files()
        for name in NAME.findall(path.read_text(errors="replace"))
        if name not in defined and not NOT_SETTINGS.fullmatch(name)
    }
    assert not strays, "not defined in foundation/config.py: " + ", ".join(sorted(strays))


def test_the_scan_sees_the_code_that_reads_settings():
    """The check above would pass on an empty scan: it must see the modules that name
    settings, and the names they use."""
    scanned = {path.relative_to(ROOT).as_posix() for path in repository_files()}
    assert {"tasks/jobs.py", "Makefile", "deploy/recpipe.env.example", ".ci/run"} <= scanned
    assert "RECPIPE_STORE_RETRY_SECONDS" in (ROOT / "tasks" / "jobs.py").read_text()


def test_each_setting_is_defined_once_with_a_one_line_doc():
    names = [item.env for item in SETTINGS]
    assert len(names) == len(set(names))
    assert [item.attr for item in SETTINGS] == list(Settings.__dataclass_fields__)
    for item in SETTINGS:
        assert item.doc and "\n" not in item.doc and "|" not in item.doc, item.env


def test_the_configuration_reference_is_generated_from_the_definitions():
    assert REFERENCE.read_text() == config.markdown(), (
        "docs/configuration.md is stale: run `make docs`"
    )
    for item in SETTINGS:
        assert f"`{item.env}`" in REFERENCE.read_text()


def test_the_reference_names_the_settle_windows_and_the_notify_timeout():
    text = config.markdown()
    for name in ("RECPIPE_SETTLE_COMPLETE_SECONDS", "RECPIPE_NOTIFY_TIMEOUT_SECONDS"):
        assert f"| `{name}` |" in text


def test_the_env_example_sets_only_defined_settings_to_valid_values():
    lines = [line for line in ENV_EXAMPLE.read_text().splitlines() if line.startswith("RECPIPE_")]
    env = dict(line.split("=", 1) for line in lines)
    assert env and set(env) <= {item.env for item in SETTINGS}
    # Its change-me placeholders are refused (tests/unit/test_config.py); replaced, it holds.
    Settings.from_env({k: v.replace("change-me", "replaced") for k, v in env.items()})


def test_an_empty_value_is_the_default_but_an_empty_list_is_empty(tmp_path: Path):
    s = Settings.from_env(
        {
            "RECPIPE_DATA_DIR": str(tmp_path),
            "RECPIPE_SETTLE_SECONDS": "",
            "RECPIPE_LOG_LEVEL": " ",
            "RECPIPE_CSS_ALLOWED_HOSTS": "",
        }
    )
    assert (s.settle_seconds, s.log_level, s.css_allowed_hosts) == (120.0, "INFO", ())


def test_derived_defaults_follow_the_data_dir(tmp_path: Path):
    s = Settings.from_env({"RECPIPE_DATA_DIR": str(tmp_path / "d")})
    data = (tmp_path / "d").resolve()
    assert s.scratch_dir == data / "scratch"
    assert s.archive_url == (data / "archive").as_uri()
    assert s.database_url == f"sqlite:///{data / 'ledger.sqlite3'}"


@pytest.mark.parametrize(
    ("name", "value"),
    [("RECPIPE_LOG_LEVEL", "LOUD"), ("RECPIPE_FETCH_CONCURRENCY", "2.5"),
     ("RECPIPE_METRICS_PORT", "70000"), ("RECPIPE_CONSOLE_SECRET", "short"),
     ("RECPIPE_NOTIFY_TIMEOUT_SECONDS", "0"), ("RECPIPE_SWEEP_SECONDS", "0.1")],
)  # fmt: skip
def test_out_of_bounds_values_name_the_variable_in_one_line(name: str, value: str):
    with pytest.raises(config.ConfigError, match=name) as caught:
        Settings.from_env({name: value})
    assert "\n" not in str(caught.value)


SECRETS = {
    "RECPIPE_GME_SECRET_KEYS": "1400000000=gme-secret-one,1400000001=gme-secret-two",
    "RECPIPE_CSS_CALLBACK_KEY": "css-secret-key",
    "RECPIPE_NOTIFY_SECRET": "whsec_c2VjcmV0LW5vdGlmeS1rZXk=",
    "RECPIPE_CONSOLE_SECRET": "console-secret-" + "x" * 32,
    "RECPIPE_DATABASE_URL": "postgresql+psycopg://recpipe:db-password@db:5432/recpipe",
    "RECPIPE_BROKER_URL": "amqp://recpipe:broker-password@rabbit:5672//",
}


def test_recpipe_config_prints_the_settings_in_effect_with_secrets_masked(tmp_path: Path):
    unset: dict[str, str | None] = {item.env: None for item in SETTINGS}
    env = {**unset, **SECRETS, "RECPIPE_DATA_DIR": str(tmp_path), "RECPIPE_SETTLE_SECONDS": "15"}
    result = CliRunner().invoke(main, ["config"], env=env)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == len(SETTINGS)
    assert "RECPIPE_SETTLE_SECONDS=15" in lines
    assert f"RECPIPE_DATA_DIR={tmp_path.resolve()}" in lines
    assert "RECPIPE_SETTLE_COMPLETE_SECONDS=20  # default" in lines
    assert f"RECPIPE_SCRATCH_DIR={tmp_path.resolve() / 'scratch'}  # default" in lines
    for secret in ("gme-secret", "css-secret", "c2VjcmV0", "console-secret", "password"):
        assert secret not in result.output
    assert "RECPIPE_GME_SECRET_KEYS=1400000000=****,1400000001=****" in lines
    assert "RECPIPE_CSS_CALLBACK_KEY=****" in lines
    assert "RECPIPE_DATABASE_URL=postgresql+psycopg://recpipe:****@db:5432/recpipe" in lines
    assert "RECPIPE_BROKER_URL=amqp://recpipe:****@rabbit:5672//" in lines


def test_recpipe_config_refuses_a_bad_setting_in_one_line(tmp_path: Path):
    env = {"RECPIPE_DATA_DIR": str(tmp_path), "RECPIPE_SETTLE_SECONDS": "soon"}
    result = CliRunner().invoke(main, ["config"], env=env)
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "recpipe: configuration error: RECPIPE_SETTLE_SECONDS: expected a number, got 'soon'"
    ]


def test_recpipe_config_markdown_is_the_reference():
    result = CliRunner().invoke(main, ["config", "--markdown"])
    assert result.exit_code == 0 and result.output == config.markdown()
