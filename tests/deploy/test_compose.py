"""docker-compose.yml, deploy/recpipe.env.example and the Dockerfile, checked without a
container engine: the Compose Specification's schema, commands and variables that recpipe
really has, and an image that runs recpipe with ffmpeg as a non-root user."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema
import pytest
import yaml

from foundation.config import ConfigError, Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "deploy" / "recpipe.env.example"
DOCKERFILE = ROOT / "Dockerfile"
SCHEMA = Path(__file__).with_name("compose-spec.json")
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 (containers must listen beyond their loopback)
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
RECPIPE_PACKAGES = sorted({p.split(".")[0] for p in PYPROJECT["tool"]["setuptools"]["packages"]})


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def env_file(path: Path = ENV_EXAMPLE) -> dict[str, str]:
    """KEY=value lines, as docker compose reads an env file (comments and blanks skipped)."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not KEY=value: {line!r}"
        values[key.strip()] = value
    return values


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            instructions.append((word.upper(), rest.strip()))
    return instructions


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in dockerfile():
        if word == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def exec_form(word: str) -> list[str]:
    [args] = [rest for w, rest in dockerfile() if w == word]
    return json.loads(args)


def recpipe_services() -> dict[str, dict[str, Any]]:
    """The services that run the image built from this repository."""
    return {name: svc for name, svc in services().items() if svc.get("build") == "."}


def command_of(service: dict[str, Any]) -> list[str]:
    """The argv a container of the service runs: its entrypoint (or the image's), then its
    command (or the image's CMD)."""
    entrypoint = service.get("entrypoint", exec_form("ENTRYPOINT"))
    command = service.get("command", exec_form("CMD"))
    as_list = [shlex.split(x) if isinstance(x, str) else list(x) for x in (entrypoint, command)]
    return as_list[0] + as_list[1]


def service_env(service: dict[str, Any]) -> dict[str, str]:
    """What a recpipe container's environment holds: image ENV, env file, `environment`."""
    env = {**image_env(), **env_file()}
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    env.update({k: str(v) for k, v in environment.items()})
    return env


# -- the compose file -------------------------------------------------------------------


def test_compose_file_is_valid_against_the_compose_specification():
    """docker-compose.yml validates against the Compose Specification's JSON schema."""
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.validators.validator_for(schema)
    validator.check_schema(schema)
    errors = [f"{e.json_path}: {e.message}" for e in validator(schema).iter_errors(compose())]
    assert errors == []


def test_the_schema_check_catches_a_misspelt_key():
    """The validation above is not vacuous: a misspelt service key is an error."""
    schema = json.loads(SCHEMA.read_text())
    broken = compose()
    broken["services"]["webhook"]["helthcheck"] = broken["services"]["webhook"]["healthcheck"]
    validator = jsonschema.validators.validator_for(schema)(schema)
    assert any("helthcheck" in e.message for e in validator.iter_errors(broken))


def test_stack_has_broker_ledger_archive_webhook_workers_and_beat():
    """The production-like stack: every role of the issue is a service."""
    names = set(services())
    assert {
        "redis", "rabbitmq", "postgres", "minio", "minio-init",
        "migrate", "webhook", "worker-light", "worker-media", "beat",
    } <= names  # fmt: skip
    assert services()["rabbitmq"]["profiles"] == ["rabbitmq"]


def test_rabbitmq_holds_an_unacknowledged_task_longer_than_the_longest_task_runs():
    """RabbitMQ closes a channel whose delivery stays unacknowledged past consumer_timeout
    (30 minutes by default); a media task is acknowledged when it ends, so the stack's
    RabbitMQ is given a timeout above RECPIPE_TASK_TIME_LIMIT's default plus an hour."""
    from foundation.config import Settings

    mounts = {v.split(":")[1]: v.split(":")[0] for v in services()["rabbitmq"]["volumes"]}
    source = mounts["/etc/rabbitmq/conf.d/20-recpipe.conf"]
    lines = (COMPOSE.parent / source).read_text().splitlines()
    pairs = [line.split("=", 1) for line in lines if line.strip() and not line.startswith("#")]
    timeout_ms = int({key.strip(): value.strip() for key, value in pairs}["consumer_timeout"])
    limit = Settings.from_env({}).task_time_limit_seconds
    assert timeout_ms >= (limit + 3600) * 1000


@pytest.mark.parametrize(
    ("service", "probe"),
    [
        ("redis", "redis-cli ping"),
        ("postgres", "pg_isready"),
        ("minio", "mc ready local"),
        ("rabbitmq", "rabbitmq-diagnostics -q ping"),
        ("webhook", "http://127.0.0.1:9108/readyz"),
        ("worker-light", "inspect ping -d light@"),
        ("worker-media", "inspect ping -d media@"),
    ],
)
def test_long_running_services_have_healthchecks(service: str, probe: str):
    """Each server has a healthcheck that asks it whether it is ready."""
    test = services()[service]["healthcheck"]["test"]
    assert probe in (" ".join(test) if isinstance(test, list) else test)


def test_webhook_healthcheck_port_is_the_port_it_serves():
    """The webhook listens on every interface at the port its healthcheck and its published
    port use."""
    argv = command_of(services()["webhook"])
    assert argv[:2] == ["recpipe", "serve"]
    assert argv[argv.index("--host") + 1] == ALL_INTERFACES
    port = argv[argv.index("--port") + 1]
    assert services()["webhook"]["ports"] == [f"{port}:{port}"]


def test_the_webhook_internal_listener_is_on_the_network_but_never_published():
    """/readyz and /metrics are on RECPIPE_INTERNAL_LISTEN: every interface of the
    container, so that Prometheus reaches it, and not among the published ports; the
    healthcheck asks it, the public port is not it."""
    svc = services()["webhook"]
    env = service_env(svc)
    host, _, port = env["RECPIPE_INTERNAL_LISTEN"].rpartition(":")
    assert host == ALL_INTERFACES
    public = command_of(svc)[command_of(svc).index("--port") + 1]
    assert str(port) != public
    assert all(str(port) not in published for published in svc["ports"])
    assert f"http://127.0.0.1:{port}/readyz" in " ".join(svc["healthcheck"]["test"])
    assert env["PROMETHEUS_MULTIPROC_DIR"]


def test_everything_that_uses_the_ledger_waits_for_the_migration():
    """`recpipe migrate` runs once, after PostgreSQL is healthy, and every recpipe service
    but itself starts only after it completed."""
    svcs = recpipe_services()
    assert command_of(svcs["migrate"]) == ["recpipe", "migrate"]
    assert svcs["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert svcs["migrate"]["restart"] == "no"
    for name, svc in svcs.items():
        if name != "migrate":
            condition = svc["depends_on"]["migrate"]["condition"]
            assert condition == "service_completed_successfully", name


def _recpipe_argv_is_valid(args: list[str]) -> None:
    """Parse with recpipe's own click commands: an unknown subcommand or option fails."""
    from recpipe.cli import main

    ctx = main.make_context("recpipe", list(args))
    command = main.get_command(ctx, args[0])
    assert command is not None, f"recpipe has no {args[0]!r} command"
    command.make_context(args[0], list(args[1:]), parent=ctx)


def _celery_queues() -> set[str]:
    from tasks.celeryconfig import celery_settings

    conf = celery_settings(Settings.from_env({"RECPIPE_BROKER_URL": "redis://redis:6379/0"}))
    return {queue.name for queue in conf["task_queues"]}


def _celery_argv_is_valid(args: list[str]) -> tuple[str, set[str]]:
    """`celery -A tasks worker|beat ...` with options Celery has; returns the subcommand and
    the queues a worker consumes."""
    from celery.bin.celery import celery

    assert args[:2] == ["-A", "tasks"], "the Celery app is `tasks` (docs/operations.md)"
    subcommand, options = args[2], args[3:]
    assert subcommand in ("worker", "beat")
    known = {o for p in celery.commands[subcommand].params for o in p.opts + p.secondary_opts}
    for token in options:
        if token.startswith("-"):
            assert token.split("=", 1)[0] in known, f"celery {subcommand} has no {token}"
    queues: set[str] = set()
    if "-Q" in options:
        queues = set(options[options.index("-Q") + 1].split(","))
    return subcommand, queues


def test_every_service_runs_a_command_recpipe_or_celery_really_has():
    """recpipe subcommands and options exist in recpipe/cli.py; Celery runs `-A tasks` with
    options Celery knows and queues that tasks/celeryconfig.py declares."""
    seen: dict[str, set[str]] = {}
    for name, svc in recpipe_services().items():
        argv = command_of(svc)
        if argv[0] == "recpipe":
            _recpipe_argv_is_valid(argv[1:])
        else:
            assert argv[0] == "celery", name
            subcommand, queues = _celery_argv_is_valid(argv[1:])
            assert queues <= _celery_queues(), name
            seen.setdefault(subcommand, set()).update(queues)
            if subcommand == "worker":
                assert len(queues) == 1, f"{name}: one queue per worker service"
    assert seen["worker"] == {"light", "media"}, "media work and light work on separate pools"
    assert "beat" in seen


def test_the_command_check_catches_an_unknown_option():
    """The command check above is not vacuous."""
    import click

    with pytest.raises(click.NoSuchOption):
        _recpipe_argv_is_valid(["serve", "--bind", "127.0.0.1"])
    with pytest.raises(AssertionError, match="no --queue-name"):
        _celery_argv_is_valid(["-A", "tasks", "worker", "--queue-name", "light"])


# -- the env file -----------------------------------------------------------------------


def _variables_recpipe_reads() -> set[str]:
    names: set[str] = set()
    for package in RECPIPE_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            names.update(re.findall(r"RECPIPE_[A-Z0-9_]+", path.read_text()))
    return names


def test_every_recpipe_variable_the_stack_sets_is_one_recpipe_reads():
    """No RECPIPE_* variable in the env file or the compose file is a typo or a leftover."""
    read = _variables_recpipe_reads()
    assert "RECPIPE_DATABASE_URL" in read and "RECPIPE_METRICS_PORT" in read
    set_by_stack = {k for k in env_file() if k.startswith("RECPIPE_")}
    for svc in recpipe_services().values():
        set_by_stack |= {k for k in service_env(svc) if k.startswith("RECPIPE_")}
    assert set_by_stack - read == set()


def test_every_recpipe_service_uses_the_env_file():
    """Configuration goes through deploy/recpipe.env, whose example is committed."""
    for name, svc in recpipe_services().items():
        assert svc["env_file"] == "deploy/recpipe.env", name
    assert ENV_EXAMPLE.exists()


@pytest.mark.parametrize("service", sorted(recpipe_services()))
def test_each_recpipe_service_gets_a_valid_production_configuration(service: str):
    """The env file (its change-me placeholders replaced, as its first lines ask: recpipe
    refuses to start on one), the image's ENV and the service's environment make Settings
    that use the stack's PostgreSQL, Redis and MinIO, with GME keys, and pass recpipe's
    checks."""
    example = service_env(recpipe_services()[service])
    with pytest.raises(ConfigError, match="change-me"):
        Settings.from_env(example)
    env = {name: value.replace("change-me", "replaced") for name, value in example.items()}
    settings = Settings.from_env(env)
    hosts = set(services())
    db = urlsplit(settings.database_url)
    assert db.scheme.startswith("postgresql") and db.hostname in hosts
    broker = urlsplit(settings.broker_url)
    assert broker.scheme == "redis" and broker.hostname in hosts
    for url in (settings.archive_url, settings.gme_source_url):
        parts = urlsplit(url)
        assert parts.scheme == "s3"
        endpoint = parse_qs(parts.query)["endpoint_url"][0]
        assert urlsplit(endpoint).hostname in hosts
    assert settings.gme_secret_keys
    assert str(settings.data_dir) == image_env()["RECPIPE_DATA_DIR"]


def test_credentials_agree_between_servers_and_recpipe():
    """recpipe logs in to PostgreSQL and MinIO with what those servers are set up with."""
    env = env_file()
    db = urlsplit(env["RECPIPE_DATABASE_URL"])
    assert (db.username, db.password, db.path.lstrip("/")) == (
        env["POSTGRES_USER"],
        env["POSTGRES_PASSWORD"],
        env["POSTGRES_DB"],
    )
    assert env["AWS_ACCESS_KEY_ID"] == env["MINIO_ROOT_USER"]
    assert env["AWS_SECRET_ACCESS_KEY"] == env["MINIO_ROOT_PASSWORD"]
    assert len(env["MINIO_ROOT_PASSWORD"]) >= 8, "MinIO refuses shorter passwords"


@pytest.mark.parametrize(
    "name",
    [
        "POSTGRES_PASSWORD", "RABBITMQ_DEFAULT_PASS", "MINIO_ROOT_PASSWORD",
        "AWS_SECRET_ACCESS_KEY", "RECPIPE_GME_SECRET_KEYS", "RECPIPE_CSS_CALLBACK_KEY",
        "RECPIPE_NOTIFY_SECRET", "RECPIPE_CONSOLE_SECRET",
    ],
)  # fmt: skip
def test_env_example_holds_placeholders_not_secrets(name: str):
    """Every secret in the committed example is empty or an obvious change-me."""
    value = env_file()[name]
    assert value == "" or "change-me" in value


def test_bucket_init_creates_the_buckets_recpipe_uses_on_minio(tmp_path: Path):
    """minio-init's script, run by sh with a stand-in `mc` that records its arguments,
    creates the archive and source buckets named in the env file."""
    svc = services()["minio-init"]
    assert svc["depends_on"]["minio"]["condition"] == "service_healthy"
    for name in ("worker-light", "worker-media", "webhook"):
        condition = services()[name]["depends_on"]["minio-init"]["condition"]
        assert condition == "service_completed_successfully"
    script = svc["command"][0].replace("$$", "$")
    log = tmp_path / "mc.log"
    fake = tmp_path / "mc"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    fake.chmod(0o755)
    env = {**env_file(), "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    subprocess.run([*svc["entrypoint"], script], env=env, check=True)
    calls = log.read_text().splitlines()
    assert calls[0].startswith("alias set local http://minio:9000 recpipe ")
    assert sorted(calls[1:]) == [
        "mb --ignore-existing local/recpipe-archive",
        "mb --ignore-existing local/recpipe-source",
    ]


# -- the image --------------------------------------------------------------------------


def test_image_entrypoint_is_the_console_script():
    """ENTRYPOINT runs the `recpipe` console script of pyproject.toml; CMD is a valid
    recpipe command serving on every interface."""
    scripts = PYPROJECT["project"]["scripts"]
    assert exec_form("ENTRYPOINT") == ["recpipe"]
    assert "recpipe" in scripts
    cmd = exec_form("CMD")
    _recpipe_argv_is_valid(cmd)
    assert cmd[0] == "serve" and cmd[cmd.index("--host") + 1] == ALL_INTERFACES


def test_image_installs_ffmpeg_and_recpipe_and_runs_as_a_user():
    """A slim Python base, ffmpeg from apt, `pip install .` of every package, and a final
    USER that is not root."""
    instructions = dockerfile()
    [base] = [rest for word, rest in instructions if word == "FROM"]
    assert base.startswith("python:") and "slim" in base
    runs = [rest for word, rest in instructions if word == "RUN"]
    assert any("apt-get install" in r and re.search(r"\bffmpeg\b", r) for r in runs)
    assert any(re.search(r"pip install \.(\s|$)", r) for r in runs)
    copied = {rest.split()[0] for word, rest in instructions if word == "COPY"}
    assert set(RECPIPE_PACKAGES) <= copied, "every package of pyproject.toml is in the image"
    users = [rest for word, rest in instructions if word == "USER"]
    assert users and users[-1] not in ("root", "0", "0:0")
    assert any("useradd" in r and users[-1] in r for r in runs)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert not set(RECPIPE_PACKAGES) & set(ignored)
    assert "deploy/recpipe.env" in ignored, "the real env file never goes into the image"


def test_the_console_is_its_own_service_published_on_the_loopback_only():
    """`recpipe console` on the container network, published on 127.0.0.1 only; never the
    webhook's port; its healthcheck asks the port it serves."""
    svc = services()["console"]
    argv = command_of(svc)
    assert argv[:2] == ["recpipe", "console"]
    port = argv[argv.index("--port") + 1]
    assert svc["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert (
        port
        != command_of(services()["webhook"])[command_of(services()["webhook"]).index("--port") + 1]
    )
    assert f"http://127.0.0.1:{port}/login" in " ".join(svc["healthcheck"]["test"])
    assert len(service_env(svc)["RECPIPE_CONSOLE_SECRET"]) >= 32


# -- the observability profile ----------------------------------------------------------


def test_observability_profile_runs_prometheus_with_the_rules_and_grafana_provisioned():
    """`--profile observability`: Prometheus with deploy/prometheus's configuration and
    rules mounted where that configuration looks for them, Grafana with the provisioning and
    the dashboards mounted where the provisioning looks; both published on loopback only."""
    prometheus, grafana = services()["prometheus"], services()["grafana"]
    assert prometheus["profiles"] == grafana["profiles"] == ["observability"]
    mounts = {m.split(":")[1]: ROOT / m.split(":")[0] for m in prometheus["volumes"] if "/" in m}
    config_path = next(a.split("=", 1)[1] for a in prometheus["command"] if "config.file" in a)
    config = yaml.safe_load(mounts[config_path].read_text())
    [rule_glob] = config["rule_files"]
    rules_dir = mounts[str(Path(rule_glob).parent)]
    assert sorted(rules_dir.glob(Path(rule_glob).name)), "no rule file under the mounted glob"
    g_mounts = {m.split(":")[1]: ROOT / m.split(":")[0] for m in grafana["volumes"] if "/" in m}
    provisioning = g_mounts["/etc/grafana/provisioning"]
    [provider] = yaml.safe_load((provisioning / "dashboards" / "recpipe.yml").read_text())[
        "providers"
    ]
    assert sorted(g_mounts[provider["options"]["path"]].glob("*.json"))
    for svc in (prometheus, grafana):
        assert all(port.startswith("127.0.0.1:") for port in svc["ports"])
    assert {"prometheus-data", "grafana-data"} <= set(compose()["volumes"])


def test_prometheus_scrapes_every_recpipe_process_where_it_serves_metrics():
    """The webhook on its internal listener (not its public port); every worker service
    and beat on RECPIPE_METRICS_PORT, listening beyond loopback."""
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets: set[tuple[str, int]] = set()
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            targets |= {(t.split(":")[0], int(t.split(":")[1])) for t in static["targets"]}
        for sd in job.get("dns_sd_configs", []):
            targets |= {(name, int(sd["port"])) for name in sd["names"]}
    webhook = services()["webhook"]
    internal = service_env(webhook)["RECPIPE_INTERNAL_LISTEN"].rpartition(":")[2]
    assert ("webhook", int(internal)) in targets
    webhook_argv = command_of(webhook)
    assert ("webhook", int(webhook_argv[webhook_argv.index("--port") + 1])) not in targets
    for name in ("worker-light", "worker-media", "beat"):
        env = service_env(recpipe_services()[name])
        assert env["RECPIPE_METRICS_HOST"] == ALL_INTERFACES, name
        assert (name, int(env["RECPIPE_METRICS_PORT"])) in targets, name
