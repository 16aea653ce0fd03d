"""The verifier's domain logic: verify a proof, accept it exactly once, attest it, track the tip."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from pol_chain.client import ChainClient, ChainUnavailable, ContractReverted, StaleParent
from pol_chain.deploy import Deployment
from pol_core.evaluation import KnownCount
from pol_core.header import Header, compute_genesis_header, compute_header_hash
from pol_core.keccak import keccak256
from pol_core.step import enable_deterministic_mode
from pol_core.tasks import Task, load_task
from pol_core.types import ConsensusError, Hash32
from pol_core.verify import Proof, Verdict, compute_verdict, process_proof_shape
from pol_core.weights import compute_state_nbytes
from pol_eval import Backend, EvaluationError, make_evaluator

from .config import VerifierConfig
from .journal import Journal, ModelStore
from .metrics import Metrics

log = logging.getLogger("pol.verifier")


class Rejection(Exception):
    """A proof the service refuses; `kind` picks the gRPC status, `reason` is machine-readable."""

    def __init__(self, kind: str, reason: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.reason = reason


@dataclass(frozen=True)
class TipState:
    block_hash: Hash32
    header: Header
    difficulty: int


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
    def __init__(self, cfg: VerifierConfig, private_key: str, task: Task | None = None,
                 evaluator: Backend | None = None):
        enable_deterministic_mode()
        # Verification on one thread: conv and matmul results then do not depend on the thread
        # count, so any verifier on the same CPU type recomputes the same W' bit for bit.
        torch.set_num_threads(1)
        self.cfg = cfg
        self.deployment = Deployment.load(cfg.deployment)
        self.task = task or load_task(self.deployment.task, cfg.data_dir, test_limit=cfg.test_limit)
        if self.task.spec_hash.hex() != self.deployment.genesis["taskSpecHash"][2:]:
            raise SystemExit(f"task {self.task.name} has spec hash 0x{self.task.spec_hash.hex()}, "
                             f"but the contract was deployed for {self.deployment.genesis['taskSpecHash']}")
        self.chain: ChainClient = self.deployment.client(private_key, rpc_url=cfg.rpc_url)
        # Test-set evaluation: warm worker processes (or a Ray cluster), bit-identical to the serial code.
        self.evaluator = evaluator or make_evaluator(cfg.eval_workers, cfg.ray_address, cfg.ray_actors, self.task)
        root = Path(cfg.data_root)
        self.journal = Journal(root / "journal.sqlite")
        self.models = ModelStore(root / "models")
        self.metrics = Metrics()
        self.state_order = list(self.task.genesis_state.keys())
        self.state_nbytes = compute_state_nbytes(self.task.genesis_state)
        self.models.put(self.task.genesis_state, self.task.genesis_hash)
        g = self.deployment.genesis
        self.genesis_header = compute_genesis_header(self.task.spec_hash, self.task.genesis_hash, g["correct"],
                                                     g["difficulty"])
        self._lock = threading.Lock()  # guards the tip and the accept step
        self._tip_changed = threading.Condition()
        self._attest_wake = threading.Event()
        self._stop = threading.Event()
        self._verify_slots = threading.BoundedSemaphore(cfg.max_concurrent_verifications)
        self._inflight: dict[str, int] = {}
        self._inflight_lock = threading.Lock()
        self.chain_reachable = True
        self.tip = self._load_tip_from_chain()
        self._attester = threading.Thread(target=self._attest_loop, name="attester", daemon=True)

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

    def _load_tip_from_chain(self) -> TipState:
        t = self.chain.get_tip()
        return TipState(t.hash, self._header_for(t.hash), t.difficulty)

    def _set_tip(self, tip: TipState) -> None:
        with self._tip_changed:
            self.tip = tip
            self._tip_changed.notify_all()
        self.metrics.tip_height.set(tip.header.height)

    def wait_tip_change(self, seen: bytes | None, timeout: float) -> TipState:
        with self._tip_changed:
            self._tip_changed.wait_for(lambda: self.tip.block_hash != seen or self._stop.is_set(), timeout)
            return self.tip

    def pending_count(self) -> int:
        return len(self.journal.pending())

    def is_degraded(self) -> bool:
        return not self.chain_reachable or self.pending_count() > 0 and not self._attester.is_alive()

    # ── verification ──

    def admit(self, client: str) -> None:
        with self._inflight_lock:
            n = self._inflight.get(client, 0)
            # One client must not fill every verification slot with bogus proofs.
            if n >= self.cfg.max_inflight_per_client:
                raise Rejection("RESOURCE_EXHAUSTED", "RATE_LIMITED",
                                f"client {client} already has {n} proofs in flight")
            self._inflight[client] = n + 1

    def release(self, client: str) -> None:
        with self._inflight_lock:
            self._inflight[client] -= 1
            if self._inflight[client] <= 0:
                del self._inflight[client]

    def max_weights_bytes(self) -> int:
        return 2 * self.state_nbytes + (1 << 20)

    def process_position(self, proof: Proof) -> TipState:
        tip = self.tip
        pending = self.journal.pending()
        # While a block waits for its receipt, the next difficulty is not known yet.
        if pending:
            raise Rejection("UNAVAILABLE", "ATTESTATION_PENDING",
                            f"block {pending[0].header.height} awaits attestation; retry shortly")
        # Work on anything but the tip is stale.
        if proof.parent_hash != tip.block_hash:
            raise Rejection("FAILED_PRECONDITION", "STALE",
                            f"parent 0x{proof.parent_hash.hex()[:16]} is not the tip 0x{tip.block_hash.hex()[:16]} "
                            f"(height {tip.header.height})")
        # A block sits exactly one above its parent.
        if proof.height != tip.header.height + 1:
            raise Rejection("INVALID_ARGUMENT", "WRONG_HEIGHT",
                            f"height {proof.height} must be {tip.header.height + 1}")
        return tip

    def submit(self, proof: Proof, client: str = "anonymous") -> Accepted:
        """Verify and accept `proof`, then wait (bounded) for its attestation."""
        self.metrics.received.inc()
        try:
            accepted = self._submit(proof, client)
        except Rejection as r:
            self.metrics.rejected.labels(r.reason).inc()
            log.info("rejected", extra={"reason": r.reason, "detail": str(r), "client": client})
            raise
        self.metrics.accepted.inc()
        return accepted

    def _submit(self, proof: Proof, client: str) -> Accepted:
        t0 = time.perf_counter()
        try:
            process_proof_shape(self.task, proof)
        except ConsensusError as e:
            raise Rejection("INVALID_ARGUMENT", e.reason, str(e)) from e
        self.metrics.phase.labels("shape").observe(time.perf_counter() - t0)
        proof_id = compute_proof_id(proof)
        # The same proof twice is answered without recomputing it.
        if self.journal.has_proof(proof_id):
            raise Rejection("ALREADY_EXISTS", "DUPLICATE", "this proof was already accepted")
        tip = self.process_position(proof)
        self.admit(client)
        try:
            with self._verify_slots:
                # The tip may have moved while this proof waited for a slot.
                tip = self.process_position(proof)
                # The tip's W' and its count are canonical (attested), so W = W' needs no evaluation.
                known = KnownCount(tip.header.new_weights_hash, tip.header.correct_after)
                try:
                    verdict = compute_verdict(self.task, tip.header, tip.block_hash, tip.difficulty, proof,
                                              evaluator=self.evaluator, known_before=known)
                except ConsensusError as e:
                    raise Rejection("INVALID_ARGUMENT", e.reason, str(e)) from e
                except EvaluationError as e:
                    # The proof may be valid: the verifier failed, so the miner should retry.
                    log.error("evaluation failed", extra={"error": str(e)})
                    raise Rejection("UNAVAILABLE", "EVALUATION_FAILED", str(e)) from e
        finally:
            self.release(client)
        for phase, seconds in verdict.timings.items():
            self.metrics.phase.labels(phase).observe(seconds)
        verify_seconds = time.perf_counter() - t0
        with self._lock:
            if self.journal.get(verdict.block_hash) is not None or self.journal.has_proof(proof_id):
                raise Rejection("ALREADY_EXISTS", "DUPLICATE", f"block 0x{verdict.block_hash.hex()} already accepted")
            # Exactly one block per height: whoever reaches this lock second is stale.
            self.process_position(proof)
            self.models.put(proof.state, proof.weights_hash)
            self.models.put(verdict.new_state, verdict.header.new_weights_hash)
            self.journal.record_pending(verdict.block_hash, proof_id, verdict.header, verify_seconds)
            self.metrics.journal_depth.set(self.pending_count())
        log.info("accepted", extra={"height": verdict.header.height, "block": verdict.block_hash.hex(),
                                    "miner": proof.miner.hex(), "verify_s": round(verify_seconds, 4)})
        self._attest_wake.set()
        entry = self._wait_attested(verdict.block_hash, self.cfg.receipt_wait_s)
        return Accepted(verdict, entry.tx_hash if entry else None, entry.gas_used if entry else None, verify_seconds)

    def _wait_attested(self, block_hash: bytes, timeout: float):
        deadline = time.monotonic() + timeout
        with self._tip_changed:
            while True:
                entry = self.journal.get(block_hash)
                if entry is not None and entry.status == "attested":
                    return entry
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stop.is_set():
                    return None
                self._tip_changed.wait(min(remaining, 0.1))

    # ── attestation ──

    def start(self) -> None:
        self._attester.start()
        self._attest_wake.set()
        threading.Thread(target=self._prepare_evaluator, name="eval-warmup", daemon=True).start()

    def _prepare_evaluator(self) -> None:
        try:
            self.evaluator.prepare(self.task)
        except Exception:  # the first proof retries, and reports the failure to its miner
            log.exception("evaluation workers did not start")

    def stop(self) -> None:
        self._stop.set()
        self._attest_wake.set()
        with self._tip_changed:
            self._tip_changed.notify_all()
        if self._attester.is_alive():
            self._attester.join(timeout=10)
        self.evaluator.close()
        self.journal.close()

    def _pause(self, point: str) -> None:
        if self.cfg.fault_pause == point and self.cfg.fault_pause_s > 0:
            log.warning("fault injection: pausing", extra={"point": point, "seconds": self.cfg.fault_pause_s})
            time.sleep(self.cfg.fault_pause_s)

    def _attest_loop(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            self._attest_wake.wait(timeout=1.0)
            self._attest_wake.clear()
            try:
                self._attest_pending()
                if not self.chain_reachable:
                    log.info("chain reachable again")
                self.chain_reachable = True
                self.metrics.chain_up.set(1)
                backoff = 0.1
            except ChainUnavailable as e:
                if self.chain_reachable:
                    log.warning("chain unreachable; accepted blocks wait in the journal: %s", e)
                self.chain_reachable = False
                self.metrics.chain_up.set(0)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.cfg.chain_retry_max_s)
                self._attest_wake.set()
            except Exception:  # the attester must outlive any single failure
                log.exception("attester error")
                self._stop.wait(1.0)
                self._attest_wake.set()
            with self._tip_changed:
                self._tip_changed.notify_all()

    def _attest_pending(self) -> None:
        for entry in self.journal.pending():
            chain_tip = self.chain.get_tip()
            if chain_tip.hash == entry.block_hash:
                # The transaction went through before a crash: record it, never send it again.
                rec = self.chain.find_transaction(entry.block_hash, self.deployment.deploy_block)
                self.journal.mark_attested(entry.block_hash, rec.tx_hash if rec else "", None)
            elif chain_tip.hash == entry.header.parent:
                self._pause("before_send")
                try:
                    receipt = self.chain.submit_block(entry.header)
                except StaleParent:
                    continue  # re-read the tip on the next pass; the block may have landed
                except ContractReverted as e:
                    log.error("contract refused an accepted block", extra={"block": entry.block_hash.hex(), "error": str(e)})
                    self.journal.mark_orphaned(entry.block_hash)
                    continue
                self._pause("after_send")
                self.journal.mark_attested(entry.block_hash, receipt.tx_hash, receipt.gas_used)
                self.metrics.attest_latency.observe(time.time() - entry.accepted_at)
                log.info("attested", extra={"height": entry.header.height, "tx": receipt.tx_hash, "gas": receipt.gas_used})
            else:
                log.error("pending block no longer extends the chain", extra={"block": entry.block_hash.hex()})
                self.journal.mark_orphaned(entry.block_hash)
        self.metrics.journal_depth.set(self.pending_count())
        t = self.chain.get_tip()
        if t.hash != self.tip.block_hash or t.difficulty != self.tip.difficulty:
            self._set_tip(TipState(t.hash, self._header_for(t.hash), t.difficulty))
