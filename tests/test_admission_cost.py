"""Admission prices a proof by the work its verdict costs, in paper verdicts."""
from __future__ import annotations

import pytest


def test_a_long_segment_fills_the_verification_queue_sooner():
    """The queue ahead of the verification slots is counted in paper verdicts: a full-length chain-bound
    segment is priced at about 100, so a handful of them cannot make an honest proof wait for 100x
    the work the queue bound promises; a proof alone always fits."""
    from types import SimpleNamespace

    from pol.v1 import verifier_pb2 as pb
    from pol.wire import encode_segment
    from pol_core.rulesets import RuleSet
    from verifier_service.admission import CostQueue
    from verifier_service.server import compute_verification_cost

    node = SimpleNamespace(rules=RuleSet.CHAIN_BOUND)
    def cost(segment):
        return compute_verification_cost(node, pb.ProofHeader(segment=encode_segment(segment)))  # type: ignore[arg-type]

    assert cost([]) == 1
    assert cost([range(4)] * 4) == 4  # measured: 3.95 verdicts
    assert cost([range(256)] * 32) == 100  # measured: 99.9 verdicts
    assert compute_verification_cost(SimpleNamespace(rules=RuleSet.PAPER), pb.ProofHeader()) == 1  # type: ignore[arg-type]
    queue = CostQueue(16)
    assert queue.fits(100)  # alone, it fits
    queue.used = 1
    assert not queue.fits(100) and queue.fits(15)


def test_queued_proofs_wait_in_arrival_order_and_give_up_in_time():
    """A proof that does not fit waits instead of being refused at once; a cheap proof behind a long one
    does not overtake it; a waiter gives up with BUSY at its deadline."""
    import asyncio

    from pol.reasons import Refused, ServiceReason
    from verifier_service.admission import CostQueue

    async def main() -> list[str]:
        queue, order = CostQueue(16), []
        await queue.join(10, 1)

        async def one(name: str, cost: int) -> None:
            await queue.join(cost, 1)
            order.append(name)

        long = asyncio.create_task(one("long", 100))
        await asyncio.sleep(0)
        cheap = asyncio.create_task(one("cheap", 1))  # it would fit now, but the long one came first
        await asyncio.sleep(0.05)
        assert order == []
        queue.leave(10)
        await asyncio.sleep(0.01)
        assert order == ["long"]  # alone in the queue now, and the cheap one waits behind it
        queue.leave(100)
        await asyncio.gather(long, cheap)
        with pytest.raises(Refused) as e:
            await queue.join(16, 0.05)  # 1 + 16 > 16: no room within its deadline
        assert e.value.reason is ServiceReason.BUSY and "worth 16" in str(e.value)
        return order

    assert asyncio.run(main()) == ["long", "cheap"]
