"""A prover retries a proof the verifier cannot take now (BUSY, RATE_LIMITED, DEGRADED,
EVALUATION_FAILED), with bounded, jittered backoff, and never a proof the verifier refused on its
merits: real anvil, a real gRPC server on 127.0.0.1 whose only upload slot is held."""
from __future__ import annotations

import random

import grpc
import pytest

from pol.client import Rejected, RetryPolicy, VerifierClient, VerifierUnavailable, is_retryable
from pol.reasons import ServiceReason
from pol_core.types import Reason

from pol_core.weights import compute_weights_hash

from .helpers import mine_on
from .test_robustness import HeldUpload, connection, honest_header, running_service, wait_in_flight


def test_policy_is_bounded_exponential_and_jittered():
    p = RetryPolicy(attempts=5, first_s=0.2, max_s=1.0, budget_s=10.0)
    rng = random.Random(1)
    for retry, d in enumerate((0.2, 0.4, 0.8, 1.0, 1.0)):
        pauses = {p.delay(retry, rng) for _ in range(50)}
        assert all(d / 2 <= x <= d for x in pauses) and len(pauses) > 1  # never over the cap, never in step


def test_what_is_retried():
    assert all(is_retryable(Rejected(grpc.StatusCode.RESOURCE_EXHAUSTED, r, "")) for r in
               (ServiceReason.BUSY, ServiceReason.RATE_LIMITED))
    assert is_retryable(Rejected(grpc.StatusCode.UNAVAILABLE, ServiceReason.DEGRADED, ""))
    assert is_retryable(Rejected(grpc.StatusCode.UNAVAILABLE, ServiceReason.EVALUATION_FAILED, ""))
    assert is_retryable(VerifierUnavailable("x", 1.0, "unavailable"))
    # A deadline that passed may hide an accepted proof; a refusal on the proof's merits stands.
    assert not is_retryable(VerifierUnavailable("x", 1.0, "deadline exceeded", grpc.StatusCode.DEADLINE_EXCEEDED))
    assert not is_retryable(Rejected(grpc.StatusCode.INVALID_ARGUMENT, Reason.REQUIREMENTS_NOT_MET, ""))
    assert not is_retryable(Rejected(grpc.StatusCode.ALREADY_EXISTS, ServiceReason.DUPLICATE, ""))
    assert not is_retryable(Rejected(grpc.StatusCode.RESOURCE_EXHAUSTED, ServiceReason.DISK_FULL, ""))


@pytest.fixture()
def full_service(anvil, digits, tmp_path):
    """A verifier that holds one upload at a time, and that upload held by another connection; a second
    upload waits 0.2 s for the place, then is refused BUSY."""
    with running_service(anvil, digits, tmp_path, max_uploads=1, queue_wait_s=0.2) as (_, server, target):
        channel = connection(target)
        tip = VerifierClient(target).get_tip()
        held = HeldUpload(channel, honest_header(digits, tip, digits.genesis_state))
        wait_in_flight(server.servicer.admission, 1)
        yield target, tip, held
        held.release.set()
        channel.close()


def test_busy_is_retried_until_the_proof_is_accepted(digits, full_service):
    target, tip, held = full_service
    found = mine_on(digits, tip)
    seen: list[tuple[Exception, float]] = []

    def on_retry(e: Exception, pause: float) -> None:
        seen.append((e, pause))
        if len(seen) == 2:
            held.release.set()  # the other upload ends (refused: it sends no weights); the slot frees

    with VerifierClient(target, retry=RetryPolicy(attempts=10, first_s=0.05, max_s=0.5, budget_s=30)) as client:
        resp = client.submit(digits.name, bytes(tip.block_hash), tip.height + 1, found.indices,
                             compute_weights_hash(found.state),
                             found.state, bytes(20), on_retry=on_retry)
    assert resp.attested and resp.height == tip.height + 1
    assert len(seen) >= 2 and all(isinstance(e, Rejected) and e.reason is ServiceReason.BUSY for e, _ in seen)


def test_retries_are_bounded_and_the_last_refusal_stands(digits, full_service):
    target, tip, _ = full_service
    found = mine_on(digits, tip)
    seen: list[float] = []
    with VerifierClient(target, retry=RetryPolicy(attempts=3, first_s=0.05, max_s=0.1, budget_s=30)) as client:
        with pytest.raises(Rejected) as e:
            client.submit_raw(honest_header(digits, tip, found.state), b"x", on_retry=lambda _, p: seen.append(p))
    assert e.value.reason is ServiceReason.BUSY and len(seen) == 2  # 3 attempts, 2 pauses
    # A caller that gives up (a miner whose tip moved) stops at once.
    with VerifierClient(target) as client:
        with pytest.raises(Rejected):
            client.submit_raw(honest_header(digits, tip, found.state), b"x", give_up=lambda: True,
                              on_retry=lambda _, p: seen.append(p))
    assert len(seen) == 2


def test_a_refusal_on_the_merits_is_not_retried(digits, anvil, tmp_path):
    with running_service(anvil, digits, tmp_path) as (_, _, target), VerifierClient(target) as client:
        tip = client.get_tip()
        seen: list[float] = []
        header = honest_header(digits, tip, digits.genesis_state)
        header.height = tip.height + 5  # not the next height
        with pytest.raises(Rejected) as e:
            client.submit_raw(header, b"", on_retry=lambda _, p: seen.append(p))
        assert e.value.code != grpc.StatusCode.RESOURCE_EXHAUSTED and seen == []

