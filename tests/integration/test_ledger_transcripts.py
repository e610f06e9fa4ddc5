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
    hits = ledger.search_transcripts(query).hits
    assert [h.recording_id for h in hits] == [searchable[language]], (query, hits)
    [hit] = hits
    assert (hit.speaker, hit.start_s, hit.end_s) == (LINES[language][0], 12.5, 14.0)
    assert hit.text == LINES[language][1] and hit.source == "gme"


def test_search_takes_wildcards_and_quotes_literally(ledger: Ledger, searchable):
    for query in ("%", "_", '"', 'bridge" OR "오늘', "a%b", "   "):
        assert ledger.search_transcripts(query).hits == []


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
    assert ledger.search_transcripts("old words").hits == []
    assert [h.recording_id for h in ledger.search_transcripts("new words").hits] == [rid]
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


def lines_saying(ledger: Ledger, user: str, texts: list[str]) -> str:
    """A recording whose current transcript has one line of each text, a second apart."""
    rid, run_id = archived(ledger, user)
    assert ledger.queue_transcript(run_id, utcnow())
    assert ledger.start_transcript(run_id, utcnow()) is not None
    assert ledger.finish_transcript(
        run_id, utcnow(), engine="whisper", language="x", json_url="j", vtt_url="v",
        summary={}, document={"segments": []},
        lines=[TranscriptLineView(user, float(i), i + 0.5, t) for i, t in enumerate(texts)],
    )  # fmt: skip
    return rid


@pytest.mark.parametrize("query", ["bridge", "다리", "桥边见面"])
def test_search_pages_follow_on_by_keyset_without_repeats_or_gaps(ledger: Ledger, query: str):
    """Pages of 4 over 23 hits of lines of equal and unequal length (ties broken by line):
    every hit once, in the search's order, the shortest line first; lines stored between
    two pages come after the cursor or not at all, never again."""
    said = {"bridge": "at the bridge", "다리": "다리 앞에서", "桥边见面": "我们在桥边见面"}[query]
    texts = [f"{said}{' !' * (i % 5)}" for i in range(20)]
    rid = lines_saying(ledger, "frank", [*texts, "nothing to find"])
    other = lines_saying(ledger, "gina", [said, f"{said} {said}", said])
    everything = ledger.search_transcripts(query, limit=100)
    assert everything.next is None and len(everything.hits) == 23
    sizes = [len(h.text) for h in everything.hits]
    assert sizes == sorted(sizes) and {h.recording_id for h in everything.hits} == {rid, other}

    seen, cursor, pages = [], None, 0
    while True:
        page = ledger.search_transcripts(query, limit=4, cursor=cursor)
        assert len(page.hits) == 4 or page.next is None
        seen += [(h.recording_id, h.start_s) for h in page.hits]
        pages += 1
        if pages == 2:  # a new recording's lines while someone pages: the longest come later
            lines_saying(ledger, "hana", [said, f"{said} and more words than any other line"])
        if page.next is None:
            break
        cursor = page.next
    assert len(seen) == len(set(seen))  # no hit twice
    first = [(h.recording_id, h.start_s) for h in everything.hits]
    assert [s for s in seen if s in first] == first  # none skipped, in order
    assert len(seen) == 24  # the longer new line came after the cursor; the short one before


def test_a_search_cursor_not_handed_out_is_refused(ledger: Ledger):
    from storage.ledger.console import BadCursorError

    # "1", not base64, ["a", 1], [-1, 2], [1]
    for cursor in ("1", "not base64!", "WyJhIiwgMV0", "Wy0xLCAyXQ", "WzFd"):
        with pytest.raises(BadCursorError):
            ledger.search_transcripts("bridge", cursor=cursor)


def test_a_reviewed_flag_stays_reviewed_when_the_recording_is_transcribed_again(ledger: Ledger):
    """A new revision's flags for the same speaker and match about the same time keep the
    review (by whom, when); another match, another time or another speaker is open."""
    rid, run_id = archived(ledger, "ivan")
    flags = [
        {"speaker": "ivan", "start_s": 12.5, "end_s": 13.0, "match": "bridge", "text": "t"},
        {"speaker": "ivan", "start_s": 40.0, "end_s": 40.4, "match": "bridge", "text": "t"},
        {"speaker": "ivan", "start_s": 60.0, "end_s": 60.4, "match": "throw", "text": "t"},
    ]
    transcribed(ledger, run_id, "ivan", "at the bridge", flags=flags)
    first, _, third = sorted(ledger.transcript_flags(recording_id=rid), key=lambda f: f.start_s)
    when = utcnow() - timedelta(hours=2)
    ledger.review_flag(first.id, "user:olga", when)
    ledger.review_flag(third.id, "user:olga", when)

    again = ledger.claim(rid, now=utcnow(), force=True)
    ledger.finish_run(again, now=utcnow(), result={"artifacts": []}, manifest_url="m")
    moved = [
        {"speaker": "ivan", "start_s": 12.9, "end_s": 13.3, "match": "BRIDGE", "text": "t"},
        {"speaker": "ivan", "start_s": 40.1, "end_s": 40.5, "match": "bridge", "text": "t"},
        {"speaker": "ivan", "start_s": 63.0, "end_s": 63.4, "match": "throw", "text": "t"},
        {"speaker": "ivan", "start_s": 13.1, "end_s": 13.4, "match": "bridge", "text": "t"},
    ]
    transcribed(ledger, again, "ivan", "at the bridge", flags=moved)
    now_flags = sorted(ledger.transcript_flags(recording_id=rid), key=lambda f: f.start_s)
    assert [(f.start_s, f.reviewed_by) for f in now_flags] == [
        (12.9, "user:olga"),  # the closest to the reviewed one keeps its review
        (13.1, None),  # a second one near it is another word: open
        (40.1, None),  # never reviewed
        (63.0, None),  # three seconds later: another moment
    ]
    assert abs((now_flags[0].reviewed_at - when).total_seconds()) < 1
    assert sorted(f.start_s for f in ledger.transcript_flags(reviewed=False)) == [13.1, 40.1, 63.0]

    # `reprocess --from-step transcribe`: the same run made again keeps them too.
    assert ledger.requeue_transcript(again, utcnow())
    assert ledger.start_transcript(again, utcnow()) is not None
    assert ledger.finish_transcript(
        again, utcnow(), engine="whisper", language="x", json_url="j", vtt_url="v",
        summary={}, document={"segments": []}, flags=moved[:1],
    )  # fmt: skip
    [kept] = ledger.transcript_flags(recording_id=rid)
    assert (kept.start_s, kept.reviewed_by) == (12.9, "user:olga")
    assert [e.action for e in ledger.audit_trail(rid)] == ["review_flag", "review_flag"]
