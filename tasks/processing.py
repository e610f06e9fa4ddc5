"""Processing one run: fetch → concat → transcode → archive in one scratch directory, each
step timed in the ledger and in metrics."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog
from structlog.contextvars import bind_contextvars, reset_contextvars

from foundation import jsonsafe
from storage.domain import RecordingState, RunHolder, RunState, SegmentState
from storage.domain.rooms import ROOM_SOURCE, sources_key
from storage.ledger import Ledger, LedgerUnavailableError, RunView, utcnow
from storage.objectstore import StoreUnavailableError
from tasks import metrics, retrying
from tasks.archive import TIMELINE, publish
from tasks.css import steps as css
from tasks.gme.steps import concatenate, fetch_sources, place_sources, transcode
from tasks.media.audio import Finishing, finish_track
from tasks.media.ffmpeg import output_name
from tasks.media.finish import peaks_name
from tasks.media.tools import MediaError
from tasks.retrying import describe_fault
from tasks.rooms.mix import MIX_SAMPLE_RATE, fetch_tracks, mix_graph
from tasks.services import Services, bind_recording
from tasks.settling.gme import missing_seq_nos

log = structlog.get_logger("recpipe.tasks")


class StepRecorder:
    """Times each step of a run in the ledger and in metrics, keeps the run's heartbeat
    fresh, and puts the step into the context of every log line written during it.

    The run's step list is kept here and written whole (no read back: this task is the
    run's only writer while it holds the run), one UPDATE per step: a step's start carries
    the end of the step before it, and the last step's end (or the failure that stopped
    the run) goes with the run's end or hand-back (`steps` of `finish_run`, `fail_run`,
    `release_run`)."""

    def __init__(self, ledger: Ledger, run: RunView, label: str):
        self.ledger, self.run_id, self.label = ledger, run.id, label
        self.attempt = run.attempts
        self.steps: list[dict[str, Any]] = [dict(entry) for entry in run.steps]

    def heartbeat(self) -> None:
        self.ledger.heartbeat(self.run_id, utcnow())

    def _write(self, step: str | None, now: datetime) -> None:
        self.ledger.write_steps(self.run_id, self.steps, step=step, now=now)

    @contextmanager
    def __call__(self, step: str) -> Iterator[None]:
        started = utcnow()
        entry: dict[str, Any] = {
            "step": step,
            "started_at": started.isoformat(),
            "attempt": self.attempt,
        }
        self.steps.append(entry)
        self._write(step, started)
        bound = log.bind(recording_id=self.label, run_id=self.run_id, step=step)
        bound.info("step.started")
        context = bind_contextvars(step=step)  # for lines written inside the step
        try:
            yield
        except Exception as exc:
            metrics.count_step_failure(step, storage=isinstance(exc, StoreUnavailableError))
            error = str(exc) if isinstance(exc, MediaError) else describe_fault(exc)
            bound.warning("step.failed", error=error)
            entry.update({"finished_at": utcnow().isoformat(), "ok": False, "error": error})
            raise
        finally:
            reset_contextvars(**context)
        finished = utcnow()
        seconds = round((finished - started).total_seconds(), 3)
        metrics.observe_step(step, seconds)
        entry.update({"finished_at": finished.isoformat(), "ok": True, "seconds": seconds})
        bound.info("step.finished", seconds=seconds)


class RunInterruptedError(Exception):
    """A run stopped by a transient error (`tasks.retrying`: the object store, the network,
    the ledger): the task retries it, and the retry takes the run back as its own."""

    def __init__(self, run_id: str, cause: Exception):
        super().__init__(f"run {run_id} interrupted: {describe_fault(cause)}")
        self.run_id, self.cause = run_id, cause


def process(services: Services, run_id: str, worker: str | RunHolder) -> RunView | None:
    """fetch → concat (join) → transcode → archive for one run, in one scratch directory.

    Returns the finished run, or None when the run is done or another worker holds it.
    A MediaError fails the recording with its message. A transient error (the object
    store, the network, the ledger: `tasks.retrying`) raises RunInterruptedError after
    handing the run back to the queue as far as the ledger allows, so the task can retry;
    the retry, its `worker` a later attempt of the same task, takes back a run the ledger
    still shows as running. Anything else is a bug: the run fails at once.
    """
    cfg = services.settings
    run = services.ledger.start_run(
        run_id, worker=worker, now=utcnow(), stale_after=cfg.stuck_after_seconds
    )
    if run is None:
        return None
    recording = run.recording
    bind_recording(recording, run_id=run_id)
    step = StepRecorder(services.ledger, run, recording.id)
    scratch: Path | None = None
    try:
        cfg.scratch_dir.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f"{run_id}-", dir=cfg.scratch_dir))
        media = {"css": _css_media, ROOM_SOURCE: _room_media}.get(recording.source, _gme_media)
        try:
            result, manifest_url = media(services, run, step, scratch)
        except MediaError as exc:
            services.ledger.fail_run(run_id, now=utcnow(), error=str(exc), steps=step.steps)
            log.warning(
                "recording.failed", recording_id=recording.id, run_id=run_id, error=str(exc)
            )
        else:
            services.ledger.finish_run(
                run_id, now=utcnow(), result=result, manifest_url=manifest_url, steps=step.steps
            )
            log.info(
                "recording.archived",
                recording_id=recording.id,
                run_id=run_id,
                manifest=manifest_url,
            )
    except Exception as exc:
        if not retrying.is_transient(exc):
            _fail_at_once(services.ledger, run_id, step.steps, exc)
        else:
            _hand_back(services.ledger, run_id, step.steps)
            raise RunInterruptedError(run_id, exc) from exc
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return services.ledger.run(run_id)


def _fail_at_once(ledger: Ledger, run_id: str, steps: list[dict[str, Any]], exc: Exception) -> None:
    """A bug, not an outage: retrying cannot help. The traceback goes to the log, one line
    to the ledger (and so to the console and the notification). With the ledger gone
    meanwhile, the task's retry meets the bug again and tells the ledger then."""
    error = describe_fault(exc)
    log.error("recording.failed", run_id=run_id, error=error, exc_info=exc)
    try:
        ledger.fail_run(run_id, now=utcnow(), error=error, steps=steps, if_state=RunState.RUNNING)
    except LedgerUnavailableError as down:
        _hand_back(ledger, run_id, steps)
        raise RunInterruptedError(run_id, down) from exc


def _hand_back(ledger: Ledger, run_id: str, steps: list[dict[str, Any]]) -> None:
    """Queue the run again for the task's retry, with its steps as far as they went; with
    the ledger down the retry takes the run back instead, so this must not fail the
    failure path."""
    try:
        ledger.release_run(run_id, now=utcnow(), steps=steps)
    except LedgerUnavailableError as exc:
        log.warning("run.release_failed", run_id=run_id, error=str(exc))


def _gme_media(
    services: Services, run: RunView, step: StepRecorder, scratch: Path
) -> tuple[dict[str, Any], str]:
    cfg, recording = services.settings, run.recording
    segments = [
        (s.seq_no, s.file_name) for s in recording.segments if s.state == SegmentState.UPLOADED
    ]
    missing = list(missing_seq_nos(recording.segments))
    if not segments:
        raise MediaError(f"recording {recording.id} has no uploaded segment")
    with step("fetch"):
        sources = fetch_sources(
            services.source, segments, scratch, services.tools,
            label=recording.id, concurrency=cfg.fetch_concurrency, heartbeat=step.heartbeat,
        )  # fmt: skip
    with step("concat"):
        timeline = place_sources(
            sources, zone=cfg.gme_time_zone, gap_seconds=cfg.gap_seconds,
            pad=cfg.gme_gaps == "pad",
        )  # fmt: skip
        joined, plan = concatenate(
            sources, scratch, services.tools, label=recording.id, heartbeat=step.heartbeat,
            timeline=timeline,
        )  # fmt: skip
    with step("transcode"):
        finished = transcode(
            joined, plan, cfg.audio_formats, recording.id, scratch, services.tools,
            label=recording.id, heartbeat=step.heartbeat, timeline=timeline,
            finishing=Finishing(cfg.loudness_lufs, cfg.silence_db),
        )  # fmt: skip
    user = str(recording.identity.get("UserID") or "")
    # What players read beside the media (timeline.json), also in the manifest and body.
    placement = {**timeline.as_json(), "speech": [{"UserID": user, "spans": finished.speech}]}
    with step("archive"):
        artifacts, manifest_url = publish(
            services.archive, run, sources, finished.outputs, missing,
            extra={**placement, "loudness": finished.loudness(),
                   "peaks": finished.peaks.name, "timeline_file": TIMELINE},
            sidecars=[
                (TIMELINE, json_bytes(placement), "application/json"),
                (finished.peaks.name, finished.peaks, "application/json"),
            ],
        )  # fmt: skip
    result: dict[str, Any] = {
        "included": [s.seq_no for s in sources],
        "missing": missing,
        "artifacts": artifacts,
        "sources": [s.manifest_entry() for s in sources],
        **placement,
        "loudness": finished.loudness(),
    }
    return result, manifest_url


def json_bytes(value: object) -> bytes:
    return jsonsafe.dumps(value, indent=2, ensure_ascii=False).encode()


def _room_media(
    services: Services, run: RunView, step: StepRecorder, scratch: Path
) -> tuple[dict[str, Any], str]:
    """A room: its users' archived tracks, each delayed by its start on the room's clock,
    mixed (`tasks.rooms.mix`) and finished like a recording (normalized, speech, peaks)."""
    cfg, room, ledger = services.settings, run.recording, services.ledger
    members = [
        (m, member_run)
        for m in ledger.room_members(room.id)
        if m.state == RecordingState.ARCHIVED and m.run_id
        and (member_run := ledger.run(m.run_id)) is not None
    ]  # fmt: skip
    if not members:
        raise MediaError(f"room {room.id} has no archived recording")
    with step("fetch"):
        tracks = fetch_tracks(services.archive, members, scratch, label=room.id)
    with step("transcode"):
        out_dir = scratch / "out"
        out_dir.mkdir(exist_ok=True)
        finished = finish_track(
            [t.path for t in tracks],
            [(fmt, out_dir / output_name(room.id, fmt)) for fmt in cfg.audio_formats],
            out_dir / peaks_name(room.id),
            services.tools,
            Finishing(cfg.loudness_lufs, cfg.silence_db),
            sample_rate=MIX_SAMPLE_RATE,
            channels=2,
            source_graph=mix_graph([t.offset_s for t in tracks]),
            label=room.id,
            heartbeat=step.heartbeat,
        )
    participants = [t.participant() for t in tracks]
    speech = [t.room_speech() for t in tracks]
    members_key = sources_key([t.member for t in tracks])
    extra = {
        "room": dict(room.identity, TaskID=str(room.identity.get("TaskID"))),
        "participants": participants,
        "speech": speech,
        "loudness": finished.loudness(),
        "peaks": finished.peaks.name,
        "timeline_file": TIMELINE,
    }
    with step("archive"):
        artifacts, manifest_url = publish(
            services.archive, run, tracks, finished.outputs, [], extra=extra,
            sidecars=[
                (TIMELINE, json_bytes({"participants": participants, "speech": speech}),
                 "application/json"),
                (finished.peaks.name, finished.peaks, "application/json"),
            ],
        )  # fmt: skip
    result: dict[str, Any] = {
        "included": [],
        "missing": [],
        "artifacts": artifacts,
        "sources": [t.manifest_entry() for t in tracks],
        "participants": participants,
        "speech": speech,
        "loudness": finished.loudness(),
        "members_key": members_key,
    }
    return result, manifest_url


def _css_media(
    services: Services, run: RunView, step: StepRecorder, scratch: Path
) -> tuple[dict[str, Any], str]:
    """A CSS recording: its files fetched by URL under the fetch policy, joined in
    start-time order, then an mp4 and an m4a (RECPIPE_VIDEO_FORMATS)."""
    cfg, recording = services.settings, run.recording
    if not recording.files:
        raise MediaError(f"recording {recording.id} has no file")
    with step("fetch"):
        sources = css.fetch_files(
            recording.files, scratch, services.tools,
            css.fetch_policy(cfg, recording.details.get("appid")),
            label=recording.id, heartbeat=step.heartbeat,
        )  # fmt: skip
        css.require_audio(sources, cfg.video_formats, label=recording.id)
    with step("concat"):
        joined, probe = css.join(
            sources, scratch, services.tools, label=recording.id, heartbeat=step.heartbeat
        )
    with step("transcode"):
        outputs = css.make_outputs(
            joined, probe, cfg.video_formats, recording.id, scratch, services.tools,
            label=recording.id, heartbeat=step.heartbeat,
        )  # fmt: skip
    with step("archive"):
        artifacts, manifest_url = publish(services.archive, run, sources, outputs, [])
    result: dict[str, Any] = {
        "included": [s.seq_no for s in sources],
        "missing": [],
        "artifacts": artifacts,
        "sources": [s.manifest_entry() for s in sources],
        # The identity of exactly the files this revision holds, for the notification.
        "css": recording.details,
    }
    return result, manifest_url
