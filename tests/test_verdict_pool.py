"""Verdicts in worker processes (verifier_service.verdicts) are the in-process verdicts, bit for bit:
the same header, block hash and states for an honest proof, the same refusal for a bad one, under
both rule sets; a worker with other settings or another task is refused; a dead worker costs one
retryable refusal, not the service."""
from __future__ import annotations

import os
import pickle
import signal
from dataclasses import replace

import pytest

from pol.reasons import Refused, ServiceReason
from pol.wire import encode_state
from pol_core.chainbound import compute_chain_bound_verdict
from pol_core.verify import Verdict, compute_verdict
from tests.attacks import honest_chain_bound_block
from tests.proofs import proof_from_genesis
from verifier_service.evaluation import EvaluationError, WorkerMismatch
from verifier_service.verdicts import TaskRef, VerdictPool, make_verdict_pool


def same_verdict(a: Verdict, b: Verdict) -> None:
    assert a.header == b.header
    assert a.block_hash == b.block_hash
    assert encode_state(a.new_state) == encode_state(b.new_state)  # every bit of W'
    assert (a.state is None) == (b.state is None)
    if a.state is not None and b.state is not None:
        assert encode_state(a.state) == encode_state(b.state)


@pytest.fixture(scope="module")
def paper_pool(digits):
    pool = VerdictPool(digits, TaskRef("digits-cnn", None, None, "paper"), workers=1)
    pool.prepare()
    yield pool
    pool.close()


@pytest.fixture(scope="module")
def honest(digits):
    """A proof from genesis that the paper verdict accepts (the accuracy rule included)."""
    from pol_core.types import ConsensusError
    from pol_core.verify import compute_genesis_correct

    c0 = compute_genesis_correct(digits)
    for i in range(0, 400, 4):
        found = proof_from_genesis(digits, indices=(i, i + 1, i + 2, i + 3), genesis_correct=c0)
        try:
            compute_verdict(digits, found[1], found[2], 1, found[0])
            return found
        except ConsensusError:
            continue
    raise RuntimeError("no accepted proof from genesis in 100 batches")


def test_paper_verdict_in_a_worker_is_bit_identical(digits, paper_pool, honest):
    proof, parent, parent_hash, _ = honest
    local = compute_verdict(digits, parent, parent_hash, 1, proof)
    same_verdict(paper_pool.paper(parent, parent_hash, 1, proof, None), local)


def test_paper_refusal_in_a_worker_is_the_same_refusal(digits, paper_pool, honest):
    proof, parent, parent_hash, _ = honest
    # Another parent hash is another R: the step that met the honest one misses this one (or moves
    # nothing), and both paths must say exactly the same thing.
    for bad in (replace(proof, height=2), replace(proof, indices=(0, 1, 2, 5))):
        with pytest.raises(Exception) as here:
            compute_verdict(digits, parent, parent_hash, 1, bad)
        with pytest.raises(type(here.value)) as there:
            paper_pool.paper(parent, parent_hash, 1, bad, None)
        assert str(there.value) == str(here.value)


def test_chain_bound_verdict_in_a_worker_is_bit_identical(digits, digits_cb):
    sc, proof = honest_chain_bound_block(digits, digits_cb)
    pool = VerdictPool(digits_cb, TaskRef("digits-cnn", None, None, "chain-bound"), workers=1)
    try:
        local = compute_chain_bound_verdict(digits_cb, sc.tip, sc.parent_state, proof)
        same_verdict(pool.chain_bound(sc.tip, sc.parent_state, proof), local)
        bad = replace(proof, segment=proof.segment + ((0, 1, 2),))
        with pytest.raises(Exception) as here:
            compute_chain_bound_verdict(digits_cb, sc.tip, sc.parent_state, bad)
        with pytest.raises(type(here.value), match=str(here.value)[:20]):
            pool.chain_bound(sc.tip, sc.parent_state, bad)
    finally:
        pool.close()


def test_a_worker_with_another_task_is_refused(digits_cb):
    # The node verifies chain-bound proofs; a worker that loaded the paper task computes other verdicts.
    pool = VerdictPool(digits_cb, TaskRef("digits-cnn", None, None, "paper"), workers=1)
    try:
        with pytest.raises(WorkerMismatch, match="task"):
            pool.prepare()
    finally:
        pool.close()


def test_a_killed_worker_costs_one_retryable_refusal(digits, paper_pool, honest):
    proof, parent, parent_hash, _ = honest
    paper_pool.prepare()
    for pid in paper_pool.pids():
        os.kill(pid, signal.SIGKILL)
    with pytest.raises(EvaluationError, match="died"):
        paper_pool.paper(parent, parent_hash, 1, proof, None)
    # The next proof gets fresh workers, checked again, with the same verdict.
    same_verdict(paper_pool.paper(parent, parent_hash, 1, proof, None), compute_verdict(digits, parent, parent_hash, 1, proof))


def test_refused_keeps_its_reason_across_processes():
    e = pickle.loads(pickle.dumps(Refused(ServiceReason.UNKNOWN_MODEL, "no such model")))
    assert isinstance(e, Refused) and e.reason is ServiceReason.UNKNOWN_MODEL and str(e) == "no such model"


def test_which_nodes_get_a_pool(digits):
    ref = TaskRef("digits-cnn", None, None, "paper")
    assert make_verdict_pool(0, digits, ref, True, 2) is None  # off
    assert make_verdict_pool(None, digits, ref, False, 2) is None  # sharded evaluation: verdict stays in the node
    pool = make_verdict_pool(None, digits, ref, True, 2)
    assert isinstance(pool, VerdictPool) and pool.workers == 2
    pool.close()
    with pytest.raises(ValueError):
        make_verdict_pool(-1, digits, ref, True, 2)
