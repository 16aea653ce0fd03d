"""Reasons the verifier service refuses a request that are about the service, not a consensus rule,
and the exception that carries them. Consensus reasons are pol_core.types.Reason."""
from __future__ import annotations

from enum import StrEnum

from pol_core.types import Reason


class ServiceReason(StrEnum):
    MISSING_HEADER = "MISSING_HEADER"  # a proof stream must start with its header
    UNEXPECTED_HEADER = "UNEXPECTED_HEADER"  # only weight chunks may follow the header
    INVALID_MINER = "INVALID_MINER"
    TOO_LARGE = "TOO_LARGE"  # more weight bytes than any state of the task can need
    SIZE_MISMATCH = "SIZE_MISMATCH"  # the bytes received differ from the size announced
    MALFORMED_WEIGHTS = "MALFORMED_WEIGHTS"
    RATE_LIMITED = "RATE_LIMITED"  # one client has too many proofs in flight
    ATTESTATION_PENDING = "ATTESTATION_PENDING"  # the last block awaits its receipt; retry shortly
    EVALUATION_FAILED = "EVALUATION_FAILED"  # the verifier's evaluation workers failed; retry shortly
    DUPLICATE = "DUPLICATE"
    UNKNOWN_MODEL = "UNKNOWN_MODEL"
    UNKNOWN_BLOCK = "UNKNOWN_BLOCK"
    MISSING_KEY = "MISSING_KEY"  # GetBlock needs a hash or a height
    BUSY = "BUSY"  # the service holds as many proof uploads as it admits; retry shortly
    UPLOAD_TIMEOUT = "UPLOAD_TIMEOUT"  # a proof upload went idle or ran past its total deadline
    DEGRADED = "DEGRADED"  # accepted blocks could not reach the chain now (see health); retry later
    DISK_FULL = "DISK_FULL"  # the verifier's disk cannot hold the proof; nothing was kept
    UNDECODABLE = "UNDECODABLE"  # the request's bytes are not the message the method takes
    INVALID_HEIGHT = "INVALID_HEIGHT"  # a height no block can have
    INTERNAL = "INTERNAL"  # a bug in the service; the request may be fine
    # Quorum mode (pol.v1.Quorum):
    ALREADY_SIGNED = "ALREADY_SIGNED"  # this verifier signed another header at that (height, redraw)
    QUORUM_UNAVAILABLE = "QUORUM_UNAVAILABLE"  # fewer than t members signed; retry when peers are back
    NOT_QUORUM = "NOT_QUORUM"  # a quorum call to a verifier of a single-attester deployment


AnyReason = Reason | ServiceReason


class Refused(Exception):
    """A request the service refuses for a service reason (consensus rules raise ConsensusError)."""

    def __init__(self, reason: ServiceReason, message: str):
        super().__init__(message)
        self.reason = reason

    def __reduce__(self) -> tuple[type[Refused], tuple[ServiceReason, str]]:
        return Refused, (self.reason, str(self))  # crosses from a verdict worker with its reason


def parse_reason(text: str) -> AnyReason | None:
    """The reason a wire string names, or None for a string neither enum knows."""
    for enum in (Reason, ServiceReason):
        try:
            return enum(text)
        except ValueError:
            continue
    return None
