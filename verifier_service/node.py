"""The verifier's domain logic: verify a proof, accept it exactly once, track the tip.

A node is assembled from its collaborators (task, deployment record, chain client, journal, model
store, metrics); `verifier_service.factory.build_node` builds them from a config for
`pol verifier serve`, and tests assemble their own. It raises typed errors only: ConsensusError for
a broken rule and Refused for a service reason; it knows nothing of gRPC.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import torch

from pol.reasons import Refused, ServiceReason
from pol.wire import decode_state
from pol_chain.client import ChainClient, TipInfo
from pol_chain.deploy import Deployment
from pol_core.header import Header, compute_header_hash
from pol_core.keccak import keccak256
from pol_core.rules import process_chain_position
from pol_core.rulesets import RuleSet
from pol_core.step import enable_deterministic_mode
from pol_core.tasks import Task
from pol_core.types import ConsensusError, Difficulty, Hash32
from pol_core.verify import Proof, Verdict, compute_verdict, process_proof_shape
from pol_core.weights import compute_state_nbytes

from .attester import Attester
from .config import VerifierConfig
from .journal import Journal, JournalEntry, ModelStore
from .metrics import Metrics

log = logging.getLogger("pol.verifier")


class SetupError(Exception):
    """The node's collaborators do not belong together (for example, a task the contract was not
    deployed for)."""


def process_rules_supported(deployment: Deployment) -> None:
    """Raise SetupError unless the deployment's rule set is one this service verifies."""
    # The node applies the paper verdict only; chain-bound verification is wired in by issue 10 part B.
    if deployment.genesis.rules is not RuleSet.PAPER:
        raise SetupError(f"the deployment uses {deployment.genesis.rules.value} rules; this verifier implements "
                         f"the paper rules only")


@dataclass(frozen=True)
class TipState:
    block_hash: Hash32
    header: Header
    difficulty: Difficulty


@dataclass(frozen=True)
class TipView:
    """What the service reports about its tip (pol.v1.Tip)."""

    block_hash: Hash32
    height: int
    difficulty: int
    model_hash: Hash32
    correct: int
    task: str
    task_spec_hash: Hash32
    num_params: int
    degraded: bool
    pending_attestations: int
    contract_address: str
    chain_id: int


@dataclass(frozen=True)
class Accepted:
    verdict: Verdict
    tx_hash: str | None
    gas_used: int | None
    verify_seconds: float


def compute_proof_id(proof: Proof) -> bytes:
    """Identifies a submission before any recomputation, to refuse duplicates cheaply."""
    body = proof.parent_hash + proof.height.to_bytes(8, "big") + proof.weights_hash + bytes(proof.miner)
    return keccak256(body + b"".join(int(i).to_bytes(4, "big") for i in proof.indices))


class VerifierNode:
    def __init__(self, *, task: Task, deployment: Deployment, chain: ChainClient, journal: Journal,
                 models: ModelStore, metrics: Metrics, cfg: VerifierConfig | None = None):
        # The verifier's recomputation must be repeatable bit for bit (pol_core.step).
        enable_deterministic_mode()
        # This service applies the paper verdict; chain-bound verification is wired in by issue 10 part B.
        process_rules_supported(deployment)
        # The contract pins one task; verifying another would attest blocks no one can re-verify.
        if task.spec_hash != deployment.genesis.task_spec_hash:
            raise SetupError(f"task {task.name} has spec hash 0x{task.spec_hash.hex()}, but the contract was "
                             f"deployed for 0x{deployment.genesis.task_spec_hash.hex()}")
        self.cfg = cfg or VerifierConfig()
        self.task = task
        self.deployment = deployment
        self.chain = chain
        self.journal = journal
        self.models = models
        self.metrics = metrics
        self.state_order = list(task.genesis_state.keys())
        self.state_nbytes = compute_state_nbytes(task.genesis_state)
        self.models.put(task.genesis_state, task.genesis_hash)
        self.genesis_header = deployment.genesis.header()
        self._lock = threading.Lock()  # guards the accept step
        self._tip_changed = threading.Condition()
        self._stopped = threading.Event()
        self._verify_slots = threading.BoundedSemaphore(self.cfg.max_concurrent_verifications)
        self._inflight: dict[str, int] = {}
        self._inflight_lock = threading.Lock()
        t = chain.get_tip()
        self.tip = TipState(t.link, self._header_for(t.link), Difficulty(t.difficulty))  # paper rules: link = block hash
        self.attester = Attester(chain, journal, metrics, deployment.deploy_block, self._after_attest_pass,
                                 self.cfg.chain_retry_max_s, self.cfg.fault_pause, self.cfg.fault_pause_s,
                                 self.cfg.max_pending_age_s, self.cfg.min_free_bytes, 3 * self.cfg.rpc_timeout_s + 1)

    # ── life cycle ──

    def start(self) -> None:
        self.attester.start()

    def stop(self) -> None:
        self._stopped.set()
        with self._tip_changed:
            self._tip_changed.notify_all()
        self.attester.stop()
        self.journal.close()

    # ── tip ──

    def _header_for(self, block_hash: bytes) -> Header:
        if block_hash == compute_header_hash(self.genesis_header):
            return self.genesis_header
        entry = self.journal.get(block_hash)
        if entry is not None:
            return entry.header
        # Attested by someone else: rebuild it from the contract's events.
        rec = self.chain.find_transaction(block_hash, self.deployment.deploy_block)
        if rec is None:
            raise RuntimeError(f"tip 0x{block_hash.hex()} is on chain but not in its events")
        return rec.header

    def _after_attest_pass(self, chain_tip: TipInfo | None) -> None:
        if chain_tip is not None and (chain_tip.link != self.tip.block_hash or chain_tip.difficulty != self.tip.difficulty):
            tip = TipState(chain_tip.link, self._header_for(chain_tip.link), Difficulty(chain_tip.difficulty))
            self.metrics.tip_height.set(tip.header.height)
            with self._tip_changed:
                self.tip = tip
        with self._tip_changed:
            self._tip_changed.notify_all()

    def wait_tip_change(self, seen: bytes | None, timeout: float) -> TipState:
        with self._tip_changed:
            self._tip_changed.wait_for(lambda: self.tip.block_hash != seen or self._stopped.is_set(), timeout)
            return self.tip

    def pending_count(self) -> int:
        return len(self.journal.pending())

    def is_degraded(self) -> bool:
        return bool(self.attester.problems())  # the attester says what stops blocks from landing

    def tip_view(self) -> TipView:
        t = self.tip
        return TipView(
            block_hash=t.block_hash, height=t.header.height, difficulty=t.difficulty,
            model_hash=t.header.new_weights_hash, correct=t.header.correct_after, task=self.task.name,
            task_spec_hash=self.task.spec_hash, num_params=self.task.num_params, degraded=self.is_degraded(),
            pending_attestations=self.pending_count(), contract_address=self.deployment.address,
            chain_id=self.deployment.chain_id,
        )

    # ── what the service serves ──

    @property
    def task_name(self) -> str:
        return self.task.name

    def get_block(self, *, block_hash: bytes | None = None, height: int | None = None) -> JournalEntry | None:
        if block_hash is not None:
            return self.journal.get(block_hash)
        return None if height is None else self.journal.get_by_height(height)

    def get_model_bytes(self, weights_hash: bytes) -> bytes | None:
        return self.models.get_bytes(weights_hash)

    def decode_weights(self, blob: bytes) -> dict[str, torch.Tensor]:
        return decode_state(blob, self.state_order)

    def serve_metrics(self, port: int) -> int:
        """Prometheus metrics on 127.0.0.1:`port` (0: a free one); returns the port."""
        return self.metrics.serve(port)

    def max_weights_bytes(self) -> int:
        """No honest state of this task needs more bytes (safetensors' header is small)."""
        return 2 * self.state_nbytes + (1 << 20)

    # ── verification ──

    def admit(self, client: str) -> None:
        with self._inflight_lock:
            n = self._inflight.get(client, 0)
            # One client must not fill every verification slot with bogus proofs.
            if n >= self.cfg.max_inflight_per_client:
                raise Refused(ServiceReason.RATE_LIMITED, f"client {client} already has {n} proofs in flight")
            self._inflight[client] = n + 1

    def release(self, client: str) -> None:
        with self._inflight_lock:
            self._inflight[client] -= 1
            if self._inflight[client] <= 0:
                del self._inflight[client]

    def process_position(self, proof: Proof) -> TipState:
        tip = self.tip
        pending = self.journal.pending()
        # While a block waits for its receipt, the next difficulty is not known yet.
        if pending:
            raise Refused(ServiceReason.ATTESTATION_PENDING,
                          f"block {pending[0].header.height} awaits attestation; retry shortly")
        process_chain_position(tip.block_hash, tip.header.height, proof.parent_hash, proof.height)
        return tip

    def submit(self, proof: Proof, client: str = "anonymous") -> Accepted:
        """Verify and accept `proof`, then wait (bounded) for its attestation."""
        self.metrics.received.inc()
        try:
            accepted = self._submit(proof, client)
        except (ConsensusError, Refused) as e:
            self.metrics.rejected.labels(e.reason.value).inc()
            log.info("rejected", extra={"reason": e.reason.value, "detail": str(e), "client": client})
            raise
        self.metrics.accepted.inc()
        return accepted

    def _submit(self, proof: Proof, client: str) -> Accepted:
        t0 = time.perf_counter()
        process_proof_shape(self.task, proof)
        self.metrics.phase.labels("shape").observe(time.perf_counter() - t0)
        proof_id = compute_proof_id(proof)
        # The same proof twice is answered without recomputing it.
        if self.journal.has_proof(proof_id):
            raise Refused(ServiceReason.DUPLICATE, "this proof was already accepted")
        self.process_position(proof)
        self.admit(client)
        try:
            with self._verify_slots:
                # The tip may have moved while this proof waited for a slot.
                tip = self.process_position(proof)
                verdict = compute_verdict(self.task, tip.header, tip.block_hash, tip.difficulty, proof)
        finally:
            self.release(client)
        for phase, seconds in verdict.timings.items():
            self.metrics.phase.labels(phase).observe(seconds)
        verify_seconds = time.perf_counter() - t0
        with self._lock:
            # Two identical proofs may both have passed the cheap check above while verifying.
            if self.journal.get(verdict.block_hash) is not None or self.journal.has_proof(proof_id):
                raise Refused(ServiceReason.DUPLICATE, f"block 0x{verdict.block_hash.hex()} already accepted")
            # Exactly one block per height: whoever reaches this lock second is stale.
            self.process_position(proof)
            self.models.put(proof.state, proof.weights_hash)
            self.models.put(verdict.new_state, verdict.header.new_weights_hash)
            self.journal.record_pending(verdict.block_hash, proof_id, verdict.header, verify_seconds)
            self.metrics.journal_depth.set(self.pending_count())
        log.info("accepted", extra={"height": verdict.header.height, "block": verdict.block_hash.hex(),
                                    "miner": proof.miner.hex(), "verify_s": round(verify_seconds, 4)})
        self.attester.wake()
        entry = self._wait_attested(verdict.block_hash, self.cfg.receipt_wait_s)
        return Accepted(verdict, entry.tx_hash if entry else None, entry.gas_used if entry else None, verify_seconds)

    def _wait_attested(self, block_hash: bytes, timeout: float) -> JournalEntry | None:
        deadline = time.monotonic() + timeout
        with self._tip_changed:
            while True:
                entry = self.journal.get(block_hash)
                if entry is not None and entry.status == "attested":
                    return entry
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stopped.is_set():
                    return None
                self._tip_changed.wait(min(remaining, 0.1))
