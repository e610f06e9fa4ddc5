"""One GME room task (BizID, RoomID, TaskID) as the end-to-end tests drive it: the callback
of a user's segment event, the recording id recpipe gives that user's recording, and users
speaking in it (a tone each, uploaded where GME uploads, with their callbacks)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from storage.domain import GmeRecordingKey
from tests.support.media import make_tone

# user: (tone Hz, [(clock second of 10:00:ss, seconds), ...]), a segment each.
Speakers = Mapping[str, tuple[float, Sequence[tuple[int, float]]]]


@dataclass(frozen=True)
class RoomTask:
    biz: int
    room: str
    task: int  # > 2**53 in the tests: written as a JSON integer, as the vendor does
    record_mode: int = 0

    def recording_id(self, user: str) -> str:
        return GmeRecordingKey(
            self.biz, self.room, user, str(self.task), self.record_mode
        ).recording_id

    def callback(self, user: str, event_type: int, seq: int, file_name: str) -> bytes:
        """The unsigned body of one file event of `user`'s recording."""
        return json.dumps(
            {
                "BizID": self.biz, "RoomID": self.room, "UserID": user, "TaskID": self.task,
                "RecordMode": self.record_mode, "Timestamp": int(time.time()),
                "EventType": event_type, "Detail": {"SeqNo": seq, "FileName": file_name},
            }
        ).encode()  # fmt: skip

    def file_name(self, user: str, second: int) -> str:
        """The FileName GME gives `user`'s segment that began at 10:00:`second`."""
        day = f"2026-11-21-10-00-{second:02d}"
        return f"{self.biz}_{self.room}_{user}/{day}_{self.task}_audio.mp3"

    def speak(
        self,
        folder: Path,
        users: Speakers,
        upload: Callable[[str, Path], None],
        lost: tuple[str, int] | None = None,
    ) -> list[bytes]:
        """Each user's segments as tones at -17 dB (-35 dBFS), each given to `upload`
        (FileName, file); returns their callbacks (1, 2, 3 of each segment, but no upload
        event for the `lost` (user, SeqNo))."""
        bodies = []
        for user, (hz, segments) in users.items():
            for seq, (second, seconds) in enumerate(segments):
                path = make_tone(folder / f"{user}-{seq}.mp3", hz, seconds, gain_db=-17.0)
                key = self.file_name(user, second)
                upload(key, path)
                events = (1, 2) if (user, seq) == lost else (1, 2, 3)
                bodies += [self.callback(user, ev, seq, key) for ev in events]
        return bodies
