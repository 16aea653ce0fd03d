"""The one mapping from refusal reasons to gRPC status codes, and how a reason travels: as the
status code, in the message, under the trailing-metadata key `pol-reason`, and as a google.rpc
ErrorInfo in the standard status details (grpcio-status)."""
from __future__ import annotations

from typing import Any, Mapping, NoReturn

import grpc

from pol_core.types import Reason

from .reasons import AnyReason, ServiceReason, parse_reason

REASON_KEY = "pol-reason"
DETAILS_KEY = "grpc-status-details-bin"  # google.rpc.Status, as grpcio-status reads it
DOMAIN = "pol.v1"

_S = grpc.StatusCode
STATUS: Mapping[AnyReason, grpc.StatusCode] = {
    # The proof breaks a consensus rule: the request itself is wrong.
    Reason.INVALID_DIFFICULTY: _S.INVALID_ARGUMENT,
    Reason.INVALID_HASH: _S.INVALID_ARGUMENT,
    Reason.INVALID_INDICES: _S.INVALID_ARGUMENT,
    Reason.INVALID_WEIGHTS: _S.INVALID_ARGUMENT,
    Reason.WEIGHTS_HASH_MISMATCH: _S.INVALID_ARGUMENT,
    Reason.REQUIREMENTS_NOT_MET: _S.INVALID_ARGUMENT,
    Reason.ACCURACY_NOT_IMPROVED: _S.INVALID_ARGUMENT,
    Reason.SABOTAGE_GUARD: _S.INVALID_ARGUMENT,
    Reason.INVALID_HEADER: _S.INVALID_ARGUMENT,
    Reason.WRONG_HEIGHT: _S.INVALID_ARGUMENT,
    Reason.INVALID_BATCH_SIZE: _S.INVALID_ARGUMENT,
    Reason.UNKNOWN_TASK: _S.INVALID_ARGUMENT,
    Reason.INVALID_SEGMENT: _S.INVALID_ARGUMENT,
    Reason.TIP_REGRESSED: _S.INVALID_ARGUMENT,
    Reason.REDRAW_NOT_ALLOWED: _S.INVALID_ARGUMENT,
    Reason.INVALID_SIGNATURE: _S.INVALID_ARGUMENT,
    Reason.INVALID_SIGNER_SET: _S.INVALID_ARGUMENT,
    Reason.QUORUM_NOT_MET: _S.INVALID_ARGUMENT,
    Reason.NON_FINITE: _S.INVALID_ARGUMENT,  # the proof's own inputs make the step or the evaluation overflow
    # A proof for the other rule set than the deployment's: refused until the service runs those rules.
    Reason.WRONG_RULES: _S.FAILED_PRECONDITION,
    # A redraw index whose time has not come yet: the same proof is valid once chain time passes it.
    Reason.REDRAW_TOO_EARLY: _S.FAILED_PRECONDITION,
    # Work on a block that is no longer the tip was valid once; the chain moved on.
    Reason.STALE: _S.FAILED_PRECONDITION,
    # The verifier's own task or data is broken, not the request.
    Reason.INVALID_TASK_CONFIG: _S.INTERNAL,
    Reason.DATASET_ERROR: _S.INTERNAL,
    Reason.PARENT_STATE_MISMATCH: _S.INTERNAL,  # the verifier's own store handed out the wrong W'
    ServiceReason.MISSING_HEADER: _S.INVALID_ARGUMENT,
    ServiceReason.UNEXPECTED_HEADER: _S.INVALID_ARGUMENT,
    ServiceReason.INVALID_MINER: _S.INVALID_ARGUMENT,
    ServiceReason.SIZE_MISMATCH: _S.INVALID_ARGUMENT,
    ServiceReason.MALFORMED_WEIGHTS: _S.INVALID_ARGUMENT,
    ServiceReason.MISSING_KEY: _S.INVALID_ARGUMENT,
    ServiceReason.TOO_LARGE: _S.RESOURCE_EXHAUSTED,
    ServiceReason.RATE_LIMITED: _S.RESOURCE_EXHAUSTED,
    ServiceReason.ATTESTATION_PENDING: _S.UNAVAILABLE,
    ServiceReason.EVALUATION_FAILED: _S.UNAVAILABLE,  # the proof may be valid; the verifier failed
    ServiceReason.DUPLICATE: _S.ALREADY_EXISTS,
    ServiceReason.UNKNOWN_MODEL: _S.NOT_FOUND,
    ServiceReason.UNKNOWN_BLOCK: _S.NOT_FOUND,
    ServiceReason.BUSY: _S.RESOURCE_EXHAUSTED,
    ServiceReason.UPLOAD_TIMEOUT: _S.DEADLINE_EXCEEDED,
    ServiceReason.DEGRADED: _S.UNAVAILABLE,
    ServiceReason.DISK_FULL: _S.RESOURCE_EXHAUSTED,
    ServiceReason.UNDECODABLE: _S.INVALID_ARGUMENT,
    ServiceReason.INVALID_HEIGHT: _S.INVALID_ARGUMENT,
    ServiceReason.INTERNAL: _S.INTERNAL,
    # Signing a second header at one (height, redraw) is equivocation: never, whatever the request.
    ServiceReason.ALREADY_SIGNED: _S.FAILED_PRECONDITION,
    ServiceReason.QUORUM_UNAVAILABLE: _S.UNAVAILABLE,  # the proof may be valid; too few peers signed
    ServiceReason.NOT_QUORUM: _S.FAILED_PRECONDITION,
}


def status_for(reason: AnyReason) -> grpc.StatusCode:
    return STATUS[reason]


def error_metadata(reason: AnyReason, message: str) -> tuple[tuple[str, str | bytes], ...]:
    """The trailers of a refusal: the reason under `pol-reason`, and the standard google.rpc.Status
    with an ErrorInfo (reason, domain "pol.v1") for any gRPC client that reads rich error details."""
    from google.protobuf import any_pb2
    from google.rpc import error_details_pb2, status_pb2

    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=reason.value, domain=DOMAIN))
    detail = status_pb2.Status(code=status_for(reason).value[0], message=message, details=[info])
    return ((REASON_KEY, reason.value), (DETAILS_KEY, detail.SerializeToString()))


def abort(context: grpc.ServicerContext, reason: AnyReason, message: str) -> NoReturn:
    """End the call with the reason's status; the message starts with the reason, for humans."""
    text = f"{reason.value}: {message}"
    context.set_trailing_metadata(error_metadata(reason, text))
    context.abort(status_for(reason), text)


def reason_of(err: grpc.RpcError) -> AnyReason | None:
    """The reason a server attached to a failed call, or None when the call never reached one."""
    call = err if isinstance(err, grpc.Call) else None
    metadata: tuple[tuple[str, str | bytes], ...] = (call.trailing_metadata() if call else None) or ()
    for key, value in metadata:
        if key == REASON_KEY:
            return parse_reason(value if isinstance(value, str) else value.decode())
    return None


def error_info_of(err: grpc.RpcError) -> tuple[str, str] | None:
    """(reason, domain) from the google.rpc.Status details of a failed call, when it has them."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    status = rpc_status.from_call(err) if isinstance(err, grpc.Call) else None
    details: list[Any] = list(status.details) if status is not None else []
    for detail in details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info.reason, info.domain
    return None
