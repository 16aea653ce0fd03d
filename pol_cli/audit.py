"""`pol audit`: re-verify every block of a chain from the contract's events and a model store."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable, Iterable, Mapping

import torch

from pol_chain.deploy import Deployment
from pol_core.evaluation import Evaluator, KnownCount, evaluate_serial
from pol_core.header import compute_genesis_header, compute_header_hash
from pol_core.portable import check_cpu_dispatch
from pol_core.step import enable_deterministic_mode
from pol_core.tasks import Task, load_task
from pol_core.types import ConsensusError, Hash32
from pol_core.verify import Proof, compute_genesis_correct, compute_verdict

FetchModel = Callable[[Hash32, Iterable[str]], Mapping[str, torch.Tensor] | None]


@dataclass(frozen=True)
class AuditResult:
    height: int
    ok: bool
    detail: str


def audit_chain(dep: Deployment, fetch_model: FetchModel, task: Task | None = None,
                rpc_url: str | None = None, evaluator: Evaluator = evaluate_serial) -> list[AuditResult]:
    """fetch_model(weights_hash, order) -> state or None. Returns one result per block after genesis.
    `evaluator` computes the test-set counts (verifier_service.evaluation shards them; same integers)."""
    check_cpu_dispatch()  # the verifiers' pinned kernels, so W' is recomputed bit for bit
    enable_deterministic_mode()
    task = task or load_task(dep.task, rules=dep.genesis.rules.value)
    # Chain-bound blocks are re-verified by replaying segments from the model store: issue 10 part B.
    if task.config.rules != "paper":
        return [AuditResult(0, False, f"auditing {task.config.rules} chains is not implemented yet")]
    blocks = dep.client(rpc_url=rpc_url).get_blocks(dep.deploy_block)
    # The genesis block is rebuilt from the task alone (its accuracy recomputed), not from the file.
    genesis_correct = compute_genesis_correct(task)
    genesis = compute_genesis_header(task.spec_hash, task.genesis_hash, genesis_correct, dep.genesis.difficulty)
    out = []
    if not blocks or blocks[0].block_hash != compute_header_hash(genesis):
        return [AuditResult(0, False, "genesis does not match the task's genesis")]
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
            diffs = [f.name for f in fields(h) if getattr(v.header, f.name) != getattr(h, f.name)]
            out.append(AuditResult(h.height, False, f"recomputation differs in {', '.join(diffs)}"))
            continue
        out.append(AuditResult(h.height, True, f"W' 0x{h.new_weights_hash.hex()[:16]} correct "
                                               f"{h.correct_before}->{h.correct_after}"))
        known = KnownCount(v.header.new_weights_hash, v.header.correct_after)
    return out
