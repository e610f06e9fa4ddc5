"""recpipe's domain: plain values, states, read views and the lifecycle rules.

Nothing here talks to a database, a bucket or the network (no SQLAlchemy, boto3 or
requests), so everything here is tested without a server.
"""

from storage.domain.console import (
    ApiTokenView,
    AuditEntryView,
    ConsoleSessionView,
    ConsoleUserView,
    HoldView,
)
from storage.domain.events import (
    CSS_EVENT_RECORDING_FILE,
    CSS_FILE_FORMATS,
    GME_EVENT_COMPLETED,
    GME_EVENT_STARTED,
    GME_EVENT_UPLOADED,
    MAX_KEY_LENGTH,
    CssFileEvent,
    CssStreamKey,
    GmeEvent,
    GmeRecordingKey,
    UnsafeKeyError,
    has_control_characters,
    safe_key,
    slug,
)
from storage.domain.states import NotificationState, RecordingState, RunState, SegmentState
from storage.domain.views import (
    CssFileView,
    DeliveryAttemptView,
    IntakeResult,
    NotificationView,
    RecordingView,
    RunHolder,
    RunView,
    SegmentView,
    StaleRun,
    StoredCallback,
)

__all__ = [
    "CSS_EVENT_RECORDING_FILE",
    "CSS_FILE_FORMATS",
    "GME_EVENT_COMPLETED",
    "GME_EVENT_STARTED",
    "GME_EVENT_UPLOADED",
    "MAX_KEY_LENGTH",
    "ApiTokenView",
    "AuditEntryView",
    "ConsoleSessionView",
    "ConsoleUserView",
    "CssFileEvent",
    "CssFileView",
    "CssStreamKey",
    "DeliveryAttemptView",
    "GmeEvent",
    "GmeRecordingKey",
    "HoldView",
    "IntakeResult",
    "NotificationState",
    "NotificationView",
    "RecordingState",
    "RecordingView",
    "RunHolder",
    "RunState",
    "RunView",
    "SegmentState",
    "SegmentView",
    "StaleRun",
    "StoredCallback",
    "UnsafeKeyError",
    "has_control_characters",
    "safe_key",
    "slug",
]
