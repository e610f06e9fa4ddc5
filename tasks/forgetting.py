"""Forgetting a player (`recpipe forget`, POST /api/v1/players/{BizID}/{UserID}/forget):
every archived object of their recordings deleted, each room they were in remixed without
them (or deleted whole when no one else is left), their personal fields in the ledger
replaced by their keyed hash, the recordings kept as tombstones (`forgotten`), and
`player.forgotten` sent downstream. Nothing held is deleted: the erasure waits for the
release and then finishes.

An erasure and its items are written before anything is deleted; each step is safe to run
again. `forget_player` records the erasure and does what can be done now; `finish` (the
Celery task `recpipe.forget`, beat's sweep, a room's new revision) does the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import structlog

from foundation.config import ConfigError, Settings
from foundation.private import kept_secret
from storage.domain import RecordingState, RecordingView
from storage.domain.players import (
    ErasureState,
    ErasureView,
    ForgetReport,
    ItemKind,
    ItemState,
    Kept,
    add_rows,
    player_hash,
)
from storage.ledger import PlayerFootprint, utcnow
from tasks.archive import recording_prefix
from tasks.notify import body as notify_body
from tasks.services import Services

log = structlog.get_logger("recpipe.forget")

FORGET_TASK = "recpipe.forget"
PLAYER_KEY_FILE = "player-key"


class PlayerKeyMissingError(ConfigError):
    """Forget needs RECPIPE_PLAYER_KEY outside the embedded default."""


def player_key(settings: Settings) -> bytes:
    """RECPIPE_PLAYER_KEY, or on the embedded default (a SQLite ledger) a random one kept
    in the data directory (mode 0600), made on first use. The key must stay the same for
    a ledger's life: a forgotten player is found again by it."""
    if settings.player_key:
        return settings.player_key.encode()
    if not settings.database_url.startswith("sqlite"):
        raise PlayerKeyMissingError(
            "RECPIPE_PLAYER_KEY: required to forget a player outside the embedded default "
            "(use at least 32 random characters, and keep it)"
        )
    key = kept_secret(settings.data_dir, PLAYER_KEY_FILE)
    if key is None:
        raise PlayerKeyMissingError(
            f"{settings.data_dir / PLAYER_KEY_FILE}: the player key kept there is too short"
        )
    return key.encode()


def forget_player(
    svc: Services,
    biz_id: int,
    user_id: str,
    *,
    actor: str,
    dry_run: bool = False,
    now: datetime | None = None,
    deliver: Callable[[int], object] | None = None,
) -> ForgetReport:
    """Forget the player (BizID, UserID). A dry run reports the plan and changes nothing.
    Otherwise the erasure is recorded (audited), what can be done now is done, the rooms'
    remixes are asked for, and the report says how it stands. Asking again reports the
    standing erasure and finishes whatever is left. `deliver` sends each notification
    made (without it, beat's sweep does)."""
    now = now or utcnow()
    player = player_hash(player_key(svc.settings), biz_id, user_id)
    footprint = svc.ledger.player_footprint(biz_id, user_id)
    standing = svc.ledger.erasure_of(player)
    if dry_run:
        return plan(svc, footprint, player, standing)
    erasure = svc.ledger.begin_erasure(
        player,
        biz_id,
        actor,
        now,
        own=[r.id for r in footprint.recordings],
        rooms=[r.id for r in footprint.rooms],
        held={rid: h.reason for rid, h in footprint.held.items()},
    )
    log.info("forget.requested", player=player, erasure=erasure.id, actor=actor)
    return finish(svc, erasure.id, user_id=user_id, now=now, deliver=deliver)


def plan(
    svc: Services, footprint: PlayerFootprint, player: str, standing: ErasureView | None
) -> ForgetReport:
    """What a forget would do now: the objects it would delete, the revisions whose media
    goes, the rooms remixed or deleted, the rows changed, what is kept (held)."""
    own = [r for r in footprint.recordings if r.id not in footprint.held]
    rooms = [r for r in footprint.rooms if r.id not in footprint.held]
    own_ids = {r.id for r in footprint.recordings}
    remixed: list[str] = []
    deleted: list[str] = []
    for room in rooms:
        if room.state in RecordingState.TOMBSTONES:
            continue
        members = svc.ledger.room_members(room.id)
        others = [
            m
            for m in members
            if m.recording_id not in own_ids and m.state not in RecordingState.TOMBSTONES
        ]
        (remixed if others else deleted).append(room.id)
    objects = sum(_count_objects(svc, r) for r in own if r.state != RecordingState.FORGOTTEN)
    objects += sum(_count_objects(svc, r) for r in rooms if r.id in deleted)
    rows = svc.ledger.count_player_rows(
        footprint.user_id, [r.id for r in own], [r.id for r in rooms]
    )
    kept = tuple(Kept(h.recording_id, "hold", h.reason) for h in footprint.held.values())
    return ForgetReport(
        player=player,
        biz_id=footprint.biz_id,
        dry_run=True,
        state=ErasureState.PLANNED,
        recordings=tuple(r.id for r in footprint.recordings),
        objects=objects,
        revisions=sum(r.revision for r in own) + sum(r.revision for r in rooms),
        rooms_remixed=tuple(remixed),
        rooms_deleted=tuple(deleted),
        rows=rows,
        kept=kept,
        erasure_id=None if standing is None else standing.id,
    )


def _count_objects(svc: Services, recording: RecordingView) -> int:
    if recording.current_run_id is None:
        return 0
    return sum(1 for _ in svc.archive.list(recording_prefix(recording)))


def finish(
    svc: Services,
    erasure_id: int,
    *,
    user_id: str | None = None,
    now: datetime | None = None,
    deliver: Callable[[int], object] | None = None,
) -> ForgetReport:
    """Do what is left of the erasure, as far as it can go now, and record how it stands.

    Own recordings: tombstone and hash (`Ledger.forget_recording`, one transaction), then
    every object and version under its prefix deleted. Rooms: the player taken out of
    their rows, then a revision without them asked for (or, with no one else left, the
    room made a tombstone and purged); once that revision is archived, the versions the
    earlier revisions left are deleted. Held items are skipped and reported. `user_id`
    is the UserID when the request is at hand; without it (the sweep, the task) each
    step reads it from the rows that still hold it in clear. Safe to run again."""
    ledger, now = svc.ledger, now or utcnow()
    erasure = ledger.erasure(erasure_id)
    if erasure is None:
        raise LookupError(f"no erasure {erasure_id}")
    report = dict(erasure.report)
    rows: dict[str, int] = dict(report.get("rows") or {})
    own_ids = [i.recording_id for i in erasure.items if i.kind == ItemKind.OWN]
    remixed = set(report.get("rooms_remixed") or ())
    deleted = set(report.get("rooms_deleted") or ())
    todo = (ItemState.PENDING, ItemState.HELD)

    released = False
    for item in erasure.items_of(ItemKind.OWN, *todo):
        # A recording still in clear (held until now) tells the UserID its rooms need.
        user_id = user_id or ledger.user_in_clear(item.recording_id, erasure.player)
        changed = ledger.forget_recording(item.recording_id, erasure.player, now, user_id=user_id)
        if changed is None:
            ledger.set_erasure_item(erasure_id, item.recording_id, ItemState.HELD, now)
            continue
        released = released or item.state == ItemState.HELD
        rows = add_rows(rows, changed)
        # A run under way when it was forgotten may still write: purged again next pass.
        # Asked before the purge: a run that ends after it may have written after it too,
        # and one not under way now never writes again (a forgotten recording gets none).
        under_way = ledger.runs_under_way(item.recording_id)
        objects = _purge(svc, item.recording_id, now)
        state = ItemState.PENDING if under_way else ItemState.DONE
        ledger.set_erasure_item(erasure_id, item.recording_id, state, now, objects=objects)

    settle = svc.settings.settle_seconds
    erasure = ledger.erasure(erasure_id) or erasure
    # What the rooms lose: the player's recordings not held (a held one is kept, in its
    # rooms' mixes too, until released).
    gone = [i.recording_id for i in erasure.items_of(ItemKind.OWN) if i.state != ItemState.HELD]
    # A recording released from its hold was still mixed in its rooms: they go again.
    rooms = erasure.items_of(ItemKind.ROOM, *todo, *((ItemState.DONE,) if released else ()))
    for item in rooms:
        outcome = ledger.forget_in_room(
            item.recording_id, gone, erasure.player, now, settle, user_id=user_id
        )
        if outcome is None:
            ledger.set_erasure_item(erasure_id, item.recording_id, ItemState.HELD, now)
            continue
        action, revision, changed = outcome
        rows = add_rows(rows, changed)
        if action == "remix":
            remixed.add(item.recording_id)
            ledger.set_erasure_item(
                erasure_id, item.recording_id, ItemState.REMIXING, now, base_revision=revision
            )
            log.info("forget.room_remix", room_id=item.recording_id, erasure=erasure_id)
            continue
        objects = _purge(svc, item.recording_id, now) if action == "delete" else 0
        if action == "delete":
            deleted.add(item.recording_id)
        ledger.set_erasure_item(erasure_id, item.recording_id, ItemState.DONE, now, objects=objects)

    erasure = ledger.erasure(erasure_id) or erasure
    for item in erasure.items_of(ItemKind.ROOM, ItemState.REMIXING):
        remix = ledger.room_remix(item.recording_id, item.base_revision, gone, now, settle)
        if remix == "done":
            objects = _purge_earlier_revisions(svc, item.recording_id)
            ledger.set_erasure_item(
                erasure_id, item.recording_id, ItemState.DONE, now, objects=objects
            )
        elif remix == "failed":
            # Nothing of the room could be mixed without them: none of it is kept.
            objects = _purge(svc, item.recording_id, now)
            ledger.set_erasure_item(
                erasure_id, item.recording_id, ItemState.DONE, now, objects=objects
            )
    rows = add_rows(rows, ledger.scrub_late_callbacks())

    erasure = ledger.erasure(erasure_id) or erasure
    state = erasure_state(erasure)
    done = ForgetReport(
        player=erasure.player,
        biz_id=erasure.biz_id,
        dry_run=False,
        state=state,
        recordings=tuple(own_ids),
        objects=sum(i.objects for i in erasure.items),
        revisions=_revisions(svc, erasure),
        rooms_remixed=tuple(sorted(remixed)),
        rooms_deleted=tuple(sorted(deleted)),
        rows=rows,
        kept=_kept(svc, erasure),
        erasure_id=erasure_id,
    )
    ledger.end_erasure_pass(erasure_id, state, _stored(done, report), now)
    if state in (ErasureState.WAITING, ErasureState.DONE):
        _notify(svc, erasure, done, report, now, deliver)
    log.info("forget." + state, player=erasure.player, erasure=erasure_id, objects=done.objects)
    return done


def erasure_state(erasure: ErasureView) -> str:
    """Running while an item is to do or a room's remix is awaited; waiting when only held
    items are left; done."""
    states = {i.state for i in erasure.items}
    if states & {ItemState.PENDING, ItemState.REMIXING}:
        return ErasureState.RUNNING
    if ItemState.HELD in states:
        return ErasureState.WAITING
    return ErasureState.DONE


def _stored(report: ForgetReport, earlier: dict[str, object]) -> dict[str, object]:
    """The report as the erasure row keeps it (with its round of notifications)."""
    return {**report.as_json(), "round": earlier.get("round") or 1}


def _purge(svc: Services, recording_id: str, now: datetime) -> int:
    recording = svc.ledger.recording(recording_id)
    if recording is None:
        return 0
    deleted = svc.archive.purge(recording_prefix(recording))
    svc.ledger.media_purged(recording_id, now)
    return deleted


def _purge_earlier_revisions(svc: Services, room_id: str) -> int:
    """The room's objects that its current revision does not hold: on a versioned bucket
    every version but the current ones (the earlier revisions' mixes under the same
    keys, and the delete markers left of keys no longer written)."""
    room = svc.ledger.recording(room_id)
    if room is None:
        return 0
    return svc.archive.purge_noncurrent(recording_prefix(room))


def _revisions(svc: Services, erasure: ErasureView) -> int:
    """Revisions whose media went: every revision of the player's recordings and of the
    rooms deleted, the earlier revisions of the rooms remixed."""
    total = 0
    for item in erasure.items:
        if item.state != ItemState.DONE:
            continue
        rec = svc.ledger.recording(item.recording_id)
        if rec is None:
            continue
        total += (
            item.base_revision
            if item.kind == ItemKind.ROOM and item.base_revision
            else rec.revision
        )
    return total


def _kept(svc: Services, erasure: ErasureView) -> tuple[Kept, ...]:
    kept = []
    for item in erasure.items:
        if item.state != ItemState.HELD:
            continue
        hold = svc.ledger.hold_on(item.recording_id)
        kept.append(Kept(item.recording_id, "hold", hold.reason if hold else ""))
    return tuple(kept)


def _notify(
    svc: Services,
    erasure: ErasureView,
    report: ForgetReport,
    earlier: dict[str, object],
    now: datetime,
    deliver: Callable[[int], object] | None,
) -> None:
    """`player.forgotten`, once per URL for each round and state (waiting, done) the
    erasure reaches: the same webhook-id when sent again, so receivers deduplicate."""
    urls = svc.settings.notify_urls
    if not urls:
        return
    webhook = notify_body.forgotten_webhook_id(
        erasure.player, erasure.id, int(str(earlier.get("round") or 1)), report.state
    )
    body = notify_body.encode(notify_body.forgotten_body(report, now))
    created = svc.ledger.create_erasure_notifications(
        erasure.id, notify_body.PLAYER_FORGOTTEN, webhook, body, urls, now
    )
    for notification_id in created:
        if deliver is not None:
            deliver(notification_id)


def resume_unfinished(svc: Services, send: Callable[[int], object]) -> list[int]:
    """The sweep's part: the UserID a vendor's late callback brought to a forgotten
    recording is hashed, and each erasure with something to do (running, or waiting on a
    hold since released) is handed to `recpipe.forget` again."""
    svc.ledger.scrub_late_callbacks()
    found = svc.ledger.unfinished_erasures()
    for erasure_id in found:
        send(erasure_id)
    return found
