"""`recpipe console`, `recpipe users` and `recpipe tokens` run as a user runs them
(subprocesses on PostgreSQL and Redis), and schemathesis exercising the running console's
API against its own OpenAPI document with a token."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, text

from tests.support.services import free_port
from tests.support.waits import wait_for

SECRET = "process-test-console-secret-" + "z" * 24


@pytest.fixture
def env(tmp_path: Path, pg_url: str, redis_url: str) -> dict[str, str]:
    return {
        "RECPIPE_DATA_DIR": str(tmp_path / "var"),
        "RECPIPE_DATABASE_URL": pg_url,
        "RECPIPE_BROKER_URL": redis_url,
        "RECPIPE_ARCHIVE_URL": (tmp_path / "archive").as_uri(),
        "RECPIPE_GME_SOURCE_URL": (tmp_path / "source").as_uri(),
        "RECPIPE_CONSOLE_SECRET": SECRET,
        # Forget refuses without it outside the embedded default (503, a server's error).
        "RECPIPE_PLAYER_KEY": "console-process-player-key-" + "p" * 16,
    }


def cli(env: dict[str, str], *args: str, stdin: str | None = None, timeout: float = 120):
    return subprocess.run(
        [sys.executable, "-m", "recpipe", *args],
        env={**os.environ, **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def console(env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    port = free_port()
    with (tmp_path / "console.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "recpipe", "console", "--port", str(port)],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: requests.get(f"{url}/login", timeout=1).ok, what="console")
        yield url
    finally:
        process.terminate()
        process.wait(20)


def test_users_are_added_listed_and_removed_with_passwords_kept_as_argon2(env):
    added = cli(env, "users", "add", "otto", "--role", "operator", "--password-stdin",
                stdin="a long enough password\n")  # fmt: skip
    assert added.returncode == 0, added.stderr
    again = cli(env, "users", "add", "otto", "--role", "viewer", "--password-stdin",
                stdin="a long enough password\n")  # fmt: skip
    assert again.returncode == 1 and "exists already" in again.stderr
    short = cli(env, "users", "add", "vera", "--role", "viewer", "--password-stdin", stdin="x\n")
    assert short.returncode == 2 and "at least 12" in short.stderr
    bad = cli(env, "users", "add", "<b>", "--role", "viewer", "--password-stdin", stdin="y" * 20)
    assert bad.returncode == 2
    assert cli(env, "users", "list").stdout.split()[:2] == ["otto", "operator"]
    engine = create_engine(env["RECPIPE_DATABASE_URL"])
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT password_hash FROM console_users")).scalar_one()
    engine.dispose()
    assert stored.startswith("$argon2id$") and "a long enough password" not in stored
    changed = cli(env, "users", "password", "otto", "--password-stdin",
                  stdin="another long password\n")  # fmt: skip
    assert changed.returncode == 0, changed.stderr
    with engine.connect() as conn:
        assert conn.execute(text("SELECT password_hash FROM console_users")).scalar_one() != stored
    engine.dispose()
    nobody = cli(env, "users", "password", "nobody", "--password-stdin", stdin="y" * 20 + "\n")
    assert nobody.returncode == 1 and "no user" in nobody.stderr
    assert cli(env, "users", "remove", "otto").returncode == 0
    assert cli(env, "users", "remove", "otto").returncode == 1
    assert cli(env, "users", "list").stdout == ""


def test_a_token_is_printed_once_as_the_last_line_kept_as_a_hash_and_revocable(env, console):
    made = cli(env, "tokens", "create", "ci", "--scope", "read")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    engine = create_engine(env["RECPIPE_DATABASE_URL"])
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT token_hash FROM api_tokens")).scalar_one()
    engine.dispose()
    assert token not in stored and len(stored) == 64
    bearer = {"Authorization": f"Bearer {token}"}
    assert requests.get(f"{console}/api/v1/recordings", headers=bearer, timeout=10).ok
    assert "ci\tread\t" in cli(env, "tokens", "list").stdout
    assert cli(env, "tokens", "revoke", "ci").returncode == 0
    refused = requests.get(f"{console}/api/v1/recordings", headers=bearer, timeout=10)
    assert refused.status_code == 401


def test_outside_the_embedded_default_the_console_needs_its_secret(env):
    without = {k: v for k, v in env.items() if k != "RECPIPE_CONSOLE_SECRET"}
    result = cli(without, "console", "--port", str(free_port()))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "RECPIPE_CONSOLE_SECRET" in result.stderr


def test_a_secret_left_at_the_examples_placeholder_is_refused_at_start(env):
    """The example's `change-me-...` console secret is long enough, and still refused: one
    line naming the setting, exit 2, nothing served."""
    placeholder = {
        **env,
        "RECPIPE_CONSOLE_SECRET": "change-me-console-secret-at-least-32-characters",
    }
    result = cli(placeholder, "console", "--port", str(free_port()), timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "RECPIPE_CONSOLE_SECRET" in result.stderr and "change-me" in result.stderr


PASSWORD = "a long enough password"


def signed_in(console: str, name: str, password: str = PASSWORD):
    browser = requests.Session()
    page = browser.get(f"{console}/login", timeout=10).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token
    answer = browser.post(
        f"{console}/login",
        data={"name": name, "password": password, "csrf_token": token.group(1)},
        allow_redirects=False,
        timeout=30,
    )
    return browser, answer.status_code


def test_a_users_sessions_are_listed_and_revoked_from_the_command_line(env, console):
    """`recpipe users sessions NAME` lists the user's signed-in browsers; `--revoke ID` ends
    one and `--revoke` all of them, from their next request on."""
    added = cli(env, "users", "add", "otto", "--role", "operator", "--password-stdin",
                stdin="a long enough password\n")  # fmt: skip
    assert added.returncode == 0, added.stderr
    (first, ok1), (second, ok2) = signed_in(console, "otto"), signed_in(console, "otto")
    assert ok1 == ok2 == 302
    listed = cli(env, "users", "sessions", "otto")
    assert listed.returncode == 0, listed.stderr
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    assert len(rows) == 2
    assert all(row[3] == "127.0.0.1" and row[4].startswith("python-requests/") for row in rows)

    def home(browser: requests.Session) -> int:
        return browser.get(f"{console}/", allow_redirects=False, timeout=10).status_code

    assert home(first) == home(second) == 200
    one = cli(env, "users", "sessions", "otto", "--revoke", rows[0][0])
    assert one.returncode == 0 and one.stdout.strip() == "ended 1 session of otto"
    assert home(first) == 302 and home(second) == 200
    assert cli(env, "users", "sessions", "otto", "--revoke", rows[0][0]).returncode == 1
    rest = cli(env, "users", "sessions", "otto", "--revoke")
    assert rest.returncode == 0 and rest.stdout.strip() == "ended 1 session of otto"
    assert home(second) == 302
    assert cli(env, "users", "sessions", "otto").stdout == ""
    assert cli(env, "users", "sessions", "nobody").returncode == 1


def test_forty_wrong_passwords_at_once_get_five_checked(env, console):
    """Sign-in attempts are counted before the password is checked, so guesses sent all at
    once do not slip under the limit of 5 a minute: 5 answered 401, 35 answered 429."""
    added = cli(env, "users", "add", "vera", "--role", "viewer", "--password-stdin",
                stdin="a long enough password\n")  # fmt: skip
    assert added.returncode == 0, added.stderr
    browsers = []
    for _ in range(40):
        browser = requests.Session()
        page = browser.get(f"{console}/login", timeout=10).text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token
        browsers.append((browser, token.group(1)))
    start = threading.Barrier(len(browsers))

    def guess(n: int) -> int:
        browser, token = browsers[n]
        data = {"name": "vera", "password": f"wrong-{n}", "csrf_token": token}
        start.wait()
        return browser.post(f"{console}/login", data=data, timeout=60).status_code

    with ThreadPoolExecutor(len(browsers)) as pool:
        statuses = sorted(pool.map(guess, range(len(browsers))))
    assert statuses == [401] * 5 + [429] * 35
    assert signed_in(console, "vera")[1] == 429  # the right password waits too, from here


def test_schemathesis_finds_the_served_api_true_to_its_openapi_document(env, console, tmp_path):
    """Every operation with generated valid and invalid input (10 examples each, a fixed
    seed): no server error, status codes, content types, headers and bodies as
    documented, no route that ignores its authentication. Opaque cursors and free-form
    `since` values that the schema cannot tell apart are refused 400 by design, so the
    check that every schema-valid input is accepted is left out."""
    token = cli(env, "tokens", "create", "st", "--scope", "admin").stdout.splitlines()[-1]
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")), "run",
            f"{console}/api/v1/openapi.json",
            "--header", f"Authorization: Bearer {token}",
            "--max-examples", "10", "--seed", "1", "--workers", "1",
            "--checks", "all", "--exclude-checks", "positive_data_acceptance",
        ],
        capture_output=True, text=True, timeout=500, cwd=tmp_path,  # its cache goes there
        env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_TELEMETRY": "false"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-6000:]
    assert "Tested: 17" in result.stdout, result.stdout[-3000:]
