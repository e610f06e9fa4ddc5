"""Silence archives, on PostgreSQL and SQLite: a level that does not exist is null with
`"silent": true` in the manifest, the ledger and the notification, and every JSON written
is strict (PostgreSQL's json type refuses NaN and Infinity)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from foundation.config import Settings
from storage.domain import GmeEvent, GmeRecordingKey
from storage.ledger import Ledger, RunView, utcnow
from storage.objectstore import LocalStore
from tasks import processing
from tasks.notify.body import encode, notification_body
from tasks.services import Services
from tests.support.media import decode, duration

BIZ, TASK = 1400000000, "446946705284000777"


def strict(text: str | bytes) -> Any:
    """json.loads that refuses NaN and Infinity, as PostgreSQL and JSON.parse do."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def make_audio(path: Path, expression: str, seconds: float) -> Path:
    """An mp3 of `expression` (an aevalsrc sample formula) at 44.1 kHz mono."""
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y", "-f", "lavfi",
         "-i", f"aevalsrc={expression}:s=44100:d={seconds}",
         "-c:a", "libmp3lame", "-b:a", "64k", str(path)],
        check=True,
    )  # fmt: skip
    return path


SILENCE = "0"
CLICK = "if(eq(n\\,100000)\\,0.9\\,0)"  # one sample at 2.27 s
SPEECH = "0.1*sin(2*PI*440*t)"


class Chain:
    """Recordings processed in-process by tasks.processing on a real ledger and ffmpeg."""

    def __init__(self, ledger: Ledger, tmp_path: Path):
        settings = Settings.from_env(
            {"RECPIPE_DATA_DIR": str(tmp_path / "var"), "RECPIPE_DATABASE_URL": ledger.url}
        )
        self.ledger, self.tmp = ledger, tmp_path
        self.source, self.archive = LocalStore(tmp_path / "source"), LocalStore(tmp_path / "arch")
        self.services = Services(settings, ledger, self.source, self.archive)

    def record(self, user: str, segment: Path) -> RunView:
        key = GmeRecordingKey(BIZ, "100", user, TASK, 0)
        file_name = f"{BIZ}_100_{user}/2026-01-01-10-00-00_{TASK}_audio.mp3"
        self.source.put(file_name, segment)
        event = GmeEvent(key, 3, 0, file_name, 1675930605)
        self.ledger.record_gme_event(event, "{}", {}, now=utcnow(), settle_seconds=0)
        return self.run(key.recording_id)

    def run(self, recording_id: str) -> RunView:
        run_id = self.ledger.claim(recording_id, now=utcnow(), force=True)
        assert run_id is not None
        run = processing.process(self.services, run_id, "test-worker")
        assert run is not None and run.state == "archived", run and (run.state, run.error)
        return run

    def manifest(self, run: RunView) -> dict[str, Any]:
        matches = [
            p for p in (self.tmp / "arch").rglob("manifest.json")
            if json.loads(p.read_text())["run_id"] == run.id
        ]  # fmt: skip
        assert len(matches) == 1, matches
        return strict(matches[0].read_text())

    def output(self, run: RunView, fmt: str = "m4a") -> Path:
        [artifact] = [a for a in run.result["artifacts"] if a["format"] == fmt]
        [path] = (self.tmp / "arch").rglob(Path(artifact["url"]).name)
        return path


@pytest.fixture
def chain(ledger: Ledger, tmp_path: Path) -> Chain:
    return Chain(ledger, tmp_path)


def check_strict_everywhere(chain: Chain, run: RunView) -> dict[str, Any]:
    """The manifest, the ledger's stored result and the notification body are strict JSON;
    the manifest's loudness block is returned."""
    manifest = chain.manifest(run)
    stored = chain.ledger.run(run.id)
    assert stored is not None
    strict(json.dumps(stored.result))  # as read back from the database
    strict(encode(notification_body(stored)))
    assert stored.result["loudness"] == manifest["loudness"]
    return manifest["loudness"]


def test_a_silent_recording_archives_with_null_levels_marked_silent(chain: Chain):
    """6 s of digital silence: archived (not retried), its levels null and `silent`, no gain,
    no speech, the full length kept."""
    run = chain.record("999", make_audio(chain.tmp / "silent.mp3", SILENCE, 6.0))
    loudness = check_strict_everywhere(chain, run)
    assert loudness["before"]["silent"] is True
    assert loudness["before"]["integrated_lufs"] is None
    assert loudness["before"]["true_peak_dbtp"] is None
    assert loudness["after"]["silent"] is True and loudness["after"]["integrated_lufs"] is None
    assert run.result["speech"] == [{"UserID": "999", "spans": []}]
    archived = chain.output(run)
    assert abs(duration(archived) - 6.0) < 0.1
    assert float(abs(decode(archived)).max()) == 0.0  # no gain, no noise made up


def test_a_silent_recording_with_one_click_archives_with_finite_levels(chain: Chain):
    """Silence but for one full-scale sample: archived, levels are numbers, the click never
    goes over -1 dBTP in the output."""
    run = chain.record("999", make_audio(chain.tmp / "click.mp3", CLICK, 6.0))
    loudness = check_strict_everywhere(chain, run)
    after = loudness["after"]
    assert after.get("silent") is not True or after["true_peak_dbtp"] is not None
    assert after["true_peak_dbtp"] is not None and after["true_peak_dbtp"] <= -1.0
    samples = decode(chain.output(run))
    assert float(abs(samples).max()) < 0.95


def test_a_silent_user_in_a_room_still_mixes(chain: Chain):
    """Alice speaks, Bob is muted throughout: both archive, the room mixes Alice's audio,
    Bob's levels are null and silent, every JSON strict."""
    alice = chain.record("alice", make_audio(chain.tmp / "a.mp3", SPEECH, 4.0))
    bob = chain.record("bob", make_audio(chain.tmp / "b.mp3", SILENCE, 4.0))
    assert check_strict_everywhere(chain, bob)["before"]["silent"] is True
    assert check_strict_everywhere(chain, alice)["before"]["integrated_lufs"] is not None
    chain.ledger.note_room_member(alice.recording_id, now=utcnow(), settle_seconds=0)
    room_id = chain.ledger.note_room_member(bob.recording_id, now=utcnow(), settle_seconds=0)
    assert room_id is not None
    room = chain.run(room_id)
    loudness = check_strict_everywhere(chain, room)
    assert loudness["after"]["integrated_lufs"] is not None
    assert abs(loudness["after"]["integrated_lufs"] - (-16.0)) <= 1.0
    assert [p["UserID"] for p in room.result["participants"]] == ["alice", "bob"]
    speech = {s["UserID"]: s["spans"] for s in room.result["speech"]}
    assert speech["bob"] == [] and speech["alice"]
    assert float(abs(decode(chain.output(room))).max()) > 0.1


def test_a_non_finite_number_in_any_result_is_stored_as_null(chain: Chain):
    """The one place strictness is enforced (the engine's JSON serializer) catches a field
    no code made finite: stored as null, the run ends archived."""
    ledger = chain.ledger
    key = GmeRecordingKey(BIZ, "100", "nan", TASK, 0)
    event = GmeEvent(key, 3, 0, f"{BIZ}_100_nan/x_{TASK}.mp3", 1675930605)
    ledger.record_gme_event(event, "{}", {}, now=utcnow(), settle_seconds=0)
    run_id = ledger.claim(key.recording_id, now=utcnow(), force=True)
    result = {"artifacts": [], "odd": [float("nan"), {"deep": float("-inf")}], "ok": 1.5}
    ledger.finish_run(run_id, now=utcnow(), result=result, manifest_url="m")
    stored = ledger.run(run_id)
    assert stored is not None and stored.state == "archived"
    assert stored.result["odd"] == [None, {"deep": None}] and stored.result["ok"] == 1.5
