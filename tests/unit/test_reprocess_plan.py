"""What `recpipe reprocess --from-step` plans for a recording, before anything runs."""

from datetime import UTC, datetime

import pytest

from storage.domain import RecordingView, RunView
from tasks.reprocessing import STEPS, UnknownStepError, plan_reprocess

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
URLS = ("https://example.invalid/hook",)


def recording(state: str = "archived", revision: int = 1) -> RecordingView:
    return RecordingView(
        id="gme-1-abc", source="gme", state=state, revision=revision, first_event_at=NOW,
        last_event_at=NOW, settle_due_at=None, details={}, identity={"TaskID": "1"},
        current_run_id="run-1" if revision else None,
    )  # fmt: skip


def run(state: str = "archived", rec: RecordingView | None = None) -> RunView:
    rec = rec or recording()
    return RunView(id="run-1", recording_id=rec.id, revision=rec.revision, state=state,
                   attempts=1, recording=rec)  # fmt: skip


@pytest.mark.parametrize("step", ["fetch", "concat", "transcode", "archive"])
def test_media_steps_make_the_next_revision_from_fetch(step: str):
    plan = plan_reprocess(recording(revision=2), run(), step, URLS)
    assert plan.action == "media"
    assert plan.detail.startswith("revision 3: fetch, concat, transcode, archive, notify")
    assert ("so from fetch" in plan.detail) == (step != "fetch")


def test_a_recording_being_processed_is_refused():
    plan = plan_reprocess(recording(state="processing"), run(state="running"), "fetch", URLS)
    assert (plan.action, plan.detail) == ("refuse", "already processing")


@pytest.mark.parametrize("outcome", ["archived", "failed"])
def test_notify_resends_the_current_revisions_outcome(outcome: str):
    plan = plan_reprocess(recording(state=outcome), run(state=outcome), "notify", URLS)
    assert plan.action == "notify"
    assert plan.detail == f"re-send revision 1's recording.{outcome} to 1 URL(s)"


@pytest.mark.parametrize(
    ("rec", "current", "urls", "why"),
    [
        (recording(state="collecting", revision=0), None, URLS, "no finished run"),
        (recording(state="processing"), run(state="running"), URLS, "no finished run"),
        (recording(), run(), (), "RECPIPE_NOTIFY_URLS is not set"),
    ],
)
def test_notify_without_a_finished_run_or_urls_is_refused(rec, current, urls, why):
    plan = plan_reprocess(rec, current, "notify", urls)
    assert plan.action == "refuse" and why in plan.detail


def test_an_unknown_step_is_an_error_listing_the_steps():
    with pytest.raises(UnknownStepError, match="unknown step 'mux': choose from fetch"):
        plan_reprocess(recording(), run(), "mux", URLS)
    assert STEPS == ("fetch", "concat", "transcode", "archive", "notify", "transcribe")


def test_transcribe_redoes_the_current_archived_revisions_transcript():
    plan = plan_reprocess(recording(), run(), "transcribe", URLS, engine="pocketsphinx")
    assert plan.action == "transcribe" and "with pocketsphinx" in plan.detail


@pytest.mark.parametrize(
    ("engine", "current", "why"),
    [("off", run(), "RECPIPE_TRANSCRIBE is off"), ("whisper", None, "no archived revision")],
)
def test_transcribe_without_an_engine_or_an_archive_is_refused(engine, current, why):
    plan = plan_reprocess(recording(), current, "transcribe", URLS, engine=engine)
    assert plan.action == "refuse" and why in plan.detail
