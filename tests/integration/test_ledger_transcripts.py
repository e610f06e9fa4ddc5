"""Transcripts in the ledger on PostgreSQL and SQLite: search by trigrams finds Korean,
Japanese, Chinese and English (no scan of files), a new revision's lines replace the old
ones, flags are reviewed once and audited, a lost transcript is handed out again."""

from datetime import timedelta

import pytest

from storage.domain.transcripts import TranscriptLineView
from storage.ledger import Ledger, utcnow
from tests.support.transcripts import archived

LINES = {
    "ko": ("minsu", "오늘 저녁에 다리 앞에서 만나자"),
    "ja": ("haruto", "明日の試合でわざと負けてください"),
    "zh": ("wei", "我们在桥边见面吧不要告诉别人"),
    "en": ("alice", "We Meet At The Bridge tonight"),
}
QUERIES = [
    ("ko", "다리 앞"), ("ko", "만나"),  # a word with its particle, two syllables
    ("ja", "わざと負け"), ("ja", "試合"),
    ("zh", "桥边见面"), ("zh", "别人"),
    ("en", "the bridge"), ("en", "MEET"),
]  # fmt: skip


def transcribed(ledger: Ledger, run_id: str, speaker: str, text: str, flags=()) -> None:
    assert ledger.queue_transcript(run_id, utcnow())
    assert ledger.start_transcript(run_id, utcnow()) is not None
    assert ledger.finish_transcript(
        run_id, utcnow(), engine="whisper", language="x", json_url="j", vtt_url="v",
        summary={"words": 3}, document={"segments": []},
        lines=[TranscriptLineView(speaker, 12.5, 14.0, text)], flags=list(flags),
    )  # fmt: skip


@pytest.fixture
def searchable(ledger: Ledger) -> dict[str, str]:
    ids = {}
    for language, (user, text) in LINES.items():
        rid, run_id = archived(ledger, user)
        transcribed(ledger, run_id, user, text)
        ids[language] = rid
    return ids


@pytest.mark.parametrize(("language", "query"), QUERIES)
def test_search_finds_text_without_spaces_and_english(
    ledger: Ledger, searchable: dict[str, str], language: str, query: str
):
    hits = ledger.search_transcripts(query)
    assert [h.recording_id for h in hits] == [searchable[language]], (query, hits)
    [hit] = hits
    assert (hit.speaker, hit.start_s, hit.end_s) == (LINES[language][0], 12.5, 14.0)
    assert hit.text == LINES[language][1] and hit.source == "gme"


def test_search_takes_wildcards_and_quotes_literally(ledger: Ledger, searchable):
    for query in ("%", "_", '"', 'bridge" OR "오늘', "a%b", "   "):
        assert ledger.search_transcripts(query) == []


def test_search_is_served_by_the_trigram_index(ledger: Ledger):
    with ledger.engine.connect() as conn:
        if ledger.engine.dialect.name == "postgresql":
            index = conn.exec_driver_sql(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_transcript_lines_text_trgm'"
            ).scalar()
            assert "gin_trgm_ops" in index
        else:
            sql = conn.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE name = 'transcript_lines_fts'"
            ).scalar()
            assert "fts5" in sql and "trigram" in sql


def test_a_new_revisions_transcript_replaces_the_lines_and_flags(ledger: Ledger):
    rid, run_id = archived(ledger, "bob")
    flag = {"speaker": "bob", "start_s": 12.5, "end_s": 13.0, "match": "bridge", "text": "x"}
    transcribed(ledger, run_id, "bob", "old words at the bridge", flags=[flag])
    assert len(ledger.transcript_flags(recording_id=rid)) == 1
    again = ledger.claim(rid, now=utcnow(), force=True)
    ledger.finish_run(again, now=utcnow(), result={"artifacts": []}, manifest_url="m")
    transcribed(ledger, again, "bob", "new words only")
    assert ledger.search_transcripts("old words") == []
    assert [h.recording_id for h in ledger.search_transcripts("new words")] == [rid]
    assert ledger.transcript_flags(recording_id=rid) == []
    assert ledger.transcript_of(rid).run_id == again
    assert ledger.transcript_of(rid, revision=1).run_id == run_id


def test_a_flag_is_reviewed_once_and_audited(ledger: Ledger):
    rid, run_id = archived(ledger, "carol")
    flag = {"speaker": "carol", "start_s": 12.5, "end_s": 13.0, "match": "bridge", "text": "t"}
    transcribed(ledger, run_id, "carol", "at the bridge", flags=[flag])
    [open_flag] = ledger.transcript_flags(reviewed=False)
    assert (open_flag.recording_id, open_flag.match) == (rid, "bridge")
    reviewed = ledger.review_flag(open_flag.id, "olga", utcnow())
    assert reviewed.reviewed_by == "olga"
    assert ledger.review_flag(open_flag.id, "someone-else", utcnow()).reviewed_by == "olga"
    assert ledger.transcript_flags(reviewed=False) == []
    [entry] = ledger.audit_trail(rid)
    assert (entry.actor, entry.action, entry.target) == ("olga", "review_flag", str(open_flag.id))
    assert ledger.review_flag(999999, "olga", utcnow()) is None
    # Past what an INTEGER id holds (PostgreSQL would refuse the value): unknown too, not 500.
    assert ledger.review_flag(10549065092, "olga", utcnow()) is None


def test_a_lost_transcript_is_handed_out_again_once(ledger: Ledger):
    _, queued = archived(ledger, "dan")
    _, running = archived(ledger, "eve")
    now = utcnow()
    ledger.queue_transcript(queued, now - timedelta(hours=1))
    ledger.queue_transcript(running, now - timedelta(hours=1))
    ledger.start_transcript(running, now - timedelta(hours=1))
    assert ledger.start_transcript(running, now) is None  # a second message leaves it be
    later = now - timedelta(minutes=30)
    assert ledger.lost_transcripts(now, queued_before=None, running_before=later) == [running]
    assert ledger.lost_transcripts(now, queued_before=later, running_before=later) == [queued]
    assert ledger.lost_transcripts(now, queued_before=later, running_before=later) == []
    assert ledger.start_transcript(running, now) is not None
