"""A player who asks to be forgotten: the keyed hash that replaces their UserID, what an
erasure reports, and how a UserID is taken out of text and JSON. Pure: no database, no
store.

The hash is keyed (HMAC-SHA256 with RECPIPE_PLAYER_KEY) so that it cannot be reversed by
hashing every likely UserID, and stable for one key, so that a second request for the same
player finds the standing erasure and the downstream systems can match it with theirs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

PLAYER_PREFIX = "p_"


def player_hash(key: bytes, biz_id: int, user_id: str) -> str:
    """`p_` and 32 hex digits of HMAC-SHA256(key, "<BizID>\\0<UserID>")."""
    digest = hmac.new(key, f"{biz_id}\x00{user_id}".encode(), hashlib.sha256).hexdigest()
    return PLAYER_PREFIX + digest[:32]


class ErasureState:
    """An erasure's state (`erasures.state`) and what its report says."""

    PLANNED = "planned"  # a dry run: nothing changed
    RUNNING = "running"  # recorded, some of it still to do
    WAITING = "waiting"  # all that may go went; held items are left until released
    DONE = "done"
    UNFINISHED = (RUNNING, WAITING)


class ItemKind:
    OWN = "own"  # one of the player's recordings
    ROOM = "room"  # a room they were in


class ItemState:
    """An erasure item's state (`erasure_items.state`)."""

    PENDING = "pending"  # still to do
    HELD = "held"  # on hold: kept until released
    REMIXING = "remixing"  # a room whose next revision, without the player, is asked for
    DONE = "done"


@dataclass(frozen=True)
class Kept:
    """An item an erasure left alone, and why."""

    id: str
    reason: str  # "hold"
    hold_reason: str = ""

    def as_json(self) -> dict[str, str]:
        return {"id": self.id, "reason": self.reason, "hold_reason": self.hold_reason}


@dataclass(frozen=True)
class ForgetReport:
    """What a forget did, or (dry run) would do. Never the UserID."""

    player: str
    biz_id: int
    dry_run: bool
    state: str
    recordings: tuple[str, ...] = ()
    objects: int = 0
    revisions: int = 0
    rooms_remixed: tuple[str, ...] = ()
    rooms_deleted: tuple[str, ...] = ()
    rows: Mapping[str, int] = field(default_factory=dict)
    kept: tuple[Kept, ...] = ()
    erasure_id: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "player": self.player,
            "BizID": self.biz_id,
            "dry_run": self.dry_run,
            "state": self.state,
            "erasure": self.erasure_id,
            "recordings": list(self.recordings),
            "objects": self.objects,
            "revisions": self.revisions,
            "rooms_remixed": list(self.rooms_remixed),
            "rooms_deleted": list(self.rooms_deleted),
            "rows": dict(sorted(self.rows.items())),
            "kept": [k.as_json() for k in self.kept],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ForgetReport:
        return cls(
            player=str(data["player"]),
            biz_id=int(data["BizID"]),
            dry_run=bool(data.get("dry_run")),
            state=str(data["state"]),
            recordings=tuple(data.get("recordings") or ()),
            objects=int(data.get("objects") or 0),
            revisions=int(data.get("revisions") or 0),
            rooms_remixed=tuple(data.get("rooms_remixed") or ()),
            rooms_deleted=tuple(data.get("rooms_deleted") or ()),
            rows={str(k): int(v) for k, v in (data.get("rows") or {}).items()},
            kept=tuple(
                Kept(str(k["id"]), str(k["reason"]), str(k.get("hold_reason") or ""))
                for k in data.get("kept") or ()
            ),
            erasure_id=data.get("erasure"),
        )


def add_rows(*counts: Mapping[str, int]) -> dict[str, int]:
    """Rows changed per table, summed; tables with none left out."""
    total: dict[str, int] = {}
    for count in counts:
        for table, n in count.items():
            total[table] = total.get(table, 0) + n
    return {t: n for t, n in sorted(total.items()) if n}


# -- taking a UserID out --------------------------------------------------------------------


def spellings(user_id: str) -> tuple[str, ...]:
    """How a UserID may be written in stored text: as is, and JSON-escaped (with and
    without non-ASCII escapes), longest first so that a replacement never leaves a part."""
    forms = {
        user_id,
        json.dumps(user_id, ensure_ascii=False)[1:-1],
        json.dumps(user_id, ensure_ascii=True)[1:-1],
    }
    return tuple(sorted((f for f in forms if f), key=len, reverse=True))


def _pattern(user_id: str) -> re.Pattern[str]:
    """Any spelling of the UserID standing as a token of its own: not inside a longer run
    of letters or digits (a UserID `999` is taken out of `1400000000_77_999/0.mp3` and
    `UserID=999`, never out of a timestamp `1765999123`)."""
    forms = "|".join(re.escape(f) for f in spellings(user_id))
    return re.compile(rf"(?<![^\W_])(?:{forms})(?![^\W_])")


def scrub_text(text: str, user_id: str, player: str) -> str:
    """`text` with every spelling of the UserID (as a token of its own) replaced by the
    player's hash."""
    if not user_id or not any(form in text for form in spellings(user_id)):
        return text
    return _pattern(user_id).sub(player, text)


# Where a room's JSON (its result, manifest, notification, transcript) names a user.
USER_KEYS = frozenset({"UserID", "user_id", "speaker", "speakers", "missing_speakers"})


def scrub_value(value: Any, user_id: str, player: str, *, exact: bool = False) -> Any:
    """A JSON value with the UserID replaced in every string, keys included; numbers and
    the rest unchanged. `exact`: for rows shared with other players (a room's), where a
    short UserID may also be another's, or a RoomID: only a value that is the UserID whole,
    under a key that names a user (USER_KEYS), and a key that is the UserID."""
    if exact:
        return _scrub_users(value, user_id, player, named=False)
    if isinstance(value, str):
        return scrub_text(value, user_id, player)
    if isinstance(value, list | tuple):
        return [scrub_value(v, user_id, player) for v in value]
    if isinstance(value, dict):
        return {
            scrub_text(str(k), user_id, player): scrub_value(v, user_id, player)
            for k, v in value.items()
        }
    return value


def _scrub_users(value: Any, user_id: str, player: str, *, named: bool) -> Any:
    if isinstance(value, str):
        return player if named and value == user_id else value
    if isinstance(value, list | tuple):
        return [_scrub_users(v, user_id, player, named=named) for v in value]
    if isinstance(value, dict):
        return {
            (player if k == user_id else k): _scrub_users(v, user_id, player, named=k in USER_KEYS)
            for k, v in value.items()
        }
    return value


def scrub_json_text(text: str, user_id: str, player: str, *, exact: bool = False) -> str:
    """Stored JSON text (a raw callback, a notification body): parsed, scrubbed and written
    back when it is JSON (so it stays JSON, whatever the UserID looks like), otherwise
    scrubbed as text. Written back compact, keys in their order. A UserID is a string
    (GME's `UserID`), so numbers are left alone."""
    if not user_id or not any(form in text for form in spellings(user_id)):
        return text
    try:
        parsed = json.loads(text)
    except ValueError:
        return text if exact else scrub_text(text, user_id, player)
    scrubbed = scrub_value(parsed, user_id, player, exact=exact)
    return json.dumps(scrubbed, ensure_ascii=False, separators=(",", ":"))


def holds_user(value: Any, user_id: str) -> bool:
    """Whether the UserID is anywhere in a JSON value (or text)."""
    if not user_id:
        return False
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    escaped = json.dumps(value, ensure_ascii=True) if not isinstance(value, str) else text
    return any(form in text or form in escaped for form in spellings(user_id))


@dataclass(frozen=True)
class ErasureItemView:
    recording_id: str
    kind: str  # ItemKind
    state: str  # ItemState
    base_revision: int = 0
    objects: int = 0


@dataclass(frozen=True)
class ErasureView:
    """A player's erasure as the ledger keeps it (never the UserID)."""

    id: int
    player: str
    biz_id: int
    state: str  # ErasureState
    requested_by: str
    requested_at: datetime
    finished_at: datetime | None
    report: Mapping[str, Any]
    items: tuple[ErasureItemView, ...] = ()

    def items_of(self, kind: str, *states: str) -> list[ErasureItemView]:
        return [i for i in self.items if i.kind == kind and (not states or i.state in states)]
