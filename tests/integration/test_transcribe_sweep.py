"""The sweep's part for transcripts and `reprocess --from-step transcribe`, on the ledger
(PostgreSQL and SQLite); and a real whisper model when one is at hand."""

import os
from datetime import timedelta
from pathlib import Path

import pytest

from foundation.config import Settings
from storage.ledger import Ledger, utcnow
from storage.objectstore import store_from_url
from tasks import reprocessing
from tasks.services import Services
from tasks.transcripts import transcribe as transcribing
from tests.support.transcripts import archived


def services(ledger: Ledger, tmp_path: Path, engine: str = "pocketsphinx") -> Services:
    settings = Settings.from_env({"RECPIPE_DATA_DIR": str(tmp_path), "RECPIPE_TRANSCRIBE": engine,
                                  "RECPIPE_DATABASE_URL": ledger.url})  # fmt: skip
    store = store_from_url((tmp_path / "archive").as_uri())
    return Services(settings=settings, ledger=ledger, source=store, archive=store)


def test_the_sweep_hands_out_a_lost_transcript_again(ledger: Ledger, tmp_path: Path):
    svc = services(ledger, tmp_path)
    _, run_id = archived(ledger, "lost")
    long_ago = utcnow() - timedelta(seconds=svc.settings.stuck_after_seconds + 60)
    assert ledger.queue_transcript(run_id, long_ago)
    sent: list[str] = []
    # The queue still holds messages: the transcript may be among them.
    assert transcribing.redispatch_lost(svc, sent.append, queue_idle=lambda: False) == []
    assert transcribing.redispatch_lost(svc, sent.append, queue_idle=lambda: True) == [run_id]
    assert sent == [run_id]
    # Handed out just now: not again at the next sweep.
    assert transcribing.redispatch_lost(svc, sent.append, queue_idle=lambda: True) == []
    off = services(ledger, tmp_path, engine="off")
    assert transcribing.redispatch_lost(off, sent.append, queue_idle=lambda: True) == []


def test_reprocess_from_transcribe_makes_the_transcript_again(ledger: Ledger, tmp_path: Path):
    svc = services(ledger, tmp_path)
    rid, run_id = archived(ledger, "again")
    sent: list[str] = []

    def reprocess():
        return reprocessing.reprocess(
            svc, rid, "transcribe", start_chain=lambda _: None, deliver=lambda _: None,
            transcribe=sent.append,
        )  # fmt: skip

    first = reprocess()
    assert (first.action, first.run_id, sent) == ("transcribing", run_id, [run_id])
    assert reprocess().action == "refused"  # still queued
    ledger.start_transcript(run_id, utcnow())
    ledger.fail_transcript(run_id, utcnow(), "engine: broken")
    again = reprocess()
    assert again.action == "transcribing" and sent == [run_id, run_id]
    held = ledger.transcript(run_id)
    assert (held.state, held.error, held.attempts) == ("queued", None, 0)
    assert ledger.recording(rid).revision == 1  # no new media revision
    off = reprocessing.reprocess(
        services(ledger, tmp_path, engine="off"), rid, "transcribe",
        start_chain=lambda _: None, deliver=lambda _: None, transcribe=sent.append,
    )  # fmt: skip
    assert off.action == "refused" and "RECPIPE_TRANSCRIBE is off" in off.detail


WHISPER_MODEL = os.environ.get("RECPIPE_TEST_WHISPER_MODEL")


@pytest.mark.skipif(
    not WHISPER_MODEL, reason="RECPIPE_TEST_WHISPER_MODEL does not name a whisper model directory"
)
def test_a_real_whisper_model_hears_english_on_its_timeline(tmp_path: Path):
    """espeak-ng's words through a real local model, offline."""
    import numpy as np

    from tasks.transcripts.engines import Whisper
    from tests.support.media import speak_word

    rate = 16000
    track = np.zeros(6 * rate, dtype=np.float32)
    said = speak_word(tmp_path, "hello")
    track[2 * rate : 2 * rate + len(said)] = said
    engine = Whisper(Path(WHISPER_MODEL or ""), language=None)
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    found = engine.recognize(track, "999")
    words = [w for s in found.segments for w in s.words]
    assert found.language == "en" and 0 < (found.language_probability or 0) <= 1
    assert any("hello" in w.w.lower() and abs(w.start_s - 2.0) <= 0.5 for w in words), words


@pytest.mark.timeout(120)
def test_a_transcribe_worker_without_a_complete_model_refuses_to_start(tmp_path: Path):
    """In one line naming what is missing."""
    import subprocess
    import sys

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    env = {**os.environ, "RECPIPE_DATA_DIR": str(tmp_path / "var"),
           "RECPIPE_TRANSCRIBE": "whisper", "RECPIPE_WHISPER_MODEL": str(model),
           "RECPIPE_METRICS_PORT": "0"}  # fmt: skip
    worker = [sys.executable, "-m", "celery", "-A", "tasks", "worker", "--without-gossip",
              "--without-mingle", "--concurrency", "1"]  # fmt: skip
    refused = subprocess.run([*worker, "-Q", "transcribe"], env=env, capture_output=True,
                             text=True, timeout=120)  # fmt: skip
    assert refused.returncode == 2
    [line] = [x for x in refused.stderr.splitlines() if x.startswith("recpipe:")]
    assert "RECPIPE_WHISPER_MODEL" in line
    assert "missing model.bin, tokenizer.json, vocabulary.json or vocabulary.txt" in line
