"""Who may use the console and the HTTP API, and what they did: plain values."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

VIEWER, OPERATOR, ADMIN = "viewer", "operator", "admin"
ROLES = (VIEWER, OPERATOR, ADMIN)
READ, OPERATE = "read", "operate"
# The `admin` scope and role also hold and release recordings: what decides whether
# evidence may be deleted is not an operator's everyday action.
SCOPES = (READ, OPERATE, ADMIN)
# The longest reason a hold may carry.
MAX_HOLD_REASON = 2000


def hold_reason(text: object) -> str | None:
    """The reason a hold is given, trimmed; None unless it is text of 1 to MAX_HOLD_REASON
    characters with something besides spaces (the one rule of the CLI, the API and the
    console)."""
    if not isinstance(text, str) or len(text) > MAX_HOLD_REASON or not text.strip():
        return None
    return text.strip()


@dataclass(frozen=True)
class ConsoleUserView:
    id: int
    name: str
    role: str
    password_hash: str
    created_at: datetime

    @property
    def can_operate(self) -> bool:
        return self.role in (OPERATOR, ADMIN)

    @property
    def can_admin(self) -> bool:
        return self.role == ADMIN


@dataclass(frozen=True)
class ConsoleSessionView:
    """A signed-in browser of one user, as `recpipe users sessions` lists it."""

    id: int
    user: str
    created_at: datetime
    seen_at: datetime
    expires_at: datetime
    address: str | None
    agent: str | None


@dataclass(frozen=True)
class ApiTokenView:
    id: int
    name: str
    scope: str
    created_at: datetime
    last_used_at: datetime | None = None

    @property
    def can_operate(self) -> bool:
        return self.scope in (OPERATE, ADMIN)

    @property
    def can_admin(self) -> bool:
        return self.scope == ADMIN


@dataclass(frozen=True)
class AuditEntryView:
    id: int
    at: datetime
    actor: str
    action: str
    recording_id: str | None
    target: str | None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HoldView:
    """A legal hold: nothing of the recording (or room) is deleted while it stands."""

    recording_id: str
    reason: str
    held_by: str
    held_at: datetime
    source: str = ""
    state: str = ""
