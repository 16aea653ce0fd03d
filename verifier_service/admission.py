"""Who may upload a proof now, decided before any expensive work, and how.

The key is the connection (gRPC's peer string, address and port), which a client cannot forge. An
upload first waits, unread, for a place (WaitingRoom: the service holds `places` uploads at once, a
connection at most its share); once its header is read, the `pol-client-id` header may only refine the
connection's share: several provers behind one connection each get `per_client` of it (Admission), so
a client that sends a victim's id from its own connections fills its own buckets, never the victim's.
Then the proof waits for the verification queue (CostQueue). A connection whose proofs are refused on
their merits is paced (RefusalPacer).
"""
from __future__ import annotations

import asyncio
import threading
from collections import deque
from dataclasses import dataclass

from pol.reasons import AnyReason, Refused, ServiceReason
from pol_core.types import ConsensusError, Reason


@dataclass(frozen=True)
class Ticket:
    peer: str
    client: str


class Admission:
    """The uploads whose header was read, until their verification ends, by connection and client id.
    The connection's own bound and the service's are the WaitingRoom's places, taken before this."""

    def __init__(self, per_client: int):
        self.per_client = per_client
        self._lock = threading.Lock()  # read from test and metrics threads
        self._clients: dict[tuple[str, str], int] = {}
        self._total = 0

    def admit(self, peer: str, client_id: str | None) -> Ticket:
        """A ticket for one upload, or Refused(RATE_LIMITED)."""
        client = client_id or ""
        with self._lock:
            n_client = self._clients.get((peer, client), 0)
            # Ids only split a connection's share: one prover behind it cannot take all of it.
            if n_client >= self.per_client:
                raise Refused(ServiceReason.RATE_LIMITED,
                              f"client {client or peer} already has {n_client} proofs in flight")
            self._clients[(peer, client)] = n_client + 1
            self._total += 1
        return Ticket(peer, client)

    def release(self, t: Ticket) -> None:
        with self._lock:
            self._total -= 1
            self._clients[(t.peer, t.client)] -= 1
            if self._clients[(t.peer, t.client)] <= 0:
                del self._clients[(t.peer, t.client)]

    def in_flight(self) -> int:
        with self._lock:
            return self._total


class WaitingRoom:
    """Uploads wait here, before any message of theirs is read, for one of `places` places (an upload
    holds one while it is read, queued and verified). Refusing at once instead made clients
    retry in a storm that held the event loop (docs/BENCHMARKS.md): a waiter costs nothing until its
    turn, as its bytes stay in the transport's window. Turns go round the connections (many streams on
    one connection wait as one), in arrival order within each, and at most `per_s` a second, so a burst
    (every queued proof going stale as a block lands) reaches the loop spread out. A waiter gives up
    after `wait_s` (BUSY), and a full room refuses at once. It lives on the event loop: no lock."""

    def __init__(self, places: int, max_waiting: int, per_connection: int, per_s: float):
        self.places = places
        self.interval = 1.0 / per_s  # places are handed out at most this often: a burst is spread
        self._next_at = 0.0  # the loop time of the next place at the earliest
        self._timer: asyncio.TimerHandle | None = None
        self.max_waiting = max_waiting
        self.per_connection = per_connection
        self.inside = 0
        self.waiting = 0
        self._held: dict[str, int] = {}  # places each connection holds: at most per_connection
        self._queues: dict[str, deque[asyncio.Future[None]]] = {}
        self._turns: deque[str] = deque()  # connections with waiters, the next to be served first

    async def enter(self, peer: str, wait_s: float) -> None:
        """Return once the upload holds a place (leave() gives it back), or raise Refused."""
        # Nobody waits and a place is free: waiters would otherwise be overtaken.
        now = asyncio.get_running_loop().time()
        if (self.inside < self.places and not self.waiting and now >= self._next_at
                and self._held.get(peer, 0) < self.per_connection):
            self._take(peer)
            self._next_at = now + self.interval
            return
        # A bounded room: past it, waiting would cost memory with no prospect of a turn.
        if self.waiting >= self.max_waiting:
            raise Refused(ServiceReason.BUSY, f"{self.waiting} uploads already wait for the verification queue; "
                          "retry later")
        queue = self._queues.get(peer)
        # One connection waits as one; a deep queue of its own would only delay its own proofs.
        if queue is not None and len(queue) >= self.per_connection:
            raise Refused(ServiceReason.RATE_LIMITED, f"connection {peer} already has {len(queue)} uploads waiting")
        if queue is None:
            queue = self._queues[peer] = deque()
            self._turns.append(peer)
        turn = asyncio.get_running_loop().create_future()
        queue.append(turn)
        self.waiting += 1
        self._grant()  # a place may be free, and only the pace held it back
        try:
            async with asyncio.timeout(wait_s):
                await turn
        except BaseException as e:
            if turn.done() and not turn.cancelled():
                self.leave(peer)  # granted just as the waiter gave up: the place passes on
            else:
                self._forget(peer, turn)
            if isinstance(e, TimeoutError):
                raise Refused(ServiceReason.BUSY, f"no place in the verification queue within {wait_s:g} s; "
                              "retry later") from None
            raise

    def leave(self, peer: str) -> None:
        self.inside -= 1
        self._held[peer] -= 1
        if not self._held[peer]:
            del self._held[peer]
        self._grant()

    def _take(self, peer: str) -> None:
        self.inside += 1
        self._held[peer] = self._held.get(peer, 0) + 1

    def _grant(self) -> None:
        loop = asyncio.get_running_loop()
        passed = 0  # connections passed over in a row because they hold their share of places
        while self.inside < self.places and passed < len(self._turns):
            # One connection's silent uploads cannot hold every place: past its share, it waits.
            if self._held.get(self._turns[0], 0) >= self.per_connection:
                self._turns.rotate(-1)
                passed += 1
                continue
            now = loop.time()
            if now < self._next_at:
                if self._timer is None:
                    self._timer = loop.call_at(self._next_at, self._on_timer)
                return
            passed = 0
            peer = self._turns.popleft()
            queue = self._queues[peer]
            turn = queue.popleft()
            self.waiting -= 1
            if queue:
                self._turns.append(peer)  # its next upload waits for the other connections' turns
            else:
                del self._queues[peer]
            if turn.done():  # cancelled; its waiter has not run yet to forget it
                continue
            self._next_at = now + self.interval
            self._take(peer)
            turn.set_result(None)

    def _on_timer(self) -> None:
        self._timer = None
        self._grant()

    def _forget(self, peer: str, turn: asyncio.Future[None]) -> None:
        queue = self._queues.get(peer)
        if queue is None or turn not in queue:
            return
        queue.remove(turn)
        self.waiting -= 1
        if not queue:
            del self._queues[peer]
            self._turns.remove(peer)


# Refusals that say "not now", or that the verifier itself is broken, not "no" about the proof: they
# cost the client nothing.
NOT_THE_CLIENTS_FAULT: frozenset[AnyReason] = frozenset({
    ServiceReason.BUSY, ServiceReason.RATE_LIMITED, ServiceReason.DEGRADED, ServiceReason.EVALUATION_FAILED,
    ServiceReason.DISK_FULL, ServiceReason.INTERNAL, ServiceReason.ATTESTATION_PENDING,
    ServiceReason.QUORUM_UNAVAILABLE,
    Reason.INVALID_TASK_CONFIG, Reason.DATASET_ERROR, Reason.PARENT_STATE_MISMATCH,
})


def is_charged(e: BaseException) -> bool:
    """Whether a failed upload counts against its connection's refusal budget."""
    return isinstance(e, (ConsensusError, Refused)) and e.reason not in NOT_THE_CLIENTS_FAULT


class RefusalPacer:
    """Each client (a connection, or a client id within it) may have `burst` proofs refused at once and
    `per_s` more each second; past that, its next upload waits, unread, until the budget refills. Every
    refusal costs the event loop a whole call, so a client looping on bad proofs would otherwise set the
    service's pace (docs/BENCHMARKS.md); an honest prover, refused now and then (a stale parent as a
    block lands), never waits. A connection in flight with several uploads can run into debt, and then
    waits longer."""

    MAX_TRACKED = 4096  # connections remembered; past it, those whose budget is full again are dropped
    MAX_DEBT = 8.0  # refusals a connection can owe: its wait stays bounded, and so does its entry's life

    def __init__(self, burst: float, per_s: float, per_connection: int):
        self.burst = burst
        self.per_s = per_s
        self.per_connection = per_connection
        self._budget: dict[str, tuple[float, float]] = {}  # peer -> (tokens, when they were counted)
        self._sleeping: dict[str, int] = {}

    def _tokens(self, peer: str, now: float) -> float:
        tokens, at = self._budget.get(peer, (self.burst, now))
        return min(self.burst, tokens + (now - at) * self.per_s)

    def delay(self, peer: str, now: float) -> float:
        """Seconds until the connection may send its next upload."""
        return max(0.0, (1.0 - self._tokens(peer, now)) / self.per_s)

    async def wait(self, peer: str) -> None:
        d = self.delay(peer, asyncio.get_running_loop().time())
        if d <= 0:
            return
        n = self._sleeping.get(peer, 0)
        # Waiters are bounded per connection, as uploads in flight are.
        if n >= self.per_connection:
            raise Refused(ServiceReason.RATE_LIMITED, f"connection {peer} had too many proofs refused; "
                          f"{n} uploads already wait {d:.1f} s for its budget")
        self._sleeping[peer] = n + 1
        try:
            await asyncio.sleep(d)
        finally:
            self._sleeping[peer] -= 1
            if not self._sleeping[peer]:
                del self._sleeping[peer]

    def charge(self, peer: str) -> None:
        now = asyncio.get_running_loop().time()
        self._budget[peer] = (max(self._tokens(peer, now) - 1.0, -self.MAX_DEBT), now)
        if len(self._budget) > self.MAX_TRACKED:
            kept = {p: b for p, b in self._budget.items() if self._tokens(p, now) < self.burst}
            if len(kept) > self.MAX_TRACKED // 2:  # all in debt: forget the longest untouched
                kept = dict(sorted(kept.items(), key=lambda item: item[1][1])[-(self.MAX_TRACKED // 2):])
            self._budget = kept


class CostQueue:
    """The verification queue, counted in paper verdicts (compute_verification_cost): an uploaded proof
    waits, in arrival order and until its deadline (then BUSY), for its cost to fit. A proof alone
    always fits, however long its segment; a cheap proof never overtakes a long one that waits."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.used = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    def fits(self, cost: int) -> bool:
        return self.used == 0 or self.used + cost <= self.capacity

    async def join(self, cost: int, wait_s: float) -> None:
        """Return once `cost` is counted in the queue (leave() takes it out), or raise Refused(BUSY)."""
        if not self._waiters and self.fits(cost):
            self.used += cost
            return
        entry = (cost, asyncio.get_running_loop().create_future())
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(wait_s):
                await entry[1]
        except BaseException as e:
            if entry[1].done() and not entry[1].cancelled():
                self.leave(cost)  # let in just as it gave up
            elif entry in self._waiters:
                self._waiters.remove(entry)
                self._admit()  # it may have held back cheaper proofs behind it
            if isinstance(e, TimeoutError):
                raise Refused(ServiceReason.BUSY, f"verifications worth {self.used} paper verdicts are queued; "
                              f"this proof (worth {cost}) found no room within {wait_s:g} s; retry later") from None
            raise

    def leave(self, cost: int) -> None:
        self.used -= cost
        self._admit()

    def _admit(self) -> None:
        while self._waiters and self.fits(self._waiters[0][0]):
            cost, fut = self._waiters.popleft()
            if fut.done():  # cancelled; its waiter has not run yet to forget it
                continue
            self.used += cost
            fut.set_result(None)
