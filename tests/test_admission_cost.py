"""Admission prices a proof by the work its verdict costs, in paper verdicts."""
from __future__ import annotations

import pytest


def test_a_long_segment_fills_the_verification_queue_sooner():
    """The queue ahead of the verification slots is counted in paper verdicts: a full-length chain-bound
    segment is priced at about 100, so a handful of them cannot make an honest proof wait for 100x
    the work the queue bound promises; a proof alone always fits."""
    from types import SimpleNamespace

    from pol.reasons import Refused
    from pol.v1 import verifier_pb2 as pb
    from pol.wire import encode_segment
    from pol_core.rulesets import RuleSet
    from verifier_service.config import VerifierConfig
    from verifier_service.server import VerifierServicer, compute_verification_cost

    node = SimpleNamespace(rules=RuleSet.CHAIN_BOUND)
    def cost(segment):
        return compute_verification_cost(node, pb.ProofHeader(segment=encode_segment(segment)))  # type: ignore[arg-type]

    assert cost([]) == 1
    assert cost([range(4)] * 4) == 4  # measured: 3.95 verdicts
    assert cost([range(256)] * 32) == 100  # measured: 99.9 verdicts
    assert compute_verification_cost(SimpleNamespace(rules=RuleSet.PAPER), pb.ProofHeader()) == 1  # type: ignore[arg-type]
    queue = SimpleNamespace(queued=0, cfg=VerifierConfig(max_queued_verifications=16))
    VerifierServicer._check_queue(queue, 100)  # type: ignore[arg-type]  # alone, it fits
    queue.queued = 1
    with pytest.raises(Refused, match="worth 1 paper verdicts"):
        VerifierServicer._check_queue(queue, 100)  # type: ignore[arg-type]
    VerifierServicer._check_queue(queue, 15)  # type: ignore[arg-type]
