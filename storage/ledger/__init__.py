"""The ledger: every callback, recording, segment, run and notification, in SQL.

One module per aggregate, each adding its methods to the one `Ledger` front that callers
hold: `gme_intake` and `css_intake` (where a callback becomes a recording), `recordings`
(settling and claiming), `rooms` (a task's users mixed as one room), `runs`,
`notifications`, `callbacks`, `leases` (one beat at a time), `retention` (what old rows
may go), `holds` (legal holds), `transcripts` (made on the transcribe queue, searched,
flagged), `queries` (what operators read), `gauges` (what a metrics scrape reads),
`console` (the console's users, tokens, audit trail and pages), `players` (what is kept
of one player) and `erasure` (forgetting them). `engine` makes the database connection
and its sessions; `tables` are the ORM tables that the migrations follow. What the rules
are (the lifecycle) lives in `storage.domain`; what the ledger hands out are its frozen
views, never live rows.
"""

from storage.domain import (
    CssFileView,
    DeliveryAttemptView,
    IntakeResult,
    NotificationView,
    RecordingView,
    RunView,
    SegmentView,
    StoredCallback,
)
from storage.ledger.callbacks import Callbacks
from storage.ledger.console import Console
from storage.ledger.css_intake import CssIntake
from storage.ledger.engine import LedgerUnavailableError, aware, make_engine, utcnow
from storage.ledger.erasure import Erasures
from storage.ledger.gauges import Gauges, LedgerGauges
from storage.ledger.gme_intake import GmeIntake
from storage.ledger.holds import Holds
from storage.ledger.leases import Leases
from storage.ledger.notifications import Notifications
from storage.ledger.players import PlayerFootprint, Players
from storage.ledger.queries import OperatorQueries
from storage.ledger.recordings import Recordings
from storage.ledger.retention import Retention
from storage.ledger.rooms import Rooms, RoomSummary
from storage.ledger.runs import Runs
from storage.ledger.transcripts import Transcripts


class Ledger(
    GmeIntake,
    CssIntake,
    Callbacks,
    Recordings,
    Runs,
    Notifications,
    OperatorQueries,
    Gauges,
    Rooms,
    Console,
    Leases,
    Retention,
    Holds,
    Transcripts,
    Players,
    Erasures,
):
    """One database, every aggregate: `Ledger(url)`, then `migrate()` once per process."""


__all__ = [
    "CssFileView",
    "DeliveryAttemptView",
    "IntakeResult",
    "Ledger",
    "LedgerGauges",
    "LedgerUnavailableError",
    "NotificationView",
    "PlayerFootprint",
    "RecordingView",
    "RoomSummary",
    "RunView",
    "SegmentView",
    "StoredCallback",
    "aware",
    "make_engine",
    "utcnow",
]
