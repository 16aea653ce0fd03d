"""The gRPC face of quorum mode: pol.v1.Quorum, on the verifier's port (thin, as server.py's servicers)."""
from __future__ import annotations

import asyncio
from concurrent import futures
from typing import Any

import grpc

from pol.reasons import Refused, ServiceReason
from pol.v1 import quorum_pb2 as qpb
from pol.v1 import quorum_pb2_grpc as qpb_grpc
from pol_core.rulesets import RuleSet
from pol_core.types import InvalidHeader, WrongRules

from .quorum import signed_from_message
from .server import VerifierServicer, build_segment_proof, check_header, decoded, rejects

SERVICE = "pol.v1.Quorum"


class QuorumServicer(qpb_grpc.QuorumServicer):
    def __init__(self, verifier: VerifierServicer):
        self.verifier = verifier
        self.node = verifier.node
        # Its own threads, and not SubmitProof's slots: a member whose slots all hold submissions waiting
        # for co-signatures must still answer its peers' CoSign (else two members wait on each other).
        # The recomputation itself takes one of the node's verification slots.
        self.pool = futures.ThreadPoolExecutor(verifier.cfg.max_concurrent_verifications + 2,
                                               thread_name_prefix="cosign")

    def _cosign(self, request: qpb.CoSignRequest) -> qpb.CoSignResponse:
        if self.node.quorum is None:
            raise Refused(ServiceReason.NOT_QUORUM, "this deployment has a single attester: nothing to co-sign")
        check_header(self.node, request.proof)
        if self.node.rules is not RuleSet.CHAIN_BOUND:
            raise WrongRules("quorum mode runs the chain-bound rules")
        proof = build_segment_proof(request.proof)
        requested = signed_from_message(request.requester)
        # The claimed hash is the requester's header's: one message, one block.
        if bytes(request.block_hash) != requested.block_hash:
            raise InvalidHeader("block_hash is not the hash of the requester's header")
        try:
            own, observed = self.node.cosign(proof, requested)
        except Exception as e:
            reason = getattr(e, "reason", None)
            self.node.metrics.cosign.labels(reason.value if reason is not None else "error").inc()
            raise
        self.node.metrics.cosign.labels("signed").inc()
        return qpb.CoSignResponse(signature=own.message(), observed=[s.message() for s in observed])

    @rejects
    async def CoSign(self, request: Any, context: grpc.aio.ServicerContext) -> qpb.CoSignResponse:
        request = decoded(request)
        return await asyncio.get_running_loop().run_in_executor(self.pool, self._cosign, request)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _evidence(self) -> qpb.ListEvidenceResponse:
        q = self.node.quorum
        if q is None:
            raise Refused(ServiceReason.NOT_QUORUM, "this deployment has a single attester: no signer set")
        return qpb.ListEvidenceResponse(evidence=[qpb.Evidence(a=a.message(), b=b.message()) for a, b in q.evidence()])

    @rejects
    async def ListEvidence(self, request: Any, context: grpc.aio.ServicerContext) -> qpb.ListEvidenceResponse:
        decoded(request)
        return await asyncio.get_running_loop().run_in_executor(self.verifier.read_pool, self._evidence)
