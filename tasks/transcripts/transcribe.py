"""Making one run's transcript (the `recpipe.transcribe` task's core): the archived audio
fetched, its speech spans recognized, the words placed on the recording's timeline (a
room's: its users' transcripts merged), flagged, written beside the media and into the
manifest, stored for search, and notified. The recording is archived and notified before
any of this starts; nothing here changes its state."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from foundation import jsonsafe
from storage.domain import RunState, RunView
from storage.domain.rooms import ROOM_SOURCE
from storage.domain.transcripts import TranscriptLineView, TranscriptState
from storage.ledger import Ledger, utcnow
from storage.objectstore import ObjectStore
from tasks import metrics
from tasks.archive import MANIFEST, archive_prefix
from tasks.media.tools import run_tool
from tasks.notify.body import (
    TRANSCRIPT_FAILED,
    TRANSCRIPT_READY,
    encode,
    transcript_body,
    transcript_webhook_id,
)
from tasks.services import Services
from tasks.transcripts import document, spans
from tasks.transcripts.engines import SAMPLE_RATE, Engine
from tasks.transcripts.spans import chunk_samples, merge_spans, pack_spans, speech_in

log = structlog.get_logger("recpipe.tasks")

AUDIO_PREFERENCE = ("wav", "flac", "m4a", "opus", "mp3", "mp4")


class TranscriptNotReadyError(Exception):
    """A room's transcript waits for its users' transcripts, still being made."""


@dataclass(frozen=True)
class TranscribeOutcome:
    run_id: str
    action: str  # "ready", "failed", "skipped"
    notification_ids: tuple[int, ...] = ()
    detail: str = ""


def transcript_name(stem: str) -> str:
    return f"{stem}.transcript.json"


def vtt_name(stem: str) -> str:
    return f"{stem}.vtt"


def queue(ledger: Ledger, run: RunView) -> bool:
    """A transcript to make for an archived run (False: queued before, or nothing to do)."""
    if run.state != RunState.ARCHIVED:
        return False
    return ledger.queue_transcript(run.id, utcnow())


def redispatch_lost(
    services: Services,
    dispatch: Callable[[str], None],
    *,
    queue_idle: Callable[[], bool] = lambda: False,
    now: datetime | None = None,
) -> list[str]:
    """The sweep's part for transcripts: those whose task was lost are handed out again.
    A queued one counts as lost only when the transcribe queue is empty (a backlog holds
    it otherwise) and it waited `RECPIPE_STUCK_AFTER_SECONDS`; a running one once it has
    run longer than a task may (`RECPIPE_TASK_TIME_LIMIT`)."""
    cfg = services.settings
    if cfg.transcribe == "off":
        return []
    now = now or utcnow()
    stuck = timedelta(seconds=cfg.stuck_after_seconds)
    lost = services.ledger.lost_transcripts(
        now,
        queued_before=now - stuck if queue_idle() else None,
        running_before=now - timedelta(seconds=cfg.task_time_limit_seconds) - stuck,
    )
    for run_id in lost:
        dispatch(run_id)
    return lost


def transcribe(
    services: Services,
    run_id: str,
    engine: Callable[[], Engine],
    *,
    flag_words: tuple[str, ...] = (),
) -> TranscribeOutcome:
    """Make the run's transcript if it is queued. Raises what the task retries on (the
    store, the ledger, the engine, TranscriptNotReadyError); `fail` records the end."""
    ledger = services.ledger
    held = ledger.start_transcript(run_id, utcnow())
    if held is None:
        return TranscribeOutcome(run_id, "skipped", detail="not queued")
    run = ledger.run(run_id)
    if run is None or run.state != RunState.ARCHIVED:
        ledger.fail_transcript(run_id, utcnow(), "the run is not archived")
        return TranscribeOutcome(run_id, "skipped", detail="not archived")
    current = ledger.recording(run.recording_id)
    if current is None or current.current_run_id != run_id:
        # A newer revision replaced this one's objects: its own transcript follows it.
        ledger.fail_transcript(run_id, utcnow(), "superseded by a newer revision")
        return TranscribeOutcome(run_id, "skipped", detail="superseded")
    started = time.process_time(), time.monotonic()
    if run.recording.source == ROOM_SOURCE:
        transcript, audio_s, speech_s = _room(ledger, run), 0.0, 0.0
    else:
        transcript, audio_s, speech_s = _recording(services, run, engine)
    transcript = _flagged(transcript, flag_words)
    cpu_s, wall_s = time.process_time() - started[0], time.monotonic() - started[1]
    urls = _write(services.archive, run, transcript)
    lines = [] if run.recording.source == ROOM_SOURCE else [
        TranscriptLineView(s.speaker, s.start_s, s.end_s, s.text) for s in transcript.segments
    ]  # fmt: skip
    flags = [f.as_json() for f in transcript.flags]
    summary = {**transcript.summary(), "audio_s": round(audio_s, 2),
               "speech_s": round(speech_s, 2), "cpu_s": round(cpu_s, 2)}  # fmt: skip
    ledger.finish_transcript(
        run_id, utcnow(), engine=transcript.engine, language=transcript.language,
        json_url=urls["json"], vtt_url=urls["vtt"], summary=summary,
        document=transcript.as_json(), lines=lines,
        flags=[] if run.recording.source == ROOM_SOURCE else flags,
    )  # fmt: skip
    metrics.observe_transcript(
        transcript.engine, wall_s, speech_s, transcript.words,
        0 if run.recording.source == ROOM_SOURCE else len(flags),
    )  # fmt: skip
    body = transcript_body(
        run, TRANSCRIPT_READY,
        transcript={**urls, "engine": transcript.engine, "language": transcript.language,
                    "language_probability": transcript.language_probability,
                    "words": transcript.words, "speakers": transcript.speakers},
        flags=flags,
    )  # fmt: skip
    ids = _notify(services, run, TRANSCRIPT_READY, body)
    log.info("transcript.ready", recording_id=run.recording_id, run_id=run_id,
             words=transcript.words, flags=len(flags), speech_s=round(speech_s, 1),
             seconds=round(wall_s, 2))  # fmt: skip
    return TranscribeOutcome(run_id, "ready", tuple(ids))


def fail(services: Services, run_id: str, error: str, reason: str) -> TranscribeOutcome:
    """The transcript could not be made: recorded, counted and notified. The recording
    stays archived."""
    ledger = services.ledger
    if not ledger.fail_transcript(run_id, utcnow(), error):
        return TranscribeOutcome(run_id, "skipped", detail="already done")
    metrics.count_transcript_failure(reason)
    run = ledger.run(run_id)
    ids: list[int] = []
    if run is not None:
        ids = _notify(services, run, TRANSCRIPT_FAILED,
                      transcript_body(run, TRANSCRIPT_FAILED, error=error))  # fmt: skip
    log.warning("transcript.failed", run_id=run_id, error=error, reason=reason)
    return TranscribeOutcome(run_id, "failed", tuple(ids), error)


def _notify(services: Services, run: RunView, event: str, body: dict[str, Any]) -> list[int]:
    urls = services.settings.notify_urls
    return services.ledger.create_notifications(
        run.id, event, transcript_webhook_id(run, event), encode(body), urls, utcnow()
    )


# -- a recording: its own audio --------------------------------------------------------


def _recording(
    services: Services, run: RunView, engine: Callable[[], Engine]
) -> tuple[document.Transcript, float, float]:
    cfg = services.settings
    speaker = _speaker(run)
    cfg.scratch_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"transcribe-{run.id}-", dir=cfg.scratch_dir))
    try:
        track = _decoded(services, run, scratch)
        audio_s = len(track) / SAMPLE_RATE
        found = run.result.get("speech")
        if found:  # a GME recording: the pipeline's own spans
            speech = [s for entry in found for s in entry.get("spans") or []]
        else:  # a CSS recording's audio
            speech = speech_in(track, SAMPLE_RATE, cfg.silence_db)
        chunks = pack_spans(merge_spans(speech, length_s=audio_s))
        recognizer = engine()
        segments: list[document.Segment] = []
        heard: Counter[str] = Counter()
        probability: dict[str, float] = {}
        for chunk in chunks:
            recognition = recognizer.recognize(chunk_samples(track, chunk, SAMPLE_RATE), speaker)
            for found in recognition.segments:
                segments += document.split_at_pauses(_placed(found, chunk))
            if recognition.language:
                heard[recognition.language] += int(chunk.duration_s * 1000)
                if recognition.language_probability is not None:
                    probability[recognition.language] = max(
                        probability.get(recognition.language, 0.0),
                        recognition.language_probability,
                    )
        language = heard.most_common(1)[0][0] if heard else cfg.transcribe_language
        speech_s = sum(c.duration_s for c in chunks)
        return (
            document.Transcript(
                engine=recognizer.name,
                model=recognizer.model,
                language=language,
                language_probability=probability.get(language or ""),
                segments=tuple(sorted(segments, key=lambda s: s.start_s)),
            ),
            audio_s,
            speech_s,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _speaker(run: RunView) -> str:
    rec = run.recording
    if rec.source == "gme":
        return str(rec.identity.get("UserID") or "")
    return str(rec.details.get("stream_id") or rec.id)


def _placed(segment: document.Segment, chunk: spans.Chunk) -> document.Segment:
    words = tuple(
        document.Word(w.w, chunk.to_timeline(w.start_s), chunk.to_timeline(w.end_s), w.p)
        for w in segment.words
    )
    return document.Segment(
        segment.speaker,
        chunk.to_timeline(segment.start_s),
        chunk.to_timeline(segment.end_s),
        segment.text,
        words,
    )


def _decoded(services: Services, run: RunView, scratch: Path) -> np.ndarray:
    """The archived audio as 16 kHz mono float samples (the best format archived)."""
    by_format = {a.get("format"): a for a in run.result.get("artifacts") or []}
    fmt = next((f for f in AUDIO_PREFERENCE if f in by_format), None)
    if fmt is None:
        raise FileNotFoundError(f"recording {run.recording_id} has no archived audio")
    name = str(by_format[fmt]["url"]).rsplit("/", 1)[-1]
    local = services.archive.fetch(archive_prefix(run) + name, scratch / name).path
    raw = scratch / "track.f32"
    run_tool(
        [services.tools.ffmpeg, "-nostdin", "-v", "error", "-y", "-i", str(local),
         "-map", "0:a:0", "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "f32le", str(raw)],
        f"decoding recording {run.recording_id} for transcription",
    )  # fmt: skip
    if raw.stat().st_size == 0:
        return np.zeros(0, dtype="<f4")
    # Mapped, not read: only the speech spans are touched (an hour is 230 MB of samples).
    return np.memmap(raw, dtype="<f4", mode="r")


# -- a room: its users' transcripts on its clock -----------------------------------------


def _room(ledger: Ledger, run: RunView) -> document.Transcript:
    parts: list[tuple[float, document.Transcript]] = []
    missing: list[str] = []
    for participant in run.result.get("participants") or []:
        rid, revision = str(participant["recording_id"]), participant.get("revision")
        found = ledger.transcript_of(rid, int(revision) if revision is not None else None)
        if found is not None and found.state in TranscriptState.PENDING:
            raise TranscriptNotReadyError(f"the transcript of {rid} is not made yet")
        if found is None or found.state != TranscriptState.READY:
            missing.append(str(participant.get("UserID")))
            continue
        parts.append(
            (float(participant.get("offset_s") or 0.0), document.from_json(found.document))
        )
    languages = Counter(t.language for _, t in parts if t.language)
    first = parts[0][1] if parts else None
    return document.Transcript(
        engine=first.engine if first else "",
        model=first.model if first else "",
        language=languages.most_common(1)[0][0] if languages else None,
        language_probability=None,
        segments=tuple(document.merge_by_time(parts)),
        extra={"missing_speakers": missing} if missing else {},
    )


def _flagged(transcript: document.Transcript, phrases: tuple[str, ...]) -> document.Transcript:
    if not phrases:
        return transcript
    flags = tuple(document.find_flags(transcript.segments, phrases))
    return document.Transcript(
        transcript.engine, transcript.model, transcript.language,
        transcript.language_probability, transcript.segments, flags, transcript.extra,
    )  # fmt: skip


# -- the files beside the media, and the manifest ---------------------------------------


def _write(store: ObjectStore, run: RunView, transcript: document.Transcript) -> dict[str, str]:
    """The JSON and the VTT beside the media, then the manifest with their sha256, so the
    manifest still lists every object under the prefix (a later revision's publish removes
    them with the rest). A manifest of another run means a newer revision was published:
    nothing is written."""
    prefix = archive_prefix(run)
    manifest_key = prefix + MANIFEST
    manifest = _read_manifest(store, manifest_key)
    if manifest.get("run_id") != run.id:
        raise SupersededError(f"the manifest under {prefix} is of another run")
    stem = run.recording_id
    files = {
        "json": (transcript_name(stem), jsonsafe.dumps(transcript.as_json(), indent=1,
                                                       ensure_ascii=False).encode(),
                 "application/json"),
        "vtt": (vtt_name(stem), document.to_vtt(transcript.segments).encode(), "text/vtt"),
    }  # fmt: skip
    entries, urls = {}, {}
    for what, (name, data, mime) in files.items():
        store.put_bytes(prefix + name, data, mime)
        entries[what] = {"key": prefix + name, "bytes": len(data), "sha256": _sha256(data)}
        urls[what] = store.url(prefix + name)
    manifest["transcript"] = {
        **entries, "engine": transcript.engine, "model": transcript.model,
        "language": transcript.language, **transcript.summary(),
    }  # fmt: skip
    store.put_bytes(
        manifest_key, jsonsafe.dumps(manifest, indent=2, ensure_ascii=False).encode(),
        "application/json",
    )  # fmt: skip
    return urls


class SupersededError(Exception):
    """The run's objects were replaced by a newer revision's."""


def _read_manifest(store: ObjectStore, key: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        fetched = store.fetch(key, Path(scratch) / MANIFEST)
        manifest: dict[str, Any] = json.loads(fetched.path.read_text())
    return manifest


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()
