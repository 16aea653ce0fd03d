"""The typed gRPC client of pol.v1.Quorum (served on a verifier's port), for peers and `pol quorum report`.

Errors are translated as in pol.client: `Rejected` (a verifier refused, with a reason) and
`VerifierUnavailable` (nobody answered). Calls to a peer fail fast: no wait_for_ready, because a
verifier asking for co-signatures must not wait on a peer that is down.
"""
from __future__ import annotations

from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pol.v1 import quorum_pb2 as qpb
from pol.v1 import quorum_pb2_grpc as qpb_grpc
from pol.v1 import verifier_pb2 as pb

from .client import VerifierClient


# A peer that restarts must be reachable again within a health-check period, not after gRPC's default
# reconnect backoff (up to two minutes).
PEER_OPTIONS = (("grpc.initial_reconnect_backoff_ms", 200), ("grpc.min_reconnect_backoff_ms", 200),
                ("grpc.max_reconnect_backoff_ms", 1000))


class QuorumClient(VerifierClient):
    """A verifier's Verifier and Quorum services on one channel."""

    def __init__(self, target: str, client_id: str | None = None, connect_timeout: float = 30.0):
        super().__init__(target, client_id, connect_timeout, PEER_OPTIONS)
        self.quorum = qpb_grpc.QuorumStub(self.channel)
        self.health: Any = health_pb2_grpc.HealthStub(self.channel)  # the stub's methods are set at run time

    def cosign(self, proof: pb.ProofHeader, block_hash: bytes, requester: qpb.SignedHeader,
               timeout: float, wait_for_ready: bool = False) -> qpb.CoSignResponse:
        """`wait_for_ready` for a peer known to answer (its channel may be reconnecting); a peer that is
        down fails at once."""
        req = qpb.CoSignRequest(proof=proof, block_hash=block_hash, requester=requester)
        try:
            return self.quorum.CoSign(req, timeout=timeout, metadata=self.metadata, wait_for_ready=wait_for_ready)
        except grpc.RpcError as e:
            raise self._translate(e, timeout) from e

    def list_evidence(self, timeout: float = 30.0) -> list[qpb.Evidence]:
        try:
            return list(self.quorum.ListEvidence(qpb.ListEvidenceRequest(), timeout=timeout,
                                                 wait_for_ready=True).evidence)
        except grpc.RpcError as e:
            raise self._translate(e, timeout) from e

    def answers(self, timeout: float = 0.8) -> bool:
        """Whether the process answers at all (its health may be NOT_SERVING: a degraded peer still signs)."""
        try:
            self.health.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
            return True
        except grpc.RpcError:
            return False
