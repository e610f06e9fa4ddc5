"""`recpipe reprocess --wait` and the `recpipe.reprocess` Celery task with a real worker:
RabbitMQ broker (a virtual host of the test's own, so no other test run's worker takes
these messages), PostgreSQL ledger, S3 (moto's server) for source and archive, real ffmpeg,
a downstream receiver. Revisions go up, archive objects are replaced, never duplicated."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from storage.domain import GmeRecordingKey
from storage.ledger import utcnow
from tests.support.stack import Stack, parse_body
from tests.support.waits import wait_for
from webhook.callbacks import parse_gme

BIZ, TASK = 1400000000, "446946705284000555"
KEY = GmeRecordingKey(BIZ, "100", "999", TASK, 1)
RID = KEY.recording_id


@pytest.fixture
def stack(tmp_path: Path, s3_endpoint, bucket, pg_url, amqp_url, receiver, whsec):
    env = {
        "RECPIPE_DATA_DIR": str(tmp_path / "var"),
        "RECPIPE_DATABASE_URL": pg_url,
        "RECPIPE_BROKER_URL": amqp_url,
        "RECPIPE_GME_SOURCE_URL": f"s3://{bucket}/cos?endpoint_url={s3_endpoint}",
        "RECPIPE_ARCHIVE_URL": f"s3://{bucket}/archive?endpoint_url={s3_endpoint}",
        "RECPIPE_GME_SECRET_KEYS": f"{BIZ}=e2e-cli-key",
        "RECPIPE_NOTIFY_URLS": receiver.url,
        "RECPIPE_NOTIFY_SECRET": whsec,
        "RECPIPE_SETTLE_SECONDS": "3600",  # only reprocessing starts runs in these tests
    }
    s = Stack(env, tmp_path / "logs")
    s.ledger.migrate()
    s.start_worker(beat=False)
    yield s
    s.stop()


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [sys.executable, "-m", "recpipe", *args],
            env={**stack.env, "COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=300,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{args} did not end:\n{exc.stderr!r}\n{stack.log_text()}") from exc


def segment_key(seq: int) -> str:
    return f"{BIZ}_100/{seq}_{TASK}_audio.mp3"


def record_segments(stack: Stack, tone, s3_client, bucket) -> None:
    """Two uploaded segments in the source and in the ledger, as intake leaves them."""
    for seq, hz in enumerate((440.0, 660.0)):
        s3_client.upload_file(str(tone(f"{seq}.mp3", hz, 1.0)), bucket, f"cos/{segment_key(seq)}")
        body = json.dumps(
            {
                "BizID": BIZ, "RoomID": "100", "UserID": "999", "TaskID": int(TASK),
                "RecordMode": 1, "Timestamp": int(time.time()), "EventType": 3,
                "Detail": {"SeqNo": seq, "FileName": segment_key(seq)},
            }
        )  # fmt: skip
        stack.ledger.record_gme_event(
            parse_gme(body.encode()), body, {}, now=utcnow(), settle_seconds=3600
        )


def archived_keys(s3_client, bucket) -> list[str]:
    listed = s3_client.list_objects_v2(Bucket=bucket, Prefix="archive/").get("Contents", [])
    return sorted(o["Key"] for o in listed)


def test_reprocess_wait_follows_runs_to_the_end_and_replaces_the_archive(
    stack: Stack, tone, s3_client, bucket, receiver
):
    """--wait ends with a summary (exit 0 when archived, 1 when failed); each reprocess is a
    new revision under the same prefix; --from-step notify re-sends without new media."""
    record_segments(stack, tone, s3_client, bucket)
    prefix = f"archive/gme/{BIZ}/{RID}/"
    expected = [
        f"{prefix}{RID}.m4a",
        f"{prefix}{RID}.peaks.json",
        f"{prefix}manifest.json",
        f"{prefix}timeline.json",
    ]

    first = cli(stack, "reprocess", TASK, "--wait")
    assert first.returncode == 0, first.stdout + first.stderr + stack.log_text()
    assert f"{RID}: archived, revision 1" in first.stdout
    assert first.stdout.strip().endswith("1 archived")
    assert archived_keys(s3_client, bucket) == expected

    second = cli(stack, "reprocess", RID, "--from-step", "archive", "--wait")
    assert second.returncode == 0, second.stdout + second.stderr + stack.log_text()
    assert f"{RID}: archived, revision 2" in second.stdout
    assert archived_keys(s3_client, bucket) == expected
    manifest = json.loads(
        s3_client.get_object(Bucket=bucket, Key=f"{prefix}manifest.json")["Body"].read()
    )
    assert manifest["revision"] == 2 and [s["seq_no"] for s in manifest["sources"]] == [0, 1]
    current = stack.ledger.run(stack.ledger.recording(RID).current_run_id)
    assert current.result["from_step"] == "archive"
    assert [s["step"] for s in current.steps] == ["fetch", "concat", "transcode", "archive"]

    wait_for(lambda: len(receiver.requests) >= 2, timeout=60, what="two notifications")
    resend = cli(stack, "reprocess", RID, "--from-step", "notify", "--wait")
    assert resend.returncode == 0, resend.stdout + resend.stderr + stack.log_text()
    assert f"{RID}: delivered" in resend.stdout
    assert stack.ledger.recording(RID).revision == 2
    ids = [r.headers["webhook-id"] for r in receiver.requests]
    assert ids == [f"msg_{RID}_r1_archived", f"msg_{RID}_r2_archived", f"msg_{RID}_r2_archived"]
    assert parse_body(receiver.requests[2]) == parse_body(receiver.requests[1])

    s3_client.put_object(Bucket=bucket, Key=f"cos/{segment_key(0)}", Body=b"not audio" * 100)
    failed = cli(stack, "reprocess", RID, "--wait")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert f"{RID}: failed: segment 0 ({segment_key(0)}) of recording {RID}" in failed.stdout
    assert failed.stdout.strip().endswith("1 failed")
    assert archived_keys(s3_client, bucket) == expected  # revision 2's objects stay

    detail = json.loads(cli(stack, "status", RID, "--json").stdout)
    assert [r["state"] for r in detail["runs"]] == ["archived", "archived", "failed"]
    failing_step = detail["runs"][-1]["steps"][0]
    assert failing_step["step"] == "fetch" and failing_step["ok"] is False
    shown = cli(stack, "status", RID)
    assert shown.returncode == 0
    assert f"error: segment 0 ({segment_key(0)})" in shown.stdout.replace("\n", " ")


def test_reprocess_is_a_celery_task_callable_with_celery_call(
    stack: Stack, tone, s3_client, bucket
):
    """`celery -A tasks call recpipe.reprocess --args='["<TaskID>"]'` makes a new revision."""
    record_segments(stack, tone, s3_client, bucket)
    called = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "tasks", "call", "recpipe.reprocess",
         "--args", json.dumps([TASK])],
        env=stack.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert called.returncode == 0, called.stderr

    def archived():
        recording = stack.ledger.recording(RID)
        return recording if recording.state == "archived" else None

    recording = wait_for(archived, timeout=120, what="archived by the task", interval=0.5)
    assert recording.revision == 1

    subprocess.run(
        [sys.executable, "-m", "celery", "-A", "tasks", "call", "recpipe.reprocess",
         "--args", json.dumps([RID]), "--kwargs", json.dumps({"from_step": "transcode"})],
        env=stack.env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    wait_for(
        lambda: (r := stack.ledger.recording(RID)).revision == 2 and r.state == "archived",
        timeout=120,
        what="revision 2",
        interval=0.5,
    )
    assert archived_keys(s3_client, bucket) == [
        f"archive/gme/{BIZ}/{RID}/{RID}.m4a",
        f"archive/gme/{BIZ}/{RID}/{RID}.peaks.json",
        f"archive/gme/{BIZ}/{RID}/manifest.json",
        f"archive/gme/{BIZ}/{RID}/timeline.json",
    ]
