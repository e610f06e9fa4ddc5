"""deploy/prometheus and deploy/grafana, checked with Debian's promtool (`make services`
installs it): the rules load, promtool's unit tests pass with a firing and a quiet case for
every alert, every alert carries its summary, description and runbook, and every metric the
rules and the dashboard ask for is one recpipe exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from foundation.config import Settings

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
TEST_FILES = sorted((PROMETHEUS / "tests").glob("*.yml"))
RUNBOOKS = ROOT / "docs" / "runbook.md"
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
# Series Prometheus makes itself.
BUILTIN = {"up", "ALERTS", "ALERTS_FOR_STATE"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: `make services` installs Debian's prometheus package"
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=120)


def rules() -> Iterator[dict[str, Any]]:
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            yield from group["rules"]


def alerts() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in rules() if "alert" in rule}


def recorded() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


# -- promtool -------------------------------------------------------------------------------


def test_promtool_accepts_the_rules_and_the_scrape_configuration():
    assert RULE_FILES and len(alerts()) >= 10
    checked = promtool("check", "rules", *map(str, RULE_FILES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr


def test_promtool_unit_tests_of_the_alerts_pass():
    result = promtool("test", "rules", *map(str, TEST_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_fail_when_an_alert_changes(tmp_path: Path):
    """The unit tests are not vacuous: with one alert's threshold moved they fail."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "tests").mkdir()
    for path in RULE_FILES:
        text = path.read_text().replace("> 7200", "> 9000")
        (tmp_path / "rules" / path.name).write_text(text)
    suite = yaml.safe_load((PROMETHEUS / "tests" / "recpipe-alerts.test.yml").read_text())
    suite["tests"] = [t for t in suite["tests"] if "StuckCollecting" in t["name"]]
    assert len(suite["tests"]) == 2
    (tmp_path / "tests" / "t.yml").write_text(yaml.safe_dump(suite))
    result = promtool("test", "rules", str(tmp_path / "tests" / "t.yml"))
    assert result.returncode != 0
    assert "RecpipeRecordingStuckCollecting" in result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_quiet_case():
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in TEST_FILES:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = set(alerts())
    assert names - firing == set(), "alerts without a case where they fire"
    assert names - quiet == set(), "alerts without a case where they stay quiet"
    assert firing | quiet <= names, "cases for alerts that do not exist"


def test_every_alert_has_a_summary_a_first_step_and_a_runbook_section():
    headings = re.findall(r"^### (\w+)$", RUNBOOKS.read_text(), flags=re.MULTILINE)
    for name, rule in alerts().items():
        notes = rule["annotations"]
        assert notes["summary"].strip(), name
        assert "First" in notes["description"] or "first" in notes["description"], name
        assert notes["runbook"] == f"docs/runbook.md#{name.lower()}", name
        assert name in headings, f"{name} has no runbook section in {RUNBOOKS.name}"
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), name
    assert set(headings) == set(alerts()), "runbooks of alerts that do not exist"


# -- metric names -----------------------------------------------------------------------------

_FUNCTION_OR_KEYWORD = {
    "by", "without", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "offset", "bool", "inf", "nan",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: what is left once strings, label
    matchers, ranges, grouping clauses and offsets are removed, minus function names
    (followed by a parenthesis), keywords and numbers."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\boffset\s+\S+", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", text):
        token = match.group(0)
        if text[match.end() :].lstrip().startswith("("):
            continue
        if token.lower() in _FUNCTION_OR_KEYWORD:
            continue
        names.add(token)
    return names


def test_metric_names_are_found_in_promql():
    expr = (
        'sum by (queue, le) (rate(recpipe_queue_wait_seconds_bucket{queue=~"m.*"}[5m] offset 1h))'
        " / clamp_min(recpipe:x:y, 1e-12) > 0.5 and on (a) absent(up) or vector(0)"
    )
    assert metric_names(expr) == {"recpipe_queue_wait_seconds_bucket", "recpipe:x:y", "up"}


def dashboard_expressions() -> Iterator[tuple[str, str]]:
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                yield f"{path.name}: {panel['title']}", target["expr"]
        for note in dashboard.get("annotations", {}).get("list", []):
            if "expr" in note:
                yield f"{path.name}: annotation {note['name']}", note["expr"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every sample name recpipe's /metrics answers carry: a webhook on a migrated ledger
    and the worker metrics (chain steps, queue wait, notifications, heartbeats) with one
    observation each, scraped from the webhook's own /metrics in this (single) process."""
    from recpipe.webapp import create_app, create_internal_app
    from storage.ledger import Ledger
    from tasks import liveness
    from tasks import metrics as worker_metrics

    worker_metrics.initialize()
    worker_metrics.observe_step("fetch", 1.0)
    worker_metrics.families().queue_wait_seconds.labels("media", "recpipe.settle").observe(1.0)
    liveness.gauges().worker.labels("media").set(1.0)
    liveness.gauges().beat.set(1.0)

    tmp = tmp_path_factory.mktemp("exported")
    settings = Settings.from_env({"RECPIPE_DATA_DIR": str(tmp)})
    ledger = Ledger(settings.database_url)
    ledger.migrate()
    try:
        client = create_app(settings, ledger=ledger).test_client()
        client.get("/healthz")
        client.post("/callbacks/gme", data=b"{}")  # refused (401): counted all the same
        internal = create_internal_app(settings, ledger=ledger).test_client()
        text = internal.get("/metrics").get_data(as_text=True)
    finally:
        ledger.dispose()
    names = set()
    for family in text_string_to_metric_families(text):
        names.update(sample.name for sample in family.samples)
    return {name for name in names if name.startswith("recpipe_")}


def test_the_exported_names_include_each_source(exported: set[str]):
    """The fixture's scrape holds the webhook's, the ledger's, the broker's and the
    workers' metrics, so the checks below compare against all of them."""
    assert {
        "recpipe_callbacks_total", "recpipe_http_responses_total", "recpipe_recordings",
        "recpipe_runs_finished_total", "recpipe_recording_oldest_age_seconds",
        "recpipe_queue_depth", "recpipe_broker_up", "recpipe_step_seconds_bucket",
        "recpipe_worker_heartbeat_timestamp_seconds", "recpipe_beat_heartbeat_timestamp_seconds",
        "recpipe_store_errors_total", "recpipe_notification_attempts_total",
    } <= exported  # fmt: skip


def test_every_metric_the_rules_read_is_exported_or_recorded(exported: set[str]):
    known = exported | recorded() | BUILTIN
    for rule in rules():
        unknown = metric_names(rule["expr"]) - known
        assert unknown == set(), f"{rule.get('alert') or rule.get('record')}: {unknown}"


def test_every_metric_the_dashboard_reads_is_exported_or_recorded(exported: set[str]):
    assert DASHBOARDS
    known = exported | recorded() | BUILTIN
    seen = 0
    for where, expr in dashboard_expressions():
        seen += 1
        unknown = metric_names(expr) - known
        assert unknown == set(), f"{where}: {unknown}"
    assert seen >= 15


def test_the_name_check_catches_a_metric_recpipe_does_not_export(exported: set[str]):
    known = exported | recorded() | BUILTIN
    assert metric_names("rate(recpipe_callback_total[5m])") - known == {"recpipe_callback_total"}


def test_the_dashboard_uses_the_provisioned_datasource():
    provisioned = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/recpipe.yml").read_text()
    )
    [source] = provisioned["datasources"]
    assert source["url"] == "http://prometheus:9090"
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            if panel["type"] != "row":
                assert panel["datasource"]["uid"] == source["uid"], panel["title"]
