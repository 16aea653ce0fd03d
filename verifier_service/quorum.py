"""Quorum mode (PROTOCOL §16.6): this verifier's signing key, the one-signature rule, the signatures it
has seen, and its peers.

One member signs at most one header per (height, redraw): the journal records the signature durably
before it leaves the process (Journal.claim_signature), and a second, different header at the same
(height, redraw) is refused ALREADY_SIGNED. Every member's signature seen in a request or a response is
kept; two by one signer over different headers at one (height, redraw) are equivocation evidence, for
`pol quorum report`.
"""
from __future__ import annotations

import functools
import logging
import threading
from concurrent import futures
from dataclasses import dataclass

from pol.client import Rejected, VerifierUnavailable
from pol.quorum_client import QuorumClient
from pol.reasons import Refused, ServiceReason
from pol.v1 import quorum_pb2 as qpb
from pol.v1 import verifier_pb2 as pb
from pol.wire import encode_segment
from pol_chain.client import ChainClient, ChainError
from pol_core.attestation import (
    Domain,
    InvalidSignature,
    Signature,
    SignerSet,
    compute_block_digest,
    compute_signature,
    recover_signer,
)
from pol_core.chainbound import SegmentProof
from pol_core.header import Header, compute_header_encoding, compute_header_hash, decode_header
from pol_core.types import Address, ConsensusError, Hash32, InvalidHeader

from .journal import Journal, SignatureRow
from .metrics import Metrics

log = logging.getLogger("pol.verifier")


@dataclass(frozen=True)
class Signed:
    """A member's signature over one header."""

    header: Header
    signer: Address
    signature: Signature

    @property
    def block_hash(self) -> Hash32:
        return compute_header_hash(self.header)

    def message(self) -> qpb.SignedHeader:
        return qpb.SignedHeader(header=compute_header_encoding(self.header), signer=self.signer,
                                signature=self.signature)


def signed_from_message(m: qpb.SignedHeader) -> Signed:
    """InvalidSignature for a wrong-sized signer or signature, InvalidHeader for undecodable header bytes."""
    if len(m.signer) != 20 or len(m.signature) != 64:
        raise InvalidSignature("a signed header needs a 20-byte signer and a 64-byte signature")
    try:
        header = decode_header(bytes(m.header))
    except Exception as e:  # noqa: BLE001 - eth_abi's decoding errors: the bytes are not a header
        raise InvalidHeader(f"the signed header does not decode: {e}") from None
    return Signed(header, Address(bytes(m.signer)), Signature(bytes(m.signature)))


def signed_from_row(r: SignatureRow) -> Signed:
    return Signed(r.header, Address(r.signer), Signature(r.signature))


def proof_message(task: str, proof: SegmentProof) -> pb.ProofHeader:
    """The proof as SubmitProof's header carries it (chain-bound: the header is the whole proof)."""
    return pb.ProofHeader(task=task, parent_hash=proof.parent, height=proof.height, indices=list(proof.indices),
                          miner=proof.miner, segment=encode_segment(proof.segment), redraw=proof.redraw)


class QuorumMember:
    def __init__(self, chain: ChainClient, journal: Journal, metrics: Metrics, peers: list[str],
                 cosign_timeout_s: float, peer_check_s: float = 1.0, sign_blindly: bool = False):
        if chain.account is None:
            raise ValueError("quorum mode needs the member's key")
        self.chain = chain
        self.journal = journal
        self.metrics = metrics
        self.key = bytes(chain.account.key)
        self.address = Address(bytes.fromhex(chain.account.address[2:]))
        self.domain: Domain = chain.get_domain()
        self.signer_set: SignerSet = chain.get_signer_set().signer_set
        self.peers = [QuorumClient(p, client_id=f"peer-{chain.account.address}") for p in peers]
        self.cosign_timeout_s = cosign_timeout_s
        self.peer_check_s = peer_check_s
        self.sign_blindly = sign_blindly
        self._answering: dict[str, bool] = {p.target: False for p in self.peers}
        self._checked = threading.Event()  # the first round of health checks is done
        self._stop = threading.Event()
        self._pool = futures.ThreadPoolExecutor(max(2 * len(self.peers), 1), thread_name_prefix="peer")
        self._health_pool = futures.ThreadPoolExecutor(max(len(self.peers), 1), thread_name_prefix="peer-health")
        self._thread = threading.Thread(target=self._watch_peers, name="peers", daemon=True)

    # ── life cycle and liveness ──

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._health_pool.shutdown(wait=False, cancel_futures=True)
        for p in self.peers:
            p.close()

    def _watch_peers(self) -> None:
        rounds = 0
        while not self._stop.is_set():
            results = self._health_pool.map(lambda p: (p.target, p.answers(min(0.8, self.peer_check_s))), self.peers)
            for target, up in results:
                if up != self._answering[target]:
                    log.info("peer %s", "answers" if up else "does not answer", extra={"peer": target})
                self._answering[target] = up
            self.metrics.peers_up.set(sum(self._answering.values()))
            self._checked.set()
            rounds += 1
            if rounds % 5 == 0:  # the set changes rarely (equivocation, signed updates)
                try:
                    self.signer_set = self.chain.get_signer_set().signer_set
                except ChainError:
                    pass  # the attester reports an unreachable chain
            self._stop.wait(self.peer_check_s)

    def problems(self) -> list[str]:
        """What stops this member from assembling t signatures now (empty when nothing does)."""
        s = self.signer_set
        if self.address not in s.signers:
            return [f"the key {self.chain.account.address if self.chain.account else ''} is not a member of the "
                    f"contract's signer set ({s.threshold} of {len(s.signers)})"]
        need = s.threshold - 1
        up = sum(self._answering.values())
        if up < need:
            return [f"{up} of {len(self.peers)} peers answer; {s.threshold} of {len(s.signers)} signatures need "
                    f"{need} reachable peers"]
        return []

    # ── signing ──

    def digest(self, block_hash: bytes) -> Hash32:
        return compute_block_digest(self.domain, Hash32(block_hash))

    def sign(self, header: Header) -> Signed:
        """This member's signature over `header`, recorded before it is returned; ALREADY_SIGNED when it
        signed another header at the same (height, redraw). The same header again gets the same signature
        (RFC 6979), so a retry is no equivocation."""
        block_hash = compute_header_hash(header)
        signature = compute_signature(self.key, self.digest(block_hash))
        if self.sign_blindly:  # the test-only fault: no guard
            self.journal.record_signature(self.address, header, block_hash, signature)
            return Signed(header, self.address, signature)
        other = self.journal.claim_signature(self.address, header, block_hash, signature)
        if other is not None:
            raise Refused(ServiceReason.ALREADY_SIGNED,
                          f"this verifier signed block 0x{other.hex()} at height {header.height}, redraw "
                          f"{header.redraw}; it signs no other header there (the next redraw is a new round)")
        return Signed(header, self.address, signature)

    def observe(self, s: Signed) -> bool:
        """Keep a member's valid signature; False (and nothing kept) for one that is not. Logs and counts
        equivocation: the signer's second header at one (height, redraw)."""
        try:
            ok = s.signer in self.signer_set.signers and recover_signer(self.digest(s.block_hash), s.signature) == s.signer
        except InvalidSignature:
            ok = False
        if not ok:
            return False
        if self.journal.record_signature(s.signer, s.header, s.block_hash, s.signature):
            others = [r for r in self.journal.signatures_at(s.header.height, s.header.redraw, s.signer)
                      if r.block_hash != s.block_hash]
            if others:
                self.metrics.equivocations.inc()
                log.warning("equivocation: a member signed two headers at one height", extra={
                    "signer": "0x" + s.signer.hex(), "height": s.header.height, "redraw": s.header.redraw,
                    "block": s.block_hash.hex(), "other": others[0].block_hash.hex()})
        return True

    def observed_at(self, height: int, redraw: int) -> list[Signed]:
        return [signed_from_row(r) for r in self.journal.signatures_at(height, redraw)]

    def signatures_for(self, block_hash: bytes, signers: tuple[bytes, ...] | None = None) -> dict[bytes, bytes]:
        """Members' signatures over `block_hash` (members of `signers`, default the cached set)."""
        members = set(self.signer_set.signers if signers is None else signers)
        return {r.signer: r.signature for r in self.journal.signatures_for(block_hash) if r.signer in members}

    def evidence(self) -> list[tuple[Signed, Signed]]:
        return [(signed_from_row(a), signed_from_row(b)) for a, b in self.journal.equivocations()]

    # ── asking peers ──

    def collect(self, task: str, proof: SegmentProof, own: Signed) -> tuple[dict[bytes, bytes], list[str]]:
        """CoSign on every peer at once, each bounded by the CoSign deadline, until the set's threshold of
        signatures over own's block is held: a hung peer must not hold up a block the others already
        signed. Answers that come later are still read, for the evidence they carry. Returns the members'
        signatures over own's block (own included) and, per peer that did not sign by then, why."""
        msg = proof_message(task, proof)

        def ask(peer: QuorumClient) -> qpb.CoSignResponse:
            return peer.cosign(msg, own.block_hash, own.message(), self.cosign_timeout_s,
                               wait_for_ready=self._answering.get(peer.target, False))

        def read(target: str, fut: futures.Future[qpb.CoSignResponse]) -> str | None:
            """Keep what the answer carries; the refusal, if the peer did not sign own's block."""
            try:
                resp = fut.result()
            except (Rejected, VerifierUnavailable) as e:
                return f"{target}: {e}"
            for m in list(resp.observed) + [resp.signature]:
                try:
                    self.observe(signed_from_message(m))
                except ConsensusError:
                    continue  # a peer's junk is not evidence
            try:
                theirs = signed_from_message(resp.signature)
            except ConsensusError:
                theirs = None
            if theirs is None or theirs.block_hash != own.block_hash:
                return f"{target}: its signature is not over block 0x{own.block_hash.hex()}"
            return None

        jobs = {self._pool.submit(ask, p): p.target for p in self.peers}
        waiting = set(jobs)
        refusals: list[str] = []
        for fut in futures.as_completed(jobs):
            waiting.discard(fut)
            refusal = read(jobs[fut], fut)
            if refusal is not None:
                refusals.append(refusal)
            if len(self.signatures_for(own.block_hash)) >= self.signer_set.threshold:
                break
        def read_late(target: str, fut: futures.Future[qpb.CoSignResponse]) -> None:
            try:
                read(target, fut)
            except Exception:  # noqa: BLE001 - a late answer must not kill the pool's thread
                log.exception("reading a late CoSign answer")

        for fut in waiting:
            fut.add_done_callback(functools.partial(read_late, jobs[fut]))
        refusals += [f"{jobs[f]}: no answer yet" for f in waiting]
        return self.signatures_for(own.block_hash), refusals
