"""Leases: one holder per name at a time, for work that must run in one process only."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select

from storage.ledger.engine import LedgerBase, aware, upsert
from storage.ledger.tables import Lease


class Leases(LedgerBase):
    def acquire_lease(self, name: str, holder: str, *, now: datetime, ttl: float) -> bool:
        """Take or renew the lease `name` for `holder` until now + ttl. False while another
        holder's lease has not expired."""
        expires = now + timedelta(seconds=ttl)
        with self.session() as s:
            statement = upsert(s, Lease).values(name=name, holder=holder, expires_at=expires)
            taken = s.execute(
                statement.on_conflict_do_update(
                    index_elements=["name"],
                    set_={"holder": holder, "expires_at": expires},
                    where=(Lease.holder == holder) | (Lease.expires_at < now),
                ).returning(Lease.holder)
            ).first()
        return taken is not None

    def lease_holder(self, name: str, now: datetime) -> str | None:
        """Who holds `name` now, if anyone."""
        with self.session() as s:
            row = s.execute(
                select(Lease.holder, Lease.expires_at).where(Lease.name == name)
            ).first()
        if row is None or (aware(row[1]) or now) <= now:
            return None
        return str(row[0])

    def release_lease(self, name: str, holder: str) -> None:
        with self.session() as s:
            s.execute(delete(Lease).where(Lease.name == name, Lease.holder == holder))
