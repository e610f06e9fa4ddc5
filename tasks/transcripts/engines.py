"""Speech engines behind one small interface: 16 kHz mono samples in, segments with word
times (relative to those samples) and the language out.

- `pocketsphinx`: the US English model its package ships; optionally restricted to the
  words of RECPIPE_POCKETSPHINX_WORDS (a grammar of those words in any order).
- `whisper`: faster-whisper (CTranslate2) on a local model directory, never downloaded:
  the directory is checked when the engine is made and the hub's offline flags are set
  before faster-whisper is imported.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from foundation.config import ConfigError, Settings
from tasks.transcripts.document import Segment, Word, join_words, segments_from_words

SAMPLE_RATE = 16000
# Set before faster-whisper (huggingface_hub) is imported, and again before a model is
# loaded: nothing is ever fetched from a model hub.
OFFLINE_FLAGS = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
}
# What a CTranslate2 Whisper model directory must hold (faster-whisper's converter writes
# these; the tokenizer would otherwise be looked for on the hub).
WHISPER_FILES = ("model.bin", "config.json", "tokenizer.json")
WHISPER_VOCABULARY = ("vocabulary.json", "vocabulary.txt")


class EngineError(Exception):
    """The engine could not transcribe (a broken model, a decoder failure)."""


@dataclass(frozen=True)
class Recognition:
    """What an engine heard in one stretch of audio; times relative to its first sample."""

    segments: list[Segment]
    language: str | None
    language_probability: float | None


class Engine(Protocol):
    name: str
    model: str

    def recognize(self, samples: np.ndarray, speaker: str) -> Recognition: ...


# -- pocketsphinx ------------------------------------------------------------------------


class Pocketsphinx:
    """CMU PocketSphinx with the en-us model of its package; 100 frames a second."""

    name = "pocketsphinx"
    model = "en-us"
    FRAME_S = 0.01
    NOT_WORDS = frozenset({"<s>", "</s>", "<sil>", "[NOISE]", "[SPEECH]", "(NULL)"})

    def __init__(self, words: Sequence[str] = ()):
        from pocketsphinx import Config, Decoder

        config = Config(samprate=SAMPLE_RATE, loglevel="FATAL")
        self._decoder = Decoder(config)
        self.vocabulary = tuple(w.lower() for w in words)
        if self.vocabulary:
            known = [w for w in self.vocabulary if self._decoder.lookup_word(w)]
            unknown = sorted(set(self.vocabulary) - set(known))
            if unknown:
                raise ConfigError(
                    "RECPIPE_POCKETSPHINX_WORDS: not in the en-us dictionary: "
                    + ", ".join(unknown[:10])
                )
            choices = " | ".join(known)
            self._decoder.set_jsgf_string(
                "words", f"#JSGF V1.0;\ngrammar words;\npublic <words> = ( {choices} )+ ;\n"
            )
            self._decoder.activate_search("words")
            self.model = "en-us (words: " + ", ".join(known) + ")"

    def recognize(self, samples: np.ndarray, speaker: str) -> Recognition:
        pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
        # A few LSB of fixed noise: on the exact zeros recpipe pads pauses with, the
        # decoder's feature normalization finds nothing and a word after them is lost.
        noise = np.random.default_rng(0).integers(-2, 3, len(pcm), dtype="<i2")
        pcm = np.clip(pcm.astype(np.int32) + noise, -32768, 32767).astype("<i2").tobytes()
        try:
            self._decoder.start_utt()
            self._decoder.process_raw(pcm, full_utt=True)
            self._decoder.end_utt()
            found = list(self._decoder.seg() or ())  # None: nothing heard
        except RuntimeError as exc:
            raise EngineError(f"pocketsphinx: {exc}") from exc
        words = []
        for seg in found:
            text = re.sub(r"\(\d+\)$", "", seg.word)  # alternative pronunciations: "the(2)"
            if text in self.NOT_WORDS or text.startswith(("[", "<", "+")):
                continue
            words.append(
                Word(
                    text,
                    round(seg.start_frame * self.FRAME_S, 3),
                    round((seg.end_frame + 1) * self.FRAME_S, 3),
                    round(min(1.0, max(0.0, float(seg.prob))), 3),
                )
            )
        return Recognition(segments_from_words(speaker, words), "en", None)


# -- faster-whisper ----------------------------------------------------------------------


def set_offline_flags() -> None:
    os.environ.update(OFFLINE_FLAGS)


def check_whisper_model(path: Path | None) -> Path:
    """The model directory, or a ConfigError in one line naming what is missing."""
    if path is None:
        raise ConfigError(
            "RECPIPE_TRANSCRIBE=whisper needs RECPIPE_WHISPER_MODEL (a local directory)"
        )
    if not path.is_dir():
        raise ConfigError(f"RECPIPE_WHISPER_MODEL: {path} is not a directory")
    missing = [name for name in WHISPER_FILES if not (path / name).is_file()]
    if not any((path / name).is_file() for name in WHISPER_VOCABULARY):
        missing.append(" or ".join(WHISPER_VOCABULARY))
    if missing:
        raise ConfigError(
            f"RECPIPE_WHISPER_MODEL: {path} is not a complete CTranslate2 Whisper model: "
            f"missing {', '.join(missing)}"
        )
    return path


def whisper_compute_type(device: str) -> str:
    return "int8" if device == "cpu" else "int8_float16"


class Whisper:
    """faster-whisper on a local directory; int8 on CPU."""

    name = "whisper"

    def __init__(
        self, path: Path, *, device: str = "cpu", threads: int = 0, language: str | None = None
    ):
        check_whisper_model(path)
        set_offline_flags()
        from faster_whisper import WhisperModel

        self.model = path.name
        self.language = language
        self._model = WhisperModel(
            str(path),
            device=device,
            compute_type=whisper_compute_type(device),
            cpu_threads=threads,
            local_files_only=True,
        )

    def recognize(self, samples: np.ndarray, speaker: str) -> Recognition:
        try:
            found, info = self._model.transcribe(
                samples.astype(np.float32),
                language=self.language,
                word_timestamps=True,
                condition_on_previous_text=False,
                vad_filter=False,
            )
            segments = [_whisper_segment(speaker, s) for s in found]
        except (RuntimeError, ValueError) as exc:
            raise EngineError(f"whisper: {exc}") from exc
        return Recognition(
            [s for s in segments if s.text],
            info.language,
            round(float(info.language_probability), 3),
        )


def _whisper_segment(speaker: str, found: Any) -> Segment:
    words = tuple(
        Word(w.word.strip(), round(w.start, 3), round(w.end, 3), round(float(w.probability), 3))
        for w in (found.words or ())
        if w.word.strip()
    )
    text = found.text.strip() or join_words([w.w for w in words])
    return Segment(speaker, round(found.start, 3), round(found.end, 3), text, words)


# -- choosing one ------------------------------------------------------------------------


def make_engine(settings: Settings) -> Engine | None:
    """The configured engine (None when RECPIPE_TRANSCRIBE=off); a ConfigError names what
    is wrong with it, so a worker refuses to start rather than fail every task."""
    if settings.transcribe == "off":
        return None
    if settings.transcribe == "pocketsphinx":
        if settings.transcribe_language not in (None, "en"):
            raise ConfigError(
                "RECPIPE_TRANSCRIBE=pocketsphinx knows English only: "
                f"RECPIPE_TRANSCRIBE_LANGUAGE={settings.transcribe_language} needs whisper"
            )
        words: tuple[str, ...] = ()
        if settings.pocketsphinx_words is not None:
            words = tuple(
                w for line in _read(settings.pocketsphinx_words, "RECPIPE_POCKETSPHINX_WORDS")
                for w in line.split()
            )  # fmt: skip
        return Pocketsphinx(words)
    return Whisper(
        check_whisper_model(settings.whisper_model),
        device=settings.whisper_device,
        threads=settings.whisper_threads,
        language=settings.transcribe_language,
    )


def check_engine(settings: Settings) -> None:
    """What a worker that transcribes checks at start, without loading a model: the
    engine's package is installed, the whisper model directory is complete, the word list
    is readable. A ConfigError names what is wrong in one line."""
    if settings.transcribe == "off":
        return
    if settings.transcribe == "whisper":
        check_whisper_model(settings.whisper_model)
        set_offline_flags()
        package, extra = "faster_whisper", "recpipe[whisper]"
    else:
        if settings.pocketsphinx_words is not None:
            _read(settings.pocketsphinx_words, "RECPIPE_POCKETSPHINX_WORDS")
        package, extra = "pocketsphinx", "pocketsphinx"
    try:
        __import__(package)
    except ImportError as exc:
        raise ConfigError(
            f"RECPIPE_TRANSCRIBE={settings.transcribe}: {exc}; install it (pip install '{extra}')"
        ) from None


def _read(path: Path, name: str) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{name}: cannot read {path}: {exc}") from None


def describe(settings: Settings) -> str:
    """One line for `recpipe doctor`: the engine, its model and the language."""
    if settings.transcribe == "off":
        return "off"
    language = settings.transcribe_language or "auto"
    if settings.transcribe == "pocketsphinx":
        return f"pocketsphinx, model en-us (shipped with the package), language {language}"
    return (
        f"whisper, model {settings.whisper_model} on {settings.whisper_device} "
        f"({whisper_compute_type(settings.whisper_device)}), language {language}"
    )
