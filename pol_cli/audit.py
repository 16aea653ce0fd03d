"""`pol audit`: re-verify every block of a chain from the contract's events and a model store.

Paper rules: each block's W comes from the store and its step is recomputed. Chain-bound rules: nothing is
taken from the store but the segments; every W and W' is replayed from genesis, block after block, with
each parent's link, R's seed and redraw index, the redraw's timing and the monotone tip checked again."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable, Iterable, Mapping

import torch

from pol_chain.client import RecordedBlock
from pol_chain.deploy import Deployment
from pol_core.chainbound import SegmentProof, TipContext, compute_chain_bound_verdict
from pol_core.evaluation import Evaluator, KnownCount, evaluate_serial
from pol_core.header import Header, compute_genesis_header, compute_header_hash
from pol_core.portable import check_cpu_dispatch
from pol_core.segment import compute_segment_root, decode_segment
from pol_core.step import enable_deterministic_mode
from pol_core.tasks import Task, load_task
from pol_core.types import ConsensusError, Hash32, Timestamp
from pol_core.verify import Proof, Verdict, compute_genesis_correct, compute_verdict

FetchModel = Callable[[Hash32, Iterable[str]], Mapping[str, torch.Tensor] | None]
FetchSegment = Callable[[Hash32], bytes | None]  # a block's encoded segment, by block hash


@dataclass(frozen=True)
class AuditResult:
    height: int
    ok: bool
    detail: str


def describe_difference(expected: Header, actual: Header) -> str:
    diffs = [f.name for f in fields(actual) if getattr(expected, f.name) != getattr(actual, f.name)]
    return f"recomputation differs in {', '.join(diffs)}"


def audit_chain(dep: Deployment, fetch_model: FetchModel, task: Task | None = None,
                rpc_url: str | None = None, fetch_segment: FetchSegment | None = None,
                evaluator: Evaluator = evaluate_serial) -> list[AuditResult]:
    """fetch_model(weights_hash, order) -> state or None; fetch_segment(block_hash) -> encoded segment or
    None (chain-bound chains). Returns one result per block after genesis.
    `evaluator` computes the test-set counts (verifier_service.evaluation shards them; same integers)."""
    check_cpu_dispatch()  # the verifiers' pinned kernels, so W' is recomputed bit for bit
    enable_deterministic_mode()
    task = task or load_task(dep.task, rules=dep.genesis.rules.value)
    blocks = dep.client(rpc_url=rpc_url).get_blocks(dep.deploy_block)
    # The genesis block is rebuilt from the task alone (its accuracy recomputed), not from the file.
    genesis_correct = compute_genesis_correct(task)
    genesis = compute_genesis_header(task.spec_hash, task.genesis_hash, genesis_correct, dep.genesis.difficulty)
    out: list[AuditResult] = []
    if not blocks or blocks[0].block_hash != compute_header_hash(genesis):
        return [AuditResult(0, False, "genesis does not match the task's genesis")]
    if task.config.rules == "chain-bound":
        return out + audit_chain_bound(task, blocks, dep.genesis.redraw_after, fetch_model,
                                       fetch_segment or (lambda h: None), evaluator)
    order = list(task.genesis_state)
    # The last W' this audit recomputed itself, and its count: a child whose W is exactly those weights
    # needs no second evaluation. Counts read from the chain are never trusted here.
    known = KnownCount(task.genesis_hash, genesis_correct)
    for prev, cur in zip(blocks, blocks[1:]):
        h = cur.header
        if cur.block_hash != compute_header_hash(h):
            out.append(AuditResult(h.height, False, "event hash is not keccak256(abi.encode(header))"))
            continue
        state = fetch_model(h.weights_hash, order)
        if state is None:
            out.append(AuditResult(h.height, False, f"W 0x{h.weights_hash.hex()[:16]} is not in the model store"))
            continue
        proof = Proof(h.parent, h.height, h.indices, h.weights_hash, state, h.miner)
        try:
            v = compute_verdict(task, prev.header, prev.block_hash, h.difficulty, proof, evaluator, known)
        except ConsensusError as e:
            out.append(AuditResult(h.height, False, f"{e.reason}: {e}"))
            continue
        if v.header != h:
            out.append(AuditResult(h.height, False, describe_difference(v.header, h)))
            continue
        out.append(AuditResult(h.height, True, f"W' 0x{h.new_weights_hash.hex()[:16]} correct "
                                               f"{h.correct_before}->{h.correct_after}"))
        known = KnownCount(v.header.new_weights_hash, v.header.correct_after)
    return out


def audit_chain_bound(task: Task, blocks: list[RecordedBlock], redraw_after: int, fetch_model: FetchModel,
                      fetch_segment: FetchSegment, evaluator: Evaluator = evaluate_serial) -> list[AuditResult]:
    """Replay the chain from genesis: each block's verdict from its parent's replayed W', its segment, its
    parent's link (R's seed with j), the inclusion times (the redraw's timing) and the parent's count
    (the monotone tip). A block that fails leaves its successors to the store's W' when it has it."""
    out = []
    parent_state: Mapping[str, torch.Tensor] | None = task.genesis_state
    for prev, cur in zip(blocks, blocks[1:]):
        h = cur.header
        result, verdict = audit_chain_bound_block(task, prev, cur, redraw_after, parent_state, fetch_segment,
                                                  evaluator)
        out.append(result)
        parent_state = verdict.new_state if verdict is not None else fetch_model(h.new_weights_hash, list(task.genesis_state))
    return out


def audit_chain_bound_block(task: Task, prev: RecordedBlock, cur: RecordedBlock, redraw_after: int,
                            parent_state: Mapping[str, torch.Tensor] | None,
                            fetch_segment: FetchSegment,
                            evaluator: Evaluator = evaluate_serial) -> tuple[AuditResult, Verdict | None]:
    h = cur.header
    if cur.block_hash != compute_header_hash(h):
        return AuditResult(h.height, False, "event hash is not keccak256(abi.encode(header))"), None
    if parent_state is None:
        return AuditResult(h.height, False, "the parent's W' could not be replayed or fetched"), None
    data = fetch_segment(cur.block_hash)
    if data is None:
        return AuditResult(h.height, False, "its segment is not available"), None
    try:
        segment = decode_segment(data)
        # The segment served must be the one the header commits to.
        if compute_segment_root(segment) != h.segment_root:
            return AuditResult(h.height, False, "the segment served does not hash to the header's segmentRoot"), None
        # The contract's clock: the parent's inclusion time opens redraws, the block's own inclusion closes them.
        tip = TipContext(prev.header, prev.link, h.difficulty, Timestamp(prev.timestamp), Timestamp(cur.timestamp),
                         redraw_after)
        v = compute_chain_bound_verdict(task, tip, parent_state, SegmentProof(h.parent, h.height, segment, h.indices,
                                                                              h.redraw, h.miner), evaluator)
    except ConsensusError as e:
        return AuditResult(h.height, False, f"{e.reason}: {e}"), None
    if v.header != h:
        return AuditResult(h.height, False, describe_difference(v.header, h)), None
    return AuditResult(h.height, True, f"replayed {len(segment)} steps, W' 0x{h.new_weights_hash.hex()[:16]} correct "
                                       f"{h.correct_before}->{h.correct_after}" + (f", redraw {h.redraw}" if h.redraw else "")), v
