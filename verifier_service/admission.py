"""Who may start a proof upload, decided from the header alone, before any expensive work.

The key is the connection (gRPC's peer string, address and port), which a client cannot forge; the
`pol-client-id` header only refines it: several provers behind one connection each get their own
share, but together never more than the connection's. A client that sends a victim's id from its own
connections fills its own buckets, never the victim's. A service-wide cap bounds the uploads held at
once, so uploads that never finish cannot exhaust the threads or the memory of the service.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

from pol.reasons import Refused, ServiceReason


@dataclass(frozen=True)
class Limits:
    per_connection: int = 4  # uploads one connection may hold at once
    per_client: int = 2  # of those, uploads one client id may hold
    total: int = 64  # uploads the service holds at once (verification threads are sized to it)


@dataclass(frozen=True)
class Ticket:
    peer: str
    client: str


class Admission:
    def __init__(self, limits: Limits):
        self.limits = limits
        self._lock = threading.Lock()
        self._peers: dict[str, int] = {}
        self._clients: dict[tuple[str, str], int] = {}
        self._total = 0

    def admit(self, peer: str, client_id: str | None) -> Ticket:
        """A ticket for one upload, or Refused(RATE_LIMITED or BUSY)."""
        client = client_id or ""
        with self._lock:
            # Every upload holds memory and, once verified, a thread: bound them service-wide.
            if self._total >= self.limits.total:
                raise Refused(ServiceReason.BUSY, f"the service holds {self._total} uploads; retry shortly")
            n_peer = self._peers.get(peer, 0)
            # The connection is the unit a client cannot forge; ids only split its share.
            if n_peer >= self.limits.per_connection:
                raise Refused(ServiceReason.RATE_LIMITED, f"connection {peer} already has {n_peer} proofs in flight")
            n_client = self._clients.get((peer, client), 0)
            if n_client >= self.limits.per_client:
                raise Refused(ServiceReason.RATE_LIMITED,
                              f"client {client or peer} already has {n_client} proofs in flight")
            self._peers[peer] = n_peer + 1
            self._clients[(peer, client)] = n_client + 1
            self._total += 1
        return Ticket(peer, client)

    def release(self, t: Ticket) -> None:
        with self._lock:
            self._total -= 1
            self._peers[t.peer] -= 1
            if self._peers[t.peer] <= 0:
                del self._peers[t.peer]
            self._clients[(t.peer, t.client)] -= 1
            if self._clients[(t.peer, t.client)] <= 0:
                del self._clients[(t.peer, t.client)]

    def in_flight(self) -> int:
        with self._lock:
            return self._total
