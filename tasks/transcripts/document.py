"""What a transcript is, with no engine, store or database in it: words placed on a
recording's timeline, segments merged by time into a room's, WebVTT, and the flag words
found in them. Plain values in, plain values out (docs/transcripts.md has the JSON)."""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

# Words further apart than this start a new segment (a line of the VTT, a search row).
SEGMENT_PAUSE_S = 0.8
# A segment longer than this is cut at its next word, so a line stays readable.
SEGMENT_MAX_S = 12.0


@dataclass(frozen=True)
class Word:
    w: str
    start_s: float
    end_s: float
    p: float | None = None

    def shifted(self, by: float) -> Word:
        return replace(self, start_s=_t(self.start_s + by), end_s=_t(self.end_s + by))

    def as_json(self) -> dict[str, Any]:
        return {"w": self.w, "start_s": self.start_s, "end_s": self.end_s, "p": self.p}


@dataclass(frozen=True)
class Segment:
    speaker: str
    start_s: float
    end_s: float
    text: str
    words: tuple[Word, ...] = ()

    def shifted(self, by: float) -> Segment:
        return replace(
            self,
            start_s=_t(self.start_s + by),
            end_s=_t(self.end_s + by),
            words=tuple(w.shifted(by) for w in self.words),
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "speaker": self.speaker,
            "start_s": self.start_s,
            "end_s": self.end_s,
            "text": self.text,
            "words": [w.as_json() for w in self.words],
        }


@dataclass(frozen=True)
class Flag:
    speaker: str
    start_s: float
    end_s: float
    match: str
    text: str = ""  # the segment it was found in: the words around it

    def as_json(self) -> dict[str, Any]:
        return {"speaker": self.speaker, "start_s": self.start_s, "end_s": self.end_s,
                "match": self.match, "text": self.text}  # fmt: skip


@dataclass(frozen=True)
class Transcript:
    engine: str
    model: str
    language: str | None
    language_probability: float | None
    segments: tuple[Segment, ...] = ()
    flags: tuple[Flag, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def words(self) -> int:
        return sum(len(s.words) or len(s.text.split()) for s in self.segments)

    @property
    def speakers(self) -> list[str]:
        return list(dict.fromkeys(s.speaker for s in self.segments))

    def as_json(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "model": self.model,
            "language": self.language,
            "language_probability": self.language_probability,
            **self.extra,
            "segments": [s.as_json() for s in self.segments],
            "flags": [f.as_json() for f in self.flags],
        }

    def summary(self) -> dict[str, Any]:
        return {"words": self.words, "speakers": self.speakers, "flags": len(self.flags)}


def from_json(doc: dict[str, Any]) -> Transcript:
    segments = tuple(
        Segment(
            speaker=str(s["speaker"]),
            start_s=float(s["start_s"]),
            end_s=float(s["end_s"]),
            text=str(s["text"]),
            words=tuple(
                Word(str(w["w"]), float(w["start_s"]), float(w["end_s"]), w.get("p"))
                for w in s.get("words") or ()
            ),
        )
        for s in doc.get("segments") or ()
    )
    flags = tuple(
        Flag(
            str(f["speaker"]),
            float(f["start_s"]),
            float(f["end_s"]),
            str(f["match"]),
            str(f.get("text") or ""),
        )
        for f in doc.get("flags") or ()
    )
    return Transcript(
        engine=str(doc.get("engine") or ""),
        model=str(doc.get("model") or ""),
        language=doc.get("language"),
        language_probability=doc.get("language_probability"),
        segments=segments,
        flags=flags,
    )


def _t(seconds: float) -> float:
    return round(max(0.0, seconds), 3)


def join_words(words: Sequence[str]) -> str:
    """Words as a line: with spaces between them, except between two characters of a
    script written without spaces (a CJK engine's words are often single characters)."""
    text = ""
    for word in words:
        if text and not (_unspaced(text[-1]) and _unspaced(word[:1])):
            text += " "
        text += word
    return text


def _unspaced(char: str) -> bool:
    if not char:
        return False
    name = unicodedata.name(char, "")
    # Korean is written with spaces between words; Chinese and Japanese are not.
    return name.startswith(("CJK", "HIRAGANA", "KATAKANA", "IDEOGRAPHIC", "HALFWIDTH KATAKANA"))


def segments_from_words(
    speaker: str,
    words: Sequence[Word],
    pause_s: float = SEGMENT_PAUSE_S,
    max_s: float = SEGMENT_MAX_S,
) -> list[Segment]:
    """An engine that gives words only (pocketsphinx): lines cut at pauses and at length."""
    segments: list[Segment] = []
    current: list[Word] = []
    for word in sorted(words, key=lambda w: w.start_s):
        if current and (
            word.start_s - current[-1].end_s >= pause_s or word.end_s - current[0].start_s > max_s
        ):
            segments.append(_segment(speaker, current))
            current = []
        current.append(word)
    if current:
        segments.append(_segment(speaker, current))
    return segments


def split_at_pauses(segment: Segment, pause_s: float = SEGMENT_PAUSE_S) -> list[Segment]:
    """A segment cut where its words, now on the recording's timeline, pause: the engine
    heard speech spans packed close together, the timeline has them apart."""
    words = segment.words
    if all(b.start_s - a.end_s < pause_s for a, b in itertools.pairwise(words)):
        return [segment]
    return segments_from_words(segment.speaker, words, pause_s)


def _segment(speaker: str, words: Sequence[Word]) -> Segment:
    return Segment(
        speaker=speaker,
        start_s=words[0].start_s,
        end_s=max(w.end_s for w in words),
        text=join_words([w.w for w in words]),
        words=tuple(words),
    )


def merge_by_time(parts: Iterable[tuple[float, Transcript]]) -> list[Segment]:
    """A room's segments: each user's transcript shifted by where the user starts on the
    room's clock, all in order of time (a tie keeps the users' order)."""
    shifted = [s.shifted(offset) for offset, transcript in parts for s in transcript.segments]
    return sorted(shifted, key=lambda s: (s.start_s, s.end_s))


# WebVTT: text and voice names escaped as the spec asks (&, <, >), one cue per segment.
def vtt_escape(text: str) -> str:
    flat = " ".join(text.split())  # a line break would end the cue
    return flat.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def vtt_time(seconds: float) -> str:
    millis = round(max(0.0, seconds) * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


def to_vtt(segments: Sequence[Segment]) -> str:
    lines = ["WEBVTT", ""]
    for index, segment in enumerate(segments, 1):
        end = max(segment.end_s, segment.start_s + 0.001)
        # The voice's annotation ends at the tag's ">", so it is escaped like the text.
        voice = vtt_escape(segment.speaker) or "unknown"
        lines += [
            str(index),
            f"{vtt_time(segment.start_s)} --> {vtt_time(end)}",
            f"<v {voice}>{vtt_escape(segment.text)}</v>",
            "",
        ]
    return "\n".join(lines)


# Flags: a word or phrase of RECPIPE_FLAG_WORDS, found case-insensitively. A phrase in an
# alphabet (Latin, Cyrillic, Greek) must stand as whole words ("ass" is not in "class");
# one in Korean, Japanese or Chinese is found anywhere (Korean particles attach to words).
def load_flag_words(path: Path) -> tuple[str, ...]:
    """One word or phrase a line, UTF-8; blank lines and lines starting with # are skipped."""
    phrases = []
    for line in path.read_text(encoding="utf-8").splitlines():
        phrase = " ".join(line.split())
        if phrase and not phrase.startswith("#"):
            phrases.append(phrase)
    return tuple(dict.fromkeys(phrases))


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def _pattern(phrase: str) -> re.Pattern[str]:
    parts = [re.escape(part) for part in _fold(phrase).split()]
    body = r"\s+".join(parts)
    left = r"(?<!\w)" if _alphabetic(phrase[:1]) else ""
    right = r"(?!\w)" if _alphabetic(phrase[-1:]) else ""
    return re.compile(left + body + right)


def _alphabetic(char: str) -> bool:
    return bool(char) and (
        char.isascii() or unicodedata.name(char, "").startswith(("LATIN", "CYRILLIC", "GREEK"))
    )


def find_flags(segments: Sequence[Segment], phrases: Sequence[str]) -> list[Flag]:
    """Each place a phrase occurs: its speaker, the times of the words it covers (the
    segment's when the engine gave no word times), the phrase and the segment's text."""
    patterns = [(phrase, _pattern(phrase)) for phrase in phrases]
    flags: list[Flag] = []
    for segment in segments:
        text, spans = _text_with_word_spans(segment)
        folded = _fold(text)
        if len(folded) != len(text):  # folding changed lengths: no word times to map to
            spans = []
        for phrase, pattern in patterns:
            for match in pattern.finditer(folded):
                covered = [w for (a, b), w in spans if a < match.end() and b > match.start()]
                start = covered[0].start_s if covered else segment.start_s
                end = covered[-1].end_s if covered else segment.end_s
                flags.append(Flag(segment.speaker, start, end, phrase, segment.text))
    return sorted(flags, key=lambda f: (f.start_s, f.speaker, f.match))


def _text_with_word_spans(segment: Segment) -> tuple[str, list[tuple[tuple[int, int], Word]]]:
    """The segment's text rebuilt from its words, with each word's character range."""
    if not segment.words:
        return segment.text, []
    text, spans = "", []
    for word in segment.words:
        if text and not (_unspaced(text[-1]) and _unspaced(word.w[:1])):
            text += " "
        spans.append(((len(text), len(text) + len(word.w)), word))
        text += word.w
    return text, spans
