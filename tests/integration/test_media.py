"""The media steps with real ffmpeg: order by SeqNo, mixed layouts, bad segments named."""

import subprocess
from pathlib import Path

import pytest

from storage.objectstore import LocalStore
from tasks.gme.steps import concatenate, fetch_sources, transcode
from tasks.media import ffmpeg as cmd
from tasks.media import mp3, mp4
from tasks.media.ffmpeg import parse_probe, probe_command
from tasks.media.tools import MediaError, Tools, probe, run_tool
from tests.support.media import decode, dominant_frequency, duration


def build(store, segments, tmp_path: Path, formats=("m4a",)):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    sources = fetch_sources(store, segments, scratch, Tools(), label="rec-1")
    joined, plan = concatenate(sources, scratch, Tools(), label="rec-1")
    finished = transcode(joined, plan, formats, "rec-1", scratch, Tools(), label="rec-1")
    return sources, plan, finished.outputs


def test_mixed_sample_rates_and_channels_are_joined_in_seq_order(tone, tmp_path: Path):
    store = LocalStore(tmp_path / "src")
    store.put("r/b.mp3", tone("b.mp3", 880, 1.5, sample_rate=48000, channels=2))
    store.put("r/a.mp3", tone("a.mp3", 440, 2.0, sample_rate=22050))
    sources, plan, outputs = build(
        store, [(1, "r/b.mp3"), (0, "r/a.mp3")], tmp_path, ("m4a", "opus", "flac")
    )
    assert not plan.copy
    assert [s.seq_no for s in sources] == [0, 1]
    expected = sum(s.probe.duration_s for s in sources)
    for output in outputs:
        assert abs(duration(output.path) - expected) < 0.15, output.format
    samples = decode(outputs[0].path)
    assert abs(dominant_frequency(samples, 1.0) - 440) < 15
    assert abs(dominant_frequency(samples, 2.8) - 880) < 15


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            b"this is a text file, not audio\n" * 20,
            "segment 1 (r/bad.mp3) of recording rec-1 is not",
        ),
        (b"", "segment 1 (r/bad.mp3) of recording rec-1 is empty"),
        (
            "truncated",
            "segment 1 (r/bad.mp3) of recording rec-1 is not an audio file: is truncated",
        ),
    ],
    ids=["text-as-mp3", "zero-bytes", "truncated-mp3"],
)
def test_bad_segment_fails_with_a_message_naming_it(tone, tmp_path: Path, content, message):
    store = LocalStore(tmp_path / "src")
    store.put("r/good.mp3", tone("good.mp3", 440, 1.0))
    if content == "truncated":
        whole = tone("whole.mp3", 880, 6.0).read_bytes()
        content = whole[: len(whole) // 2]
    store.put_bytes("r/bad.mp3", content)
    with pytest.raises(MediaError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build(store, [(0, "r/good.mp3"), (1, "r/bad.mp3")], tmp_path)


def test_missing_segment_is_named(tone, tmp_path: Path):
    store = LocalStore(tmp_path / "src")
    store.put("r/good.mp3", tone("good.mp3", 440, 1.0))
    with pytest.raises(
        MediaError, match=r"segment 4 \(r/gone.mp3\) of recording rec-1 is not in the source"
    ):
        build(store, [(0, "r/good.mp3"), (4, "r/gone.mp3")], tmp_path)


ENCODINGS = {
    "cbr": ["-b:a", "32k"],
    "vbr": ["-q:a", "5"],
    "no-xing": ["-b:a", "64k", "-write_xing", "0"],
    "id3v1": ["-b:a", "48k", "-write_id3v1", "1"],
    "no-id3v2": ["-b:a", "24k", "-id3v2_version", "0"],
}


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize(
    ("sample_rate", "channels"), [(8000, 1), (16000, 1), (22050, 2), (48000, 2)]
)
def test_mp3s_are_read_without_ffprobe_and_agree_with_it(
    tmp_path: Path, encoding: str, sample_rate: int, channels: int
):
    path = tmp_path / "s.mp3"
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=440:duration=3.3",
            "-ac", str(channels), "-ar", str(sample_rate), "-c:a", "libmp3lame",
            *ENCODINGS[encoding], str(path),
        ],
        check=True,
    )  # fmt: skip
    assert mp3.read(path) is not None  # the fast path answers for what encoders write
    answer = probe(Tools(), path, "segment 0")
    reference = parse_probe(
        subprocess.run(probe_command("ffprobe", path), capture_output=True, check=True).stdout
    )
    assert answer.layout == reference.layout == ("mp3", sample_rate, channels)
    assert answer.duration_s == pytest.approx(reference.duration_s, abs=0.001)


@pytest.mark.parametrize(("sample_rate", "channels"), [(8000, 1), (44100, 2), (48000, 2)])
def test_m4a_outputs_are_measured_without_ffprobe_and_agree_with_it(
    tone, tmp_path: Path, sample_rate: int, channels: int
):
    store = LocalStore(tmp_path / "src")
    for seq in range(3):
        name = f"{seq}.mp3"
        store.put(
            f"r/{name}",
            tone(name, 440 * (seq + 1), 1.3, sample_rate=sample_rate, channels=channels),
        )
    _, plan, [output] = build(store, [(seq, f"r/{seq}.mp3") for seq in range(3)], tmp_path)
    assert plan.copy
    assert mp4.duration(output.path) is not None  # the fast path answers for ffmpeg's m4a
    assert output.duration_s == pytest.approx(duration(output.path), abs=0.001)


def test_a_thousand_segments_whose_rates_alternate_join_with_bounded_open_files(
    tone, tmp_path: Path
):
    """1,100 tiny segments alternating 44.1/48 kHz: decoded in bounded batches, so an
    ffmpeg limited to 256 open files joins them, and the archive lasts what they last."""
    store = LocalStore(tmp_path / "src")
    count = 1100
    odd = tone("odd.mp3", 880, 0.2, sample_rate=48000)
    even = tone("even.mp3", 440, 0.2, sample_rate=44100)
    segments = []
    for seq in range(count):
        key = f"r/{seq:05d}.mp3"
        store.put(key, odd if seq % 2 else even)
        segments.append((seq, key))
    limited = tmp_path / "ffmpeg-256"
    limited.write_text('#!/bin/sh\nulimit -n 256 || exit 99\nexec ffmpeg "$@"\n')
    limited.chmod(0o755)
    tools = Tools(ffmpeg=str(limited))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    sources = fetch_sources(store, segments, scratch, tools, label="rec-1")
    joined, plan = concatenate(sources, scratch, tools, label="rec-1")
    [output] = transcode(joined, plan, ("m4a",), "rec-1", scratch, tools, label="rec-1").outputs
    assert len({s.probe.sample_rate for s in sources}) == 2
    # Each segment holds its frames' length (the padding its decoder trims is silence).
    expected = sum(s.probe.duration_s for s in sources)
    assert abs(output.duration_s - expected) <= 1024 / 48000, (output.duration_s, expected)
    assert abs(duration(output.path) - expected) <= 1024 / 48000
    # The limit holds: one ffmpeg over 300 of them at once is refused.
    with pytest.raises(MediaError):
        run_tool(
            cmd.concat_command(
                str(limited), [s.path for s in sources[:300]], plan, tmp_path / "x.flac"
            ),
            "joining everything at once",
        )


def test_a_tool_is_waited_for_without_polling_and_heartbeats_while_it_runs(
    monkeypatch, tmp_path: Path
):
    """The run waits for the tool with a blocking wait (no polling) and returns once it has
    exited; the heartbeat beats meanwhile and not after; a heartbeat that fails stops the
    tool (killed, not waited out) with its error."""
    import signal
    import subprocess
    import time

    from tasks.media import tools

    monkeypatch.setattr(tools, "HEARTBEAT_SECONDS", 0.01)
    started: list[subprocess.Popen[bytes]] = []
    waits: list[float | None] = []

    class Recorded(subprocess.Popen):  # type: ignore[type-arg]
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            started.append(self)

        def wait(self, timeout: float | None = None) -> int:
            waits.append(timeout)
            return super().wait(timeout)

    monkeypatch.setattr(tools.subprocess, "Popen", Recorded)

    # The tool runs until the third heartbeat lets it end.
    stop = tmp_path / "stop"
    beats: list[bool] = []

    def beat() -> None:
        beats.append(started[0].poll() is None)  # the tool was still running
        if len(beats) == 3:
            stop.touch()

    tool = ["sh", "-c", f'while [ ! -e "{stop}" ]; do sleep 0.01; done']
    run_tool(tool, "waiting", beat)
    assert started[0].returncode == 0 and waits[0] is None  # one blocking wait
    seen = len(beats)
    assert seen >= 3 and all(beats[:3])
    time.sleep(0.1)  # ten heartbeat periods
    assert len(beats) == seen  # no beat once the run returned

    def failing() -> None:
        raise RuntimeError("ledger unreachable")

    started.clear()
    with pytest.raises(RuntimeError, match="ledger unreachable"):
        run_tool(["sleep", "30"], "sleeping", failing)
    assert started[0].returncode == -signal.SIGKILL  # stopped, not waited for


def test_segments_are_fetched_a_few_at_a_time_and_a_missing_one_stops_the_rest(
    tone, tmp_path: Path
):
    """A recording of thousands of segments holds a bounded number of fetches in flight
    (not one pending task per segment): while the first segment's fetch is held, the
    other worker fetches only the next few. The first missing segment ends the step
    without fetching what comes after it."""
    import threading
    import time

    concurrency = 2

    class HoldingStore(LocalStore):
        def __init__(self, root: Path):
            super().__init__(root)
            self.lock = threading.Lock()
            self.fetched: list[str] = []
            self.seen_while_held = -1

        def fetch(self, key, dest):
            with self.lock:
                self.fetched.append(key)
            if key.endswith("0000.mp3") and self.seen_while_held < 0:
                # Hold the first segment until the others stop coming (or 60 of them came).
                last, settled_since = -1, time.monotonic()
                while len(self.fetched) < 60 and time.monotonic() - settled_since < 1.0:
                    if len(self.fetched) != last:
                        last, settled_since = len(self.fetched), time.monotonic()
                    time.sleep(0.02)
                self.seen_while_held = len(self.fetched)
            return super().fetch(key, dest)

    segment = tone("s.mp3", 440, 0.2)
    store = HoldingStore(tmp_path / "src")
    count = 200
    for seq in range(count):
        store.put(f"r/{seq:04d}.mp3", segment)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    segments = [(seq, f"r/{seq:04d}.mp3") for seq in range(count)]
    sources = fetch_sources(store, segments, scratch, Tools(), label="r", concurrency=concurrency)
    assert [s.seq_no for s in sources] == list(range(count))
    assert 1 < store.seen_while_held <= 2 * concurrency, store.seen_while_held

    (tmp_path / "src" / "r" / "0005.mp3").unlink()
    store.fetched.clear()
    with pytest.raises(MediaError, match=r"segment 5 \(r/0005.mp3\)"):
        fetch_sources(store, segments, tmp_path / "again", Tools(), label="r", concurrency=2)
    assert "r/0199.mp3" not in store.fetched
