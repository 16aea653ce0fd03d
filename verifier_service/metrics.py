"""Prometheus metrics of one verifier, on its own registry."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.received = Counter("pol_proofs_received_total", "Proofs received", registry=self.registry)
        self.accepted = Counter("pol_proofs_accepted_total", "Proofs accepted", registry=self.registry)
        self.rejected = Counter("pol_proofs_rejected_total", "Proofs rejected", ["reason"], registry=self.registry)
        self.phase = Histogram("pol_verification_seconds", "Verification time by phase", ["phase"],
                               registry=self.registry, buckets=(0.001, 0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30))
        self.attest_latency = Histogram("pol_attestation_seconds", "Acceptance to receipt", registry=self.registry,
                                        buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300))
        self.journal_depth = Gauge("pol_journal_pending", "Accepted blocks awaiting attestation", registry=self.registry)
        self.tip_height = Gauge("pol_tip_height", "Attested tip height", registry=self.registry)
        self.peers_up = Gauge("pol_quorum_peers_up", "Quorum peers that answer health checks", registry=self.registry)
        self.equivocations = Counter("pol_quorum_equivocations_total",
                                     "Signatures seen over a second header at one (height, redraw)",
                                     registry=self.registry)
        self.cosign = Counter("pol_quorum_cosign_total", "CoSign requests answered, by result", ["result"],
                              registry=self.registry)
        self.chain_up = Gauge("pol_chain_reachable", "1 when the chain node answers", registry=self.registry)

    def serve(self, port: int) -> int:
        server, _ = start_http_server(port, addr="127.0.0.1", registry=self.registry)
        return server.server_port
