"""Who may use the console and the HTTP API, and what they did: plain values."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

VIEWER, OPERATOR = "viewer", "operator"
ROLES = (VIEWER, OPERATOR)
READ, OPERATE = "read", "operate"
SCOPES = (READ, OPERATE)


@dataclass(frozen=True)
class ConsoleUserView:
    id: int
    name: str
    role: str
    password_hash: str
    created_at: datetime

    @property
    def can_operate(self) -> bool:
        return self.role == OPERATOR


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
        return self.scope == OPERATE


@dataclass(frozen=True)
class AuditEntryView:
    id: int
    at: datetime
    actor: str
    action: str
    recording_id: str | None
    target: str | None
    detail: dict[str, Any] = field(default_factory=dict)
