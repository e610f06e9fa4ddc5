"""One GME room task (BizID, RoomID, TaskID) as the end-to-end tests drive it: the callback
of a user's segment event, and the recording id recpipe gives that user's recording."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from storage.domain import GmeRecordingKey


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
