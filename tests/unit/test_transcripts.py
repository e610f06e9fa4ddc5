"""The pure parts of transcripts: words on the timeline, a room's merge by time, WebVTT,
flag words, the speech spans sent to the engine, and the whisper model's checks."""

import io
import os
from pathlib import Path

import numpy as np
import pytest
import webvtt

from foundation.config import ConfigError, Settings
from tasks.transcripts import document as doc
from tasks.transcripts import engines
from tasks.transcripts.spans import (
    JOIN_GAP_S,
    chunk_samples,
    merge_spans,
    pack_spans,
    speech_in,
)


def words(*items):
    return [doc.Word(w, a, b, 0.9) for w, a, b in items]


def test_words_make_segments_cut_at_pauses():
    segments = doc.segments_from_words(
        "999", words(("hello", 0.0, 0.4), ("world", 0.5, 0.9), ("again", 2.0, 2.4))
    )
    assert [(s.text, s.start_s, s.end_s) for s in segments] == [
        ("hello world", 0.0, 0.9),
        ("again", 2.0, 2.4),
    ]


def test_a_segment_is_cut_where_its_words_pause_on_the_timeline():
    [segment] = doc.segments_from_words("7", words(("a", 1.0, 1.2), ("b", 1.3, 1.5)))
    assert doc.split_at_pauses(segment) == [segment]
    spread = doc.Segment("7", 1.0, 6.0, "a b c", tuple(words(("a", 1.0, 1.2), ("b", 1.3, 1.5),
                                                            ("c", 5.5, 6.0))))  # fmt: skip
    assert [(s.text, s.start_s, s.end_s) for s in doc.split_at_pauses(spread)] == [
        ("a b", 1.0, 1.5),
        ("c", 5.5, 6.0),
    ]


def test_words_without_spaces_are_joined_without_spaces():
    assert doc.join_words(["你", "好", "world", "こんにちは"]) == "你好 world こんにちは"
    assert doc.join_words(["안녕하세요", "여러분"]) == "안녕하세요 여러분"


def test_a_room_merges_users_by_time_on_its_clock():
    alice = doc.Transcript(
        "pocketsphinx",
        "en-us",
        "en",
        None,
        tuple(doc.segments_from_words("alice", words(("one", 1.0, 1.5)))),
    )
    bob = doc.Transcript(
        "pocketsphinx",
        "en-us",
        "en",
        None,
        tuple(doc.segments_from_words("bob", words(("two", 0.2, 0.6)))),
    )
    merged = doc.merge_by_time([(0.0, alice), (3.0, bob)])
    assert [(s.speaker, s.start_s, s.words[0].start_s) for s in merged] == [
        ("alice", 1.0, 1.0),
        ("bob", 3.2, 3.2),
    ]


HOSTILE = [
    "<script>alert(1)</script>",
    "a --> b",
    "line\nbreak\n\nblank",
    "&amp; <b>bold</b> </v>",
    "\u202eevil",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_vtt_escapes_text_and_voice_and_parses(text):
    segments = [doc.Segment(text, 0.0, 1.25, text), doc.Segment("999", 3661.5, 3662.0, "ok")]
    vtt = doc.to_vtt(segments)
    assert "<script>" not in vtt and "</v> " not in vtt.replace("</v>\n", "")
    captions = webvtt.from_buffer(io.StringIO(vtt)).captions
    assert len(captions) == 2
    assert captions[0].start == "00:00:00.000" and captions[0].end == "00:00:01.250"
    assert captions[1].start == "01:01:01.500"
    assert captions[0].raw_text.count("\n") == 0
    assert captions[0].voice == doc.vtt_escape(text)


def test_vtt_cue_has_the_voice_tag():
    vtt = doc.to_vtt([doc.Segment("999", 1.0, 2.0, "hello")])
    assert "00:00:01.000 --> 00:00:02.000\n<v 999>hello</v>" in vtt
    [caption] = webvtt.from_buffer(io.StringIO(vtt)).captions
    assert caption.voice == "999" and caption.text == "hello"


def test_flags_are_found_with_the_times_of_their_words():
    segments = doc.segments_from_words(
        "999", words(("we", 0.0, 0.2), ("meet", 0.3, 0.6), ("at", 0.7, 0.8),
                     ("the", 0.85, 0.9), ("Bridge", 1.0, 1.4), ("tonight", 1.5, 2.0))
    )  # fmt: skip
    flags = doc.find_flags(segments, ["the bridge", "night", "meet"])
    assert [(f.match, f.start_s, f.end_s) for f in flags] == [
        ("meet", 0.3, 0.6),
        ("the bridge", 0.85, 1.4),
    ]  # "night" is not a word of "tonight"
    assert flags[0].speaker == "999" and flags[0].text == "we meet at the Bridge tonight"


@pytest.mark.parametrize(
    ("text", "phrase"),
    [("그 바보야 진짜", "바보"), ("あなたはばかです", "ばか"), ("你是笨蛋吗", "笨蛋")],
)
def test_flags_in_text_without_spaces_are_found_anywhere(text, phrase):
    [flag] = doc.find_flags([doc.Segment("7", 5.0, 6.0, text)], [phrase])
    assert (flag.match, flag.start_s, flag.end_s) == (phrase, 5.0, 6.0)


def test_flag_words_file_skips_blanks_and_comments(tmp_path: Path):
    path = tmp_path / "flags.txt"
    path.write_text("# a comment\n\n  the   bridge \n바보\nmeet\nmeet\n", encoding="utf-8")
    assert doc.load_flag_words(path) == ("the bridge", "바보", "meet")


def test_transcript_json_round_trips():
    segments = tuple(doc.segments_from_words("999", words(("hi", 0.5, 0.9))))
    t = doc.Transcript("whisper", "small", "ko", 0.97, segments,
                       (doc.Flag("999", 0.5, 0.9, "hi", "hi"),))  # fmt: skip
    again = doc.from_json(t.as_json())
    assert again.as_json() == t.as_json()
    assert t.summary() == {"words": 1, "speakers": ["999"], "flags": 1}


def test_speech_spans_are_padded_joined_and_clipped():
    assert merge_spans([[1.0, 2.0], [2.5, 3.0], [9.0, 12.0]], length_s=10.0) == [
        (0.8, 3.2),
        (8.8, 10.0),
    ]


def test_spans_are_packed_into_chunks_and_mapped_back_to_the_timeline():
    chunks = pack_spans([(10.0, 12.0), (30.0, 31.0), (100.0, 160.0)], max_s=28.0)
    assert [len(c.pieces) for c in chunks] == [2, 1, 1, 1]  # 60 s: 28 + 28 + 4
    first = chunks[0]
    assert first.to_timeline(0.5) == 10.5
    assert first.to_timeline(2.0 + JOIN_GAP_S + 0.25) == 30.25
    assert first.to_timeline(2.1) == 12.0  # in the silence between: the end of the span
    assert sum(c.duration_s for c in chunks) == pytest.approx(2 + JOIN_GAP_S + 1 + 60)


def test_only_speech_is_in_a_chunk():
    rate = 100
    track = np.zeros(20 * rate, dtype=np.float32)
    track[5 * rate : 6 * rate] = 0.5
    track[15 * rate : 16 * rate] = 0.25
    [chunk] = pack_spans([(5.0, 6.0), (15.0, 16.0)])
    audio = chunk_samples(track, chunk, rate)
    assert len(audio) == pytest.approx((2 + JOIN_GAP_S) * rate, abs=2)
    assert np.allclose(audio[:rate], 0.5) and np.allclose(audio[-rate - 1 : -1], 0.25)


def test_speech_is_found_in_a_track_without_spans():
    rate = 1000
    track = np.zeros(10 * rate, dtype=np.float32)
    track[2 * rate : 4 * rate] = 0.1  # -20 dBFS
    track[int(4.3 * rate) : 5 * rate] = 0.1  # joined: the pause is under 0.5 s
    track[8 * rate : int(8.1 * rate)] = 0.1  # too short
    assert speech_in(track, rate, -40.0) == [[2.0, 5.0]]


# -- the engines: configuration and the whisper model's checks --------------------------


def test_whisper_without_a_model_directory_is_refused():
    with pytest.raises(ConfigError, match="needs RECPIPE_WHISPER_MODEL"):
        engines.check_whisper_model(None)


def test_whisper_model_that_is_not_a_directory_is_refused(tmp_path: Path):
    with pytest.raises(ConfigError, match="is not a directory"):
        engines.check_whisper_model(tmp_path / "nowhere")


def test_an_incomplete_whisper_model_names_what_is_missing(tmp_path: Path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "vocabulary.json").write_text("[]")
    with pytest.raises(ConfigError) as refused:
        engines.check_whisper_model(tmp_path)
    message = str(refused.value)
    assert "\n" not in message
    assert "missing model.bin, tokenizer.json" in message
    (tmp_path / "model.bin").write_bytes(b"x")
    (tmp_path / "tokenizer.json").write_text("{}")
    assert engines.check_whisper_model(tmp_path) == tmp_path


def test_whisper_sets_the_offline_flags_before_loading(tmp_path: Path, monkeypatch):
    for name in engines.OFFLINE_FLAGS:
        monkeypatch.delenv(name, raising=False)
    settings = Settings.from_env(
        {"RECPIPE_DATA_DIR": str(tmp_path), "RECPIPE_TRANSCRIBE": "whisper",
         "RECPIPE_WHISPER_MODEL": str(tmp_path)}
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"missing model\.bin"):
        engines.check_engine(settings)
    assert "HF_HUB_OFFLINE" not in os.environ  # refused before anything else
    for name in ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt"):
        (tmp_path / name).write_text("x")
    engines.check_engine(settings)
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"


def test_a_broken_whisper_model_fails_when_loaded(tmp_path: Path, monkeypatch):
    """A directory with every file but no real model: faster-whisper raises, offline."""
    for name in engines.OFFLINE_FLAGS:
        monkeypatch.delenv(name, raising=False)
    for name in ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt"):
        (tmp_path / name).write_text("not a model")
    with pytest.raises(Exception) as failed:
        engines.Whisper(tmp_path)
    assert not isinstance(failed.value, ConfigError)
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_transcribe_settings(tmp_path: Path):
    base = {"RECPIPE_DATA_DIR": str(tmp_path)}
    assert Settings.from_env(base).transcribe == "off"
    cfg = Settings.from_env({**base, "RECPIPE_TRANSCRIBE": "pocketsphinx",
                             "RECPIPE_TRANSCRIBE_LANGUAGE": "EN"})  # fmt: skip
    assert (cfg.transcribe, cfg.transcribe_language) == ("pocketsphinx", "en")
    assert (
        Settings.from_env({**base, "RECPIPE_TRANSCRIBE_LANGUAGE": "auto"}).transcribe_language
        is None
    )
    for bad in ({"RECPIPE_TRANSCRIBE": "vosk"}, {"RECPIPE_TRANSCRIBE_LANGUAGE": "korean"},
                {"RECPIPE_FLAG_WORDS": str(tmp_path / "none.txt")},
                {"RECPIPE_WHISPER_DEVICE": "tpu"}):  # fmt: skip
        with pytest.raises(ConfigError):
            Settings.from_env({**base, **bad})


def test_pocketsphinx_is_english_only(tmp_path: Path):
    cfg = Settings.from_env({"RECPIPE_DATA_DIR": str(tmp_path), "RECPIPE_TRANSCRIBE":
                             "pocketsphinx", "RECPIPE_TRANSCRIBE_LANGUAGE": "ko"})  # fmt: skip
    with pytest.raises(ConfigError, match="English only"):
        engines.make_engine(cfg)


def test_pocketsphinx_refuses_words_it_does_not_know(tmp_path: Path):
    words = tmp_path / "words.txt"
    words.write_text("alpha\nqzxqzx\n")
    cfg = Settings.from_env({"RECPIPE_DATA_DIR": str(tmp_path), "RECPIPE_TRANSCRIBE":
                             "pocketsphinx", "RECPIPE_POCKETSPHINX_WORDS": str(words)})  # fmt: skip
    with pytest.raises(ConfigError, match="qzxqzx"):
        engines.make_engine(cfg)


def test_doctor_line_names_engine_model_and_language(tmp_path: Path):
    cfg = Settings.from_env({"RECPIPE_DATA_DIR": str(tmp_path), "RECPIPE_TRANSCRIBE": "whisper",
                             "RECPIPE_WHISPER_MODEL": str(tmp_path),
                             "RECPIPE_TRANSCRIBE_LANGUAGE": "ja"})  # fmt: skip
    line = engines.describe(cfg)
    assert line.startswith("whisper, model ") and "int8" in line and line.endswith("language ja")
    assert engines.describe(Settings.from_env({"RECPIPE_DATA_DIR": str(tmp_path)})) == "off"


def test_a_review_carries_over_to_the_closest_flag_of_the_same_speaker_and_match():
    from datetime import UTC, datetime

    from storage.domain.transcripts import Review, carried_reviews

    when = datetime(2026, 12, 1, tzinfo=UTC)
    reviews = [Review("999", "Bridge", 10.0, when, "user:olga"),
               Review("999", "throw", 30.0, when, "user:otto")]  # fmt: skip
    flags = [
        {"speaker": "999", "match": "bridge", "start_s": 10.8},
        {"speaker": "999", "match": "bridge", "start_s": 10.3},  # closer: this one keeps it
        {"speaker": "777", "match": "throw", "start_s": 30.0},  # another speaker
        {"speaker": "999", "match": "throw", "start_s": 31.5},  # too far
        {"speaker": "999", "match": "match", "start_s": 10.0},  # another match
    ]
    assert carried_reviews(reviews, flags) == [None, reviews[0], None, None, None]
    assert carried_reviews([], flags) == [None] * 5
    assert carried_reviews(reviews, []) == []
