"""`pol audit`: re-verify every block of a chain from the contract's events and a model store."""
from __future__ import annotations

import sys
from dataclasses import dataclass

import torch

from pol_chain.deploy import Deployment
from pol_core.evaluation import Evaluator, KnownCount, evaluate_serial
from pol_core.header import compute_genesis_header, compute_header_hash
from pol_core.step import enable_deterministic_mode
from pol_core.tasks import load_task
from pol_core.types import ConsensusError
from pol_core.verify import Proof, compute_verdict
from pol_eval import make_evaluator
from verifier_service.journal import ModelStore

from .chain_cmd import DEFAULT_DEPLOYMENT


@dataclass(frozen=True)
class AuditResult:
    height: int
    ok: bool
    detail: str


def audit_chain(dep: Deployment, fetch_model, task=None, rpc_url: str | None = None,
                evaluator: Evaluator = evaluate_serial) -> list[AuditResult]:
    """fetch_model(weights_hash, order) -> state or None. Returns one result per block after genesis."""
    enable_deterministic_mode()
    torch.set_num_threads(1)  # the verifier's setting, so W' is recomputed bit for bit
    task = task or load_task(dep.task)
    blocks = dep.client(rpc_url=rpc_url).get_blocks(dep.deploy_block)
    g = dep.genesis
    genesis = compute_genesis_header(task.spec_hash, task.genesis_hash, g["correct"], g["difficulty"])
    out = []
    if not blocks or blocks[0].block_hash != compute_header_hash(genesis):
        return [AuditResult(0, False, "genesis does not match the task's genesis")]
    order = list(task.genesis_state)
    known = None  # the last W' this audit recomputed itself, and its count
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
            diffs = [f for f in h.__dataclass_fields__ if getattr(v.header, f) != getattr(h, f)]
            out.append(AuditResult(h.height, False, f"recomputation differs in {', '.join(diffs)}"))
            continue
        out.append(AuditResult(h.height, True, f"W' 0x{h.new_weights_hash.hex()[:16]} correct "
                                               f"{h.correct_before}->{h.correct_after}"))
        # Recomputed here and equal to the header: a child whose W is this W' need not evaluate it again.
        known = KnownCount(v.header.new_weights_hash, v.header.correct_after)
    return out


def cmd_audit(args) -> int:
    dep = Deployment.load(args.deployment)
    if args.verifier:
        from prover.client import VerifierClient

        client = VerifierClient(args.verifier)

        def fetch(h, order):
            try:
                return client.get_model(h, order)
            except Exception:  # noqa: BLE001 - a missing model is reported per block
                return None
    else:
        store = ModelStore(args.models, create=False)

        def fetch(h, order):
            return store.get_state(h, order)

    task = load_task(dep.task, args.data_dir)
    evaluator = make_evaluator(args.eval_workers, args.ray_address, task=task)
    try:
        results = audit_chain(dep, fetch, task, args.rpc_url, evaluator)
    finally:
        evaluator.close()
    for r in results:
        print(f"block {r.height:5d}  {'OK  ' if r.ok else 'FAIL'}  {r.detail}")
    bad = [r for r in results if not r.ok]
    print(f"{len(results)} blocks audited, {len(bad)} failed", file=sys.stderr if bad else sys.stdout)
    return 1 if bad else 0


def register(sub) -> None:
    a = sub.add_parser("audit", help="re-verify every block from the contract's events and a model store")
    a.add_argument("--deployment", default=DEFAULT_DEPLOYMENT)
    a.add_argument("--rpc-url")
    src = a.add_mutually_exclusive_group()
    src.add_argument("--models", default=".pol/verifier/models", help="a verifier's model store directory")
    src.add_argument("--verifier", help="HOST:PORT: fetch models over gRPC instead")
    a.add_argument("--data-dir")
    a.add_argument("--eval-workers", type=int, help="test-set evaluation processes (default: one per core; 0: in-process)")
    a.add_argument("--ray-address", help="evaluate on this Ray cluster (e.g. 10.0.0.5:6379, or 'local')")
    a.set_defaults(func=cmd_audit)
