"""The upload waiting room and the refusal pacer (verifier_service.admission), on a real event loop.

Each rule here is what keeps a flood of bad proofs from setting the service's pace: turns go round the
connections, the room and each connection's share are bounded, a waiter gives up in time and gives its
place on, places are handed out at a pace, and a connection refused too often waits before its next
upload. Removing any one of them fails a test below.
"""
from __future__ import annotations

import asyncio
from typing import Any, Coroutine, TypeVar

import pytest

from pol.reasons import Refused, ServiceReason
from pol_core.types import DatasetError, ParentNotTip
from verifier_service.admission import RefusalPacer, WaitingRoom, is_charged

T = TypeVar("T")
FAST = 1e6  # places per second: no pacing unless a test asks for it


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def _enter_all(room: WaitingRoom, peers: list[str], order: list[str], wait_s: float = 5.0) -> list[asyncio.Task]:
    async def one(peer: str) -> None:
        await room.enter(peer, wait_s)
        order.append(peer)

    tasks = []
    for p in peers:
        tasks.append(asyncio.create_task(one(p)))
        await asyncio.sleep(0)  # arrival order is the order of the list
    return tasks


def test_turns_go_round_the_connections() -> None:
    async def main() -> list[str]:
        room = WaitingRoom(places=1, max_waiting=100, per_connection=4, per_s=FAST)
        await room.enter("holder", 1)
        order: list[str] = []
        # A flooder queues 4 uploads before the honest connection's one.
        tasks = await _enter_all(room, ["flood", "flood", "flood", "flood", "honest"], order)
        room.leave("holder")
        for i in range(4):  # each granted upload ends in turn, and its place passes on
            await asyncio.sleep(0.01)
            room.leave(order[i])
        await asyncio.gather(*tasks)
        return order

    order = run(main())
    # Without turns by connection the honest upload would come fifth, behind the flood.
    assert order == ["flood", "honest", "flood", "flood", "flood"]


def test_one_connection_waits_with_a_bounded_queue() -> None:
    async def main() -> None:
        room = WaitingRoom(places=1, max_waiting=100, per_connection=2, per_s=FAST)
        await room.enter("holder", 1)
        tasks = await _enter_all(room, ["c", "c"], [])
        with pytest.raises(Refused) as e:
            await room.enter("c", 1)
        assert e.value.reason is ServiceReason.RATE_LIMITED
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    run(main())


def test_a_full_room_refuses_at_once() -> None:
    async def main() -> None:
        room = WaitingRoom(places=1, max_waiting=3, per_connection=4, per_s=FAST)
        await room.enter("holder", 1)
        tasks = await _enter_all(room, ["a", "b", "c"], [])
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(Refused) as e:
            await room.enter("d", 5)
        assert e.value.reason is ServiceReason.BUSY and loop.time() - t0 < 0.5
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert room.waiting == 0

    run(main())


def test_a_waiter_gives_up_in_time_and_leaves_no_trace() -> None:
    async def main() -> None:
        room = WaitingRoom(places=1, max_waiting=10, per_connection=4, per_s=FAST)
        await room.enter("holder", 1)
        with pytest.raises(Refused) as e:
            await room.enter("late", 0.05)
        assert e.value.reason is ServiceReason.BUSY and "0.05 s" in str(e.value)
        assert room.waiting == 0
        room.leave("holder")  # the place is free again, and nobody stale takes it
        assert room.inside == 0
        await room.enter("next", 0.05)  # at once

    run(main())


def test_a_cancelled_waiter_is_forgotten() -> None:
    async def main() -> None:
        room = WaitingRoom(places=1, max_waiting=10, per_connection=4, per_s=FAST)
        await room.enter("holder", 1)
        order: list[str] = []
        tasks = await _enter_all(room, ["gone", "stays"], order)
        tasks[0].cancel()  # the client hung up while it waited
        await asyncio.sleep(0)
        room.leave("holder")
        await asyncio.gather(*tasks, return_exceptions=True)
        assert order == ["stays"] and room.inside == 1 and room.waiting == 0

    run(main())


def test_a_place_granted_to_a_waiter_that_gives_up_passes_on() -> None:
    async def main() -> None:
        room = WaitingRoom(places=1, max_waiting=10, per_connection=4, per_s=FAST)
        await room.enter("holder", 1)
        order: list[str] = []
        tasks = await _enter_all(room, ["first", "second"], order)
        room.leave("holder")  # grants "first" ...
        tasks[0].cancel()  # ... which is cancelled before it runs again
        await asyncio.sleep(0.01)
        await asyncio.gather(*tasks, return_exceptions=True)
        # Otherwise the place would be lost for good, and "second" would wait until its deadline.
        assert order == ["second"] and room.inside == 1

    run(main())


def test_places_are_handed_out_at_a_pace() -> None:
    async def main() -> float:
        room = WaitingRoom(places=100, max_waiting=100, per_connection=4, per_s=50)  # one each 20 ms
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        tasks = await _enter_all(room, [f"c{i}" for i in range(6)], [])
        await asyncio.gather(*tasks)
        return loop.time() - t0

    # Six places at 50 a second take at least 5 intervals; without the pace they come at once.
    assert run(main()) >= 0.09


def test_a_connection_refused_too_often_waits() -> None:
    async def main() -> tuple[float, float, float]:
        pacer = RefusalPacer(burst=1, per_s=10, per_connection=4)  # one refusal each 100 ms
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await pacer.wait("bad")  # a fresh connection does not wait
        first = loop.time() - t0
        pacer.charge("bad")
        t1 = loop.time()
        await pacer.wait("bad")
        second = loop.time() - t1
        t2 = loop.time()
        await pacer.wait("good")  # another connection is not held back by the bad one
        return first, second, loop.time() - t2

    first, second, good = run(main())
    assert first < 0.05 and second >= 0.08 and good < 0.05


def test_debt_makes_the_wait_longer_and_waiters_are_bounded() -> None:
    async def main() -> None:
        pacer = RefusalPacer(burst=1, per_s=10, per_connection=2)
        loop = asyncio.get_running_loop()
        for _ in range(3):  # three refusals of uploads that were in flight together
            pacer.charge("bad")
        assert pacer.delay("bad", loop.time()) >= 0.29
        sleepers = [asyncio.create_task(pacer.wait("bad")) for _ in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(Refused) as e:
            await pacer.wait("bad")
        assert e.value.reason is ServiceReason.RATE_LIMITED
        await asyncio.gather(*sleepers)

    run(main())


def test_only_the_clients_faults_are_charged() -> None:
    assert is_charged(ParentNotTip("parent is not the tip"))
    assert not is_charged(DatasetError("the verifier's own test set is unreadable"))
    assert is_charged(Refused(ServiceReason.MALFORMED_WEIGHTS, "x"))
    assert is_charged(Refused(ServiceReason.DUPLICATE, "x"))
    for reason in (ServiceReason.BUSY, ServiceReason.DEGRADED, ServiceReason.EVALUATION_FAILED,
                   ServiceReason.DISK_FULL, ServiceReason.INTERNAL, ServiceReason.RATE_LIMITED):
        assert not is_charged(Refused(reason, "x"))
    assert not is_charged(asyncio.CancelledError())


def test_one_connection_cannot_hold_every_place() -> None:
    async def main() -> list[str]:
        room = WaitingRoom(places=6, max_waiting=100, per_connection=4, per_s=FAST)
        for _ in range(4):  # silent uploads: each holds a place until it ends
            await room.enter("hog", 1)
        order: list[str] = []
        tasks = await _enter_all(room, ["hog", "hog", "honest"], order)
        await asyncio.sleep(0.01)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return order

    # Two places are free: without the share, the hog's waiting uploads would take both first.
    assert run(main()) == ["honest"]


def test_a_client_that_hangs_up_during_verification_keeps_its_slot_until_the_thread_ends() -> None:
    """The verification thread runs on after the client cancels: its slot, queue cost, place and ticket
    stay taken until it ends, so hanging up cannot run more verifications at once than the slots."""
    import threading
    import time
    import types
    from concurrent import futures

    from verifier_service.admission import Admission, CostQueue
    from verifier_service.server import VerifierServicer

    running, peak, lock = 0, 0, threading.Lock()

    def slow_verify(h: Any, blob: bytes, ticket: Any) -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.3)
        with lock:
            running -= 1

    async def main() -> tuple[int, int]:
        s = types.SimpleNamespace(cfg=types.SimpleNamespace(queue_wait_s=5.0), room=WaitingRoom(64, 1024, 4, FAST),
                                  queue=CostQueue(16), verifying=asyncio.Semaphore(2),
                                  admission=Admission(2), verify_pool=futures.ThreadPoolExecutor(16),
                                  pacer=RefusalPacer(1, 1, 4), _verify=slow_verify)

        async def read_upload(it: Any, peer: str, cid: str | None) -> tuple[None, Any, bytes, int]:
            return None, s.admission.admit(peer, cid), b"", 1

        s._read_upload = read_upload

        class Upload:
            def __aiter__(self) -> "Upload":
                return self

        for i in range(6):  # each uploads, then hangs up while its proof is verified (or waits for a slot)
            peer = f"ipv4:10.0.0.{i}:1"
            t = asyncio.create_task(VerifierServicer._submit(s, Upload(), peer, None, peer))  # type: ignore[arg-type]
            await asyncio.sleep(0.02)
            t.cancel()
        await asyncio.sleep(0.05)
        held = s.queue.used
        await asyncio.sleep(0.8)
        s.verify_pool.shutdown()
        assert s.queue.used == 0 and s.room.inside == 0 and s.admission.in_flight() == 0
        return held, peak

    held, peak = run(main())
    assert peak <= 2 and held >= 1, (held, peak)


def test_rates_that_cannot_work_are_refused_at_start_up(tmp_path: Any) -> None:
    from verifier_service.config import ConfigError, load_config

    p = tmp_path / "v.toml"
    for line, message in (("refused_per_s = 0", "refused_per_s must be positive"),
                          ("max_uploads_per_s = -1.0", "max_uploads_per_s must be positive"),
                          ("refused_burst = 0.5", "refused_burst must be at least 1")):
        p.write_text(f"[verifier]\n{line}\n")
        with pytest.raises(ConfigError, match=message):
            load_config(p)
    p.write_text("[verifier]\nrefused_per_s = 0.5\nmax_uploads_per_s = 50\n")
    assert (load_config(p).refused_per_s, load_config(p).max_uploads_per_s) == (0.5, 50)
