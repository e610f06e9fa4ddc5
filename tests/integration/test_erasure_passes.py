"""Two passes of one erasure that overlap (`recpipe forget`'s own, and the `recpipe.forget`
task beat's sweep hands out while it runs): the one that began before the other recorded
a room's remix and ends after it does not take that room out of the report, on PostgreSQL
and SQLite."""

from __future__ import annotations

from storage.domain.players import ErasureState
from storage.ledger import Ledger, utcnow

BIZ = 1400000000
PLAYER = "p_" + "0" * 32
ROOM = "room-446946705284000919-e07ea5cba0a6"


def test_a_pass_that_read_the_report_before_another_keeps_its_rooms(ledger: Ledger):
    now = utcnow()
    erasure = ledger.begin_erasure(
        PLAYER, BIZ, "cli:test", now, own=["gme-1-aaaaaaaaaaaa"], rooms=[ROOM], held={}
    )
    stale = dict(erasure.report)  # what the sweep's pass read when it began
    ledger.end_erasure_pass(
        erasure.id, ErasureState.RUNNING, {**stale, "rooms_remixed": [ROOM]}, now
    )
    ledger.end_erasure_pass(erasure.id, ErasureState.RUNNING, {**stale, "rooms_remixed": []}, now)
    ended = ledger.erasure(erasure.id)
    assert ended is not None and ended.report["rooms_remixed"] == [ROOM]
    assert ended.report["rooms_deleted"] == []
