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
from pol_core.attestation import InvalidSignature
from pol_core.chainbound import SegmentProof, TipContext, compute_chain_bound_verdict
from pol_core.header import Header, compute_header_hash
from pol_core.segment import compute_segment_root
from pol.wire import decode_segment
from pol_core.keccak import keccak256
from pol_core.portable import check_cpu_dispatch
from pol_core.rules import process_chain_position
from pol_core.rulesets import RuleSet
from pol_core.step import enable_deterministic_mode
from pol_core.tasks import Task
from pol_core.evaluation import KnownCount
from pol_core.types import ConsensusError, Difficulty, Hash32, InvalidHeader, InvalidSegment, Timestamp, WrongRules
from pol_core.verify import Proof, Verdict, compute_verdict, process_proof_shape
from pol_core.weights import compute_state_nbytes

from .attester import Attester
from .config import VerifierConfig, parse_peers
from .evaluation import Backend, EvaluationError
from .evaluation.serial import InProcessEvaluator
from .fault import compute_blind_verdict
from .journal import Journal, JournalEntry, ModelStore
from .metrics import Metrics
from .quorum import QuorumMember, Signed
from .replay import ReplayError, ReplayStore
from .verdicts import VerdictPool

log = logging.getLogger("pol.verifier")


class SetupError(Exception):
    """The node's collaborators do not belong together (for example, a task the contract was not
    deployed for)."""


AnyProof = Proof | SegmentProof


@dataclass(frozen=True)
class TipState:
    link: Hash32  # what the next header names as parent and R's seed (paper rules: block_hash)
    block_hash: Hash32
    header: Header
    difficulty: Difficulty
    time: Timestamp  # the tip's inclusion time; redraws open from it


@dataclass(frozen=True)
class TipView:
    """What the service reports about its tip (pol.v1.Tip)."""

    block_hash: Hash32
    link: Hash32
    rules: RuleSet
    time: int
    redraw_after: int
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


def compute_proof_id(proof: AnyProof) -> bytes:
    """Identifies a submission before any recomputation, to refuse duplicates cheaply."""
    if isinstance(proof, SegmentProof):
        body = (proof.parent + proof.height.to_bytes(8, "big") + compute_segment_root(proof.segment)
                + int(proof.redraw).to_bytes(4, "big") + bytes(proof.miner))
    else:
        body = proof.parent_hash + proof.height.to_bytes(8, "big") + proof.weights_hash + bytes(proof.miner)
    return keccak256(body + b"".join(int(i).to_bytes(4, "big") for i in proof.indices))


def get_parent_link(proof: AnyProof) -> Hash32:
    return proof.parent if isinstance(proof, SegmentProof) else proof.parent_hash


class VerifierNode:
    def __init__(self, *, task: Task, deployment: Deployment, chain: ChainClient, journal: Journal,
                 models: ModelStore, metrics: Metrics, cfg: VerifierConfig | None = None,
                 evaluator: Backend | None = None, verdicts: VerdictPool | None = None):
        # The verifier's recomputation must be repeatable bit for bit on any x86-64 server: pinned
        # kernels (pol_core.portable; the entry point pins before the task loads), deterministic mode.
        log.info("dispatch: %s", check_cpu_dispatch().describe())
        enable_deterministic_mode()
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
        # Test-set evaluation (verifier_service.evaluation): warm worker processes or a Ray cluster, with
        # the serial code's integers; in-process where none is given. The node closes it on stop.
        self.evaluator: Backend = evaluator or InProcessEvaluator()
        # Verdicts in warm worker processes (verifier_service.verdicts); on the verify thread where none.
        self.verdicts = verdicts
        self.state_order = list(task.genesis_state.keys())
        self.state_nbytes = compute_state_nbytes(task.genesis_state)
        self.models.put(task.genesis_state, task.genesis_hash)
        self.genesis_header = deployment.genesis.header()
        self.rules = deployment.genesis.rules
        # Chain-bound: W is replayed, so the store keeps segments and checkpoints and rebuilds the rest.
        self.replay = (ReplayStore(task, journal, models, compute_header_hash(self.genesis_header), self.cfg.checkpoint_every)
                       if self.rules is RuleSet.CHAIN_BOUND else None)
        self._lock = threading.Lock()  # guards the accept step
        self._tip_changed = threading.Condition()
        self._stopped = threading.Event()
        self._verify_slots = threading.BoundedSemaphore(self.cfg.max_concurrent_verifications)
        self._inflight: dict[str, int] = {}
        self._inflight_lock = threading.Lock()
        self.tip = self._tip_state(chain.get_tip())
        # Quorum mode: blocks need t members' signatures; this verifier is one member (PROTOCOL §16.6).
        self.quorum: QuorumMember | None = None
        if deployment.quorum is not None:
            # Paper rules have no redraw: a split vote at a height would halt the chain for good.
            if self.replay is None:
                raise SetupError("a quorum deployment needs the chain-bound rules (a split vote must be able to "
                                 "move on to the next redraw)")
            self.quorum = QuorumMember(chain, journal, metrics, parse_peers(self.cfg.peers), self.cfg.cosign_timeout_s,
                                       self.cfg.peer_check_s, self.cfg.fault_sign_blindly)
        self.attester = Attester(chain, journal, metrics, deployment.deploy_block, self._after_attest_pass,
                                 self.cfg.chain_retry_max_s, self.cfg.fault_pause, self.cfg.fault_pause_s,
                                 self.cfg.max_pending_age_s, self.cfg.min_free_bytes, 3 * self.cfg.rpc_timeout_s + 1,
                                 quorum=self.quorum)

    # ── life cycle ──

    def start(self) -> None:
        if self.quorum is not None:
            self.quorum.start()
        self.attester.start()
        threading.Thread(target=self._prepare_evaluator, name="eval-warmup", daemon=True).start()

    def _prepare_evaluator(self) -> None:
        try:
            self.evaluator.prepare(self.task)
            if self.verdicts is not None:
                self.verdicts.prepare()
        except Exception:  # the first proof retries, and reports the failure to its miner
            log.exception("evaluation workers did not start")

    def stop(self) -> None:
        self._stopped.set()
        with self._tip_changed:
            self._tip_changed.notify_all()
        self.attester.stop()
        if self.quorum is not None:
            self.quorum.stop()
        self.evaluator.close()
        if self.verdicts is not None:
            self.verdicts.close()
        self.journal.close()

    # ── tip ──

    def _tip_state(self, t: TipInfo) -> TipState:
        header = self._header_for(t.link, t.height)
        return TipState(t.link, compute_header_hash(header), header, Difficulty(t.difficulty), t.time)

    def _header_for(self, link: bytes, height: int) -> Header:
        """The header of the block whose link is `link` (its hash under paper rules)."""
        if height == 0:
            return self.genesis_header
        entry = self.journal.get_by_link(link)
        if entry is not None:
            return entry.header
        # Attested by someone else: rebuild it from the contract's events.
        rec = self.chain.find_by_link(link, self.deployment.deploy_block)
        if rec is None:
            raise RuntimeError(f"tip 0x{link.hex()} is on chain but not in its events")
        return rec.header

    def _after_attest_pass(self, chain_tip: TipInfo | None) -> None:
        if chain_tip is not None and (chain_tip.link != self.tip.link or chain_tip.difficulty != self.tip.difficulty):
            tip = self._tip_state(chain_tip)
            self.metrics.tip_height.set(tip.header.height)
            with self._tip_changed:
                self.tip = tip
        with self._tip_changed:
            self._tip_changed.notify_all()

    def wait_tip_change(self, seen: bytes | None, timeout: float, seen_link: bytes | None = None) -> TipState:
        """The tip once it is not (`seen`, `seen_link`): a chain-bound block attested again after a rollback
        keeps its hash but may get another link, and miners need the new one at once."""
        with self._tip_changed:
            self._tip_changed.wait_for(lambda: self.tip.block_hash != seen or self._stopped.is_set()
                                       or (seen_link is not None and self.tip.link != seen_link), timeout)
            return self.tip

    def pending_count(self) -> int:
        return len(self.journal.pending())

    def is_degraded(self) -> bool:
        return bool(self.attester.problems())  # the attester says what stops blocks from landing

    def tip_view(self) -> TipView:
        t = self.tip
        return TipView(
            block_hash=t.block_hash, link=t.link, rules=self.rules, time=t.time,
            redraw_after=self.deployment.genesis.redraw_after if self.rules is RuleSet.CHAIN_BOUND else 0,
            height=t.header.height, difficulty=t.difficulty,
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
        return self.replay.get_bytes(weights_hash) if self.replay else self.models.get_bytes(weights_hash)

    def get_segment(self, block_hash: bytes) -> bytes | None:
        """The encoded segment of an accepted chain-bound block (None under paper rules)."""
        return self.replay.get_segment(block_hash) if self.replay else None

    def get_link(self, block_hash: bytes) -> bytes | None:
        """What the block's child names as parent, once it is attested."""
        return self.journal.get_link(block_hash)

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

    def process_position(self, proof: AnyProof) -> TipState:
        tip = self.tip
        pending = self.journal.pending()
        # While a block waits for its receipt, the next difficulty is not known yet.
        if pending:
            raise Refused(ServiceReason.ATTESTATION_PENDING,
                          f"block {pending[0].header.height} awaits attestation; retry shortly")
        process_chain_position(tip.link, tip.header.height, get_parent_link(proof), proof.height)
        return tip

    def submit(self, proof: AnyProof, client: str = "anonymous") -> Accepted:
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

    def _submit(self, proof: AnyProof, client: str) -> Accepted:
        t0 = time.perf_counter()
        # A verdict worker checks the shape first thing (compute_verdict): this process need not.
        if isinstance(proof, Proof) and self.verdicts is None:
            process_proof_shape(self.task, proof)
        self.metrics.phase.labels("shape").observe(time.perf_counter() - t0)
        proof_id = compute_proof_id(proof)
        # The same proof twice is answered without recomputing it (quorum mode: a proof this verifier
        # co-signed may still be assembled here, should its first relayer have gone).
        if self.journal.has_accepted_proof(proof_id) if self.quorum else self.journal.has_proof(proof_id):
            raise Refused(ServiceReason.DUPLICATE, "this proof was already accepted")
        if self.quorum is not None:
            # Blocks are also assembled by peers: a proof on a tip this node has not seen yet is checked
            # against the chain's (and one on a tip gone is STALE before any signature is at stake).
            self._tip_for(proof)
        self.process_position(proof)
        self.admit(client)
        try:
            with self._verify_slots:
                # The tip may have moved while this proof waited for a slot.
                tip = self.process_position(proof)
                try:
                    verdict = self._verdict(tip, proof)
                except EvaluationError as e:
                    # The proof may be valid: the verifier failed, so the miner should retry.
                    raise Refused(ServiceReason.EVALUATION_FAILED, str(e)) from e
        finally:
            self.release(client)
        for phase, seconds in verdict.timings.items():
            self.metrics.phase.labels(phase).observe(seconds)
        verify_seconds = time.perf_counter() - t0
        if self.quorum is not None:
            return self._accept_quorum(self.quorum, tip, proof, proof_id, verdict, verify_seconds)
        with self._lock:
            # Two identical proofs may both have passed the cheap check above while verifying.
            if self.journal.get(verdict.block_hash) is not None or self.journal.has_proof(proof_id):
                raise Refused(ServiceReason.DUPLICATE, f"block 0x{verdict.block_hash.hex()} already accepted")
            # Exactly one block per height: whoever reaches this lock second is stale.
            self.process_position(proof)
            self._store_models(tip, proof, verdict)
            self.journal.record_pending(verdict.block_hash, proof_id, verdict.header, verify_seconds)
            self.metrics.journal_depth.set(self.pending_count())
        log.info("accepted", extra={"height": verdict.header.height, "block": verdict.block_hash.hex(),
                                    "miner": proof.miner.hex(), "verify_s": round(verify_seconds, 4)})
        self.attester.wake()
        entry = self._wait_attested(verdict.block_hash, self.cfg.receipt_wait_s)
        return Accepted(verdict, entry.tx_hash if entry else None, entry.gas_used if entry else None, verify_seconds)

    # ── quorum mode ──

    def _accept_quorum(self, q: QuorumMember, tip: TipState, proof: AnyProof, proof_id: bytes, verdict: Verdict,
                       verify_seconds: float) -> Accepted:
        """Sign (durably), ask every peer to co-sign, and with t signatures make the block pending: the
        attester relays it with submitBlockSigned. Fewer than t: QUORUM_UNAVAILABLE, nothing sent."""
        if not isinstance(proof, SegmentProof):
            raise WrongRules("a quorum deployment runs the chain-bound rules: send a segment")
        h = verdict.header
        with self._lock:
            if self.journal.has_accepted_proof(proof_id):
                raise Refused(ServiceReason.DUPLICATE, f"block 0x{verdict.block_hash.hex()} already accepted")
            self.process_position(proof)
            own = q.sign(h)  # the one-signature rule; recorded before it leaves the process
            self._store_models(tip, proof, verdict)
            self.journal.record_cosigned(verdict.block_hash, proof_id, h, verify_seconds)
        signatures, refusals = q.collect(self.task.name, proof, own)
        for refusal in refusals:
            log.info("peer did not co-sign", extra={"block": verdict.block_hash.hex(), "detail": refusal})
        t = q.signer_set.threshold
        if len(signatures) < t:
            raise Refused(ServiceReason.QUORUM_UNAVAILABLE,
                          f"{len(signatures)} of {t} signatures for block 0x{verdict.block_hash.hex()}: "
                          + "; ".join(refusals))
        with self._lock:
            self.journal.promote_pending(verdict.block_hash)
            self.metrics.journal_depth.set(self.pending_count())
        log.info("accepted", extra={"height": h.height, "block": verdict.block_hash.hex(), "miner": proof.miner.hex(),
                                    "verify_s": round(verify_seconds, 4), "signatures": len(signatures)})
        self.attester.wake()
        entry = self._wait_attested(verdict.block_hash, self.cfg.receipt_wait_s)
        return Accepted(verdict, entry.tx_hash if entry else None, entry.gas_used if entry else None, verify_seconds)

    def cosign(self, proof: SegmentProof, requested: Signed) -> tuple[Signed, list[Signed]]:
        """A peer's request: recompute the block from the proof alone and sign it only if this verifier's
        own verdict is the requested header, and it signed no other header at that (height, redraw).
        Returns this member's signature and every signature it holds at that (height, redraw)."""
        q = self.quorum
        if q is None:
            raise Refused(ServiceReason.NOT_QUORUM, "this deployment has a single attester: nothing to co-sign")
        h = requested.header
        # The requester's signature must be a member's, over the header it claims.
        if not q.observe(requested):
            raise InvalidSignature(f"the requester's signature is not a signer-set member's over block "
                                   f"0x{requested.block_hash.hex()}")
        if (h.height, h.redraw, h.parent, h.miner, tuple(h.indices)) != (
                proof.height, proof.redraw, proof.parent, proof.miner, tuple(proof.indices)):
            raise InvalidHeader("the requested header is not this proof's (height, redraw, parent, miner or P differ)")
        if q.sign_blindly:  # the test-only fault: sign whatever is asked
            return q.sign(h), q.observed_at(h.height, h.redraw)
        tip = self._tip_for(proof)
        with self._verify_slots:
            try:
                verdict = self._verdict(tip, proof)
            except EvaluationError as e:
                raise Refused(ServiceReason.EVALUATION_FAILED, str(e)) from e
        # Signs only its own result: a header that differs in any field is another block.
        if verdict.block_hash != requested.block_hash:
            raise InvalidHeader(f"this verifier's verdict is block 0x{verdict.block_hash.hex()}, not the requested "
                                f"0x{requested.block_hash.hex()}")
        with self._lock:
            own = q.sign(verdict.header)
            self._store_models(tip, proof, verdict)
            self.journal.record_cosigned(verdict.block_hash, compute_proof_id(proof), verdict.header, 0.0)
        q.observe(own)
        return own, q.observed_at(h.height, h.redraw)

    def _tip_for(self, proof: AnyProof) -> TipState:
        """The tip a peer's proof builds on: this node may not have seen the chain move yet."""
        tip = self.tip
        if get_parent_link(proof) != tip.link:
            self._after_attest_pass(self.chain.get_tip())
            tip = self.tip
        return tip

    def _catch_up(self, tip: TipState) -> None:
        """Fetch from peers the segments of the chain's blocks this store lacks (assembled by others, or
        while this verifier was down), each checked against its header's segment root from the contract's
        events; then replay to the tip, which checks every W and W' hash."""
        if self.quorum is None or self.replay is None:
            return
        records = self.chain.get_blocks(self.deployment.deploy_block)
        by_hash = {r.block_hash: r for r in records}
        by_link = {r.link: r for r in records}
        genesis = self.replay.genesis_block
        missing = []
        cur = by_hash.get(tip.block_hash)
        while cur is not None and cur.block_hash != genesis and self.journal.get_segment(cur.block_hash) is None:
            missing.append(cur)
            cur = by_link.get(cur.header.parent)
        for rec in reversed(missing):
            parent = by_link.get(rec.header.parent)
            parent_block = genesis if parent is None else parent.block_hash
            segment = self._fetch_segment(self.quorum, rec.block_hash, rec.header.segment_root)
            self.journal.record_caught_up(rec.block_hash, rec.header, rec.tx_hash, rec.link)
            self.journal.record_segment(rec.block_hash, parent_block, segment, rec.header.weights_hash,
                                        rec.header.new_weights_hash)
            log.info("caught up", extra={"height": rec.header.height, "block": rec.block_hash.hex()})
        if missing:
            try:
                self.replay.get_state(tip.header.new_weights_hash)
            except ReplayError as e:
                raise Refused(ServiceReason.UNKNOWN_MODEL, f"catch-up: {e}") from e

    def _fetch_segment(self, q: QuorumMember, block_hash: bytes, segment_root: bytes) -> bytes:
        errors = []
        for peer in q.peers:
            try:
                b = peer.get_block(block_hash=block_hash, timeout=self.cfg.cosign_timeout_s)
            except Exception as e:  # noqa: BLE001 - try the next peer
                errors.append(f"{peer.target}: {e}")
                continue
            segment = bytes(b.segment)
            root: bytes = b""
            try:
                root = compute_segment_root(decode_segment(segment))
            except InvalidSegment:
                pass
            # The header on chain fixes the segment: a peer cannot hand out another one.
            if root == segment_root:
                return segment
            errors.append(f"{peer.target}: its segment does not match the header's root")
        raise Refused(ServiceReason.UNKNOWN_MODEL, f"no peer has the segment of block 0x{block_hash.hex()} "
                      f"({'; '.join(errors) or 'no peers'})")

    def _verdict(self, tip: TipState, proof: AnyProof) -> Verdict:
        """The deployment's verdict. A proof for the other rule set is refused by pol_core (WRONG_RULES)."""
        if isinstance(proof, Proof):
            # The tip's W' and its count are canonical (attested), so W = W' needs no evaluation.
            known = KnownCount(tip.header.new_weights_hash, tip.header.correct_after)
            if self.verdicts is not None:
                return self.verdicts.paper(tip.header, tip.link, tip.difficulty, proof, known)
            return compute_verdict(self.task, tip.header, tip.link, tip.difficulty, proof,
                                   evaluator=self.evaluator, known_before=known)
        # A segment proof names no W: under paper rules there is nothing to verify it against.
        if self.replay is None:
            raise WrongRules("this deployment uses the paper rules: a proof carries W, not a segment")
        parent_state = self.replay.get_state(tip.header.new_weights_hash)
        if parent_state is None and self.quorum is not None:
            self._catch_up(tip)  # the tip was assembled by others, or landed while this verifier was down
            parent_state = self.replay.get_state(tip.header.new_weights_hash)
        if parent_state is None:
            raise Refused(ServiceReason.UNKNOWN_MODEL, f"this verifier cannot rebuild the tip's W' "
                          f"0x{tip.header.new_weights_hash.hex()} (attested by another verifier?)")
        if self.quorum is not None and self.quorum.sign_blindly:  # the test-only fault: no rule is checked
            return compute_blind_verdict(self.task, self._context(tip, proof), parent_state, proof)
        if self.verdicts is not None:
            return self.verdicts.chain_bound(self._context(tip, proof), parent_state, proof)
        return compute_chain_bound_verdict(self.task, self._context(tip, proof), parent_state, proof,
                                           evaluator=self.evaluator)

    def _context(self, tip: TipState, proof: SegmentProof) -> TipContext:
        # The chain's clock matters only for a redraw; j = 0 costs no extra chain call.
        chain_time = Timestamp(self.chain.get_timestamp()) if proof.redraw > 0 else tip.time
        return TipContext(tip.header, tip.link, tip.difficulty, tip.time, chain_time,
                          self.deployment.genesis.redraw_after)

    def _store_models(self, tip: TipState, proof: AnyProof, verdict: Verdict) -> None:
        """Paper rules: W and W' in full. Chain-bound: the segment, and W' at checkpoint heights."""
        h = verdict.header
        if isinstance(proof, SegmentProof) and self.replay is not None and verdict.state is not None:
            self.replay.record(verdict.block_hash, tip.block_hash, h.height, proof.segment, verdict.state,
                               h.weights_hash, verdict.new_state, h.new_weights_hash)
            return
        if isinstance(proof, Proof):
            self.models.put(proof.state, proof.weights_hash)
        self.models.put(verdict.new_state, h.new_weights_hash)

    def _wait_attested(self, block_hash: bytes, timeout: float) -> JournalEntry | None:
        deadline = time.monotonic() + timeout
        with self._tip_changed:
            while True:
                entry = self.journal.get(block_hash)
                # Attested, and the node's tip has moved to it: the caller's next GetTip shows its block.
                if entry is not None and entry.status == "attested" and self.tip.header.height >= entry.header.height:
                    return entry
                # Lost for good (another block holds its height, or the contract refused it): waiting out
                # the deadline would hold the slot and tell the prover nothing more. An orphan whose
                # height is still open may be sent again once its parent is the tip (after a rollback).
                if entry is not None and entry.status == "orphaned" and (
                        self.tip.header.height >= entry.header.height or self.attester.is_refused(block_hash)):
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stopped.is_set():
                    return None
                self._tip_changed.wait(min(remaining, 0.1))
