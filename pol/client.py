"""The typed gRPC client of the verifier service, used by provers, the CLI, the audit and the demo.

Two failures are told apart: `Rejected` (a verifier answered and refused, with a reason) and
`VerifierUnavailable` (no verifier answered before the deadline). Waiting for a verifier that is
not up yet is gRPC's job: every call is `wait_for_ready` with a deadline, and the channel's
service config retries the read calls when a server answers UNAVAILABLE (for example while it
shuts down). A proof submission is retried here, by RetryPolicy: only for refusals that say "not now"
(BUSY, RATE_LIMITED, DEGRADED, EVALUATION_FAILED, or UNAVAILABLE from a server going away), a bounded
number of times within a bounded time, with exponential backoff and jitter so that refused provers do
not come back in step.
"""
from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Mapping, Sequence

import grpc

from pol.v1 import verifier_pb2 as pb
from pol.v1 import verifier_pb2_grpc as pb_grpc

from .reasons import AnyReason, ServiceReason
from .status import reason_of
from .wire import CHUNK_SIZE, decode_state, encode_segment, encode_state, iter_chunks

if TYPE_CHECKING:
    import torch

MAX_MESSAGE = 8 << 20
READ_METHODS = ("GetTip", "GetBlock", "GetModel")
SERVICE_CONFIG = {
    "methodConfig": [{
        "name": [{"service": "pol.v1.Verifier", "method": m} for m in READ_METHODS],
        "retryPolicy": {
            "maxAttempts": 5,
            "initialBackoff": "0.1s",
            "maxBackoff": "2s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": ["UNAVAILABLE"],
        },
    }],
}


class VerifierUnavailable(Exception):
    """No verifier answered at `target` within the deadline."""

    def __init__(self, target: str, timeout: float, detail: str = "",
                 code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE):
        super().__init__(f"no verifier answered at {target} within {timeout:g}s" + (f" ({detail})" if detail else ""))
        self.target = target
        self.timeout = timeout
        self.code = code


class Rejected(Exception):
    """The verifier refused the call: `code` is the gRPC status, `reason` the machine-readable
    reason (a Reason or ServiceReason, or the raw string of a reason this client does not know)."""

    def __init__(self, code: grpc.StatusCode, reason: AnyReason | str, message: str):
        super().__init__(f"{code.name} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message


# Refusals that say nothing about the proof, only that the verifier cannot take it now.
RETRYABLE = frozenset({ServiceReason.BUSY, ServiceReason.RATE_LIMITED, ServiceReason.DEGRADED,
                       ServiceReason.EVALUATION_FAILED})


@dataclass(frozen=True)
class RetryPolicy:
    """At most `attempts` submissions within `budget_s`; before retry i (from 0) a pause drawn from
    [d/2, d], d = min(max_s, first_s * 2^i): exponential, and jittered so refused provers spread out."""

    attempts: int = 8
    first_s: float = 0.25
    max_s: float = 4.0
    budget_s: float = 30.0

    def delay(self, retry: int, rng: random.Random) -> float:
        d = min(self.max_s, self.first_s * 2.0 ** retry)
        return d / 2 + rng.uniform(0.0, d / 2)


def is_retryable(e: Exception) -> bool:
    """A refusal worth sending the same proof again for: the verifier is busy or degraded, or going away
    (UNAVAILABLE with no reason). A deadline that passed is not: the proof may have been accepted."""
    if isinstance(e, VerifierUnavailable):
        return e.code == grpc.StatusCode.UNAVAILABLE
    return isinstance(e, Rejected) and e.reason in RETRYABLE


class VerifierClient:
    def __init__(self, target: str, client_id: str | None = None, connect_timeout: float = 30.0,
                 options: Sequence[tuple[str, int | str]] = (), retry: RetryPolicy | None = RetryPolicy()):
        """`options`: extra channel arguments; `retry`: how submissions are retried when the verifier says
        "not now" (None: never)."""
        self.target = target
        self.connect_timeout = connect_timeout
        self.retry = retry
        self._rng = random.Random()
        self.channel = grpc.insecure_channel(target, options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.enable_retries", 1),
            ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
            *options,
        ])
        self.stub = pb_grpc.VerifierStub(self.channel)
        self.metadata: tuple[tuple[str, str], ...] = (("pol-client-id", client_id),) if client_id else ()

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "VerifierClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _translate(self, err: grpc.RpcError, timeout: float) -> Exception:
        code = err.code() if isinstance(err, grpc.Call) else grpc.StatusCode.UNKNOWN
        details = (err.details() if isinstance(err, grpc.Call) else None) or ""
        reason = reason_of(err)
        if reason is None and code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return VerifierUnavailable(self.target, timeout, code.name.lower().replace("_", " "), code)
        return Rejected(code, reason if reason is not None else code.name, details)

    # ── reads ──

    def get_tip(self, timeout: float | None = None) -> pb.Tip:
        """The tip, waiting up to `timeout` (default: the connect timeout) for a verifier to answer."""
        t = self.connect_timeout if timeout is None else timeout
        try:
            return self.stub.GetTip(pb.GetTipRequest(), timeout=t, wait_for_ready=True)
        except grpc.RpcError as e:
            raise self._translate(e, t) from e

    def watch_tip(self) -> Iterator[pb.Tip]:
        """The tip at once, then every change. The returned iterator is also a grpc.Call: call
        .cancel() on it to stop. Stream errors surface as grpc.RpcError while iterating."""
        return self.stub.WatchTip(pb.GetTipRequest(), wait_for_ready=True)

    def get_model_bytes(self, model_hash: bytes, timeout: float = 120) -> bytes:
        try:
            chunks = self.stub.GetModel(pb.GetModelRequest(model_hash=model_hash), timeout=timeout, wait_for_ready=True)
            return b"".join(c.data for c in chunks)
        except grpc.RpcError as e:
            raise self._translate(e, timeout) from e

    def get_model(self, model_hash: bytes, order: Iterable[str], timeout: float = 120) -> dict[str, torch.Tensor]:
        return decode_state(self.get_model_bytes(model_hash, timeout), order)

    def get_block(self, *, block_hash: bytes | None = None, height: int | None = None,
                  timeout: float = 30) -> pb.Block:
        req = pb.GetBlockRequest(block_hash=block_hash) if block_hash is not None else pb.GetBlockRequest(height=height)
        try:
            return self.stub.GetBlock(req, timeout=timeout, wait_for_ready=True)
        except grpc.RpcError as e:
            raise self._translate(e, timeout) from e

    # ── submission ──

    def submit_raw(self, header: pb.ProofHeader, blob: bytes, timeout: float = 300,
                   give_up: Callable[[], bool] | None = None,
                   on_retry: Callable[[Exception, float], None] | None = None) -> pb.SubmitProofResponse:
        """Submit, retrying "not now" refusals by the client's RetryPolicy. `give_up()` is asked before
        each retry (a miner whose tip moved drops the proof); `on_retry(refusal, pause_s)` hears of each.
        The last refusal is raised when the attempts or the time budget run out."""
        def messages() -> Iterator[pb.SubmitProofRequest]:
            yield pb.SubmitProofRequest(header=header)
            for chunk in iter_chunks(blob, CHUNK_SIZE) if blob else ():
                yield pb.SubmitProofRequest(weights_chunk=chunk)

        policy = self.retry
        deadline = time.monotonic() + (policy.budget_s if policy else 0.0)
        retry = 0
        while True:
            try:
                return self.stub.SubmitProof(messages(), timeout=timeout, metadata=self.metadata, wait_for_ready=True)
            except grpc.RpcError as e:
                err = self._translate(e, timeout)
                if policy is None or not is_retryable(err) or retry + 1 >= policy.attempts:
                    raise err from e
                pause = policy.delay(retry, self._rng)
                # Past the budget, or told to stop: the refusal stands.
                if time.monotonic() + pause > deadline or (give_up is not None and give_up()):
                    raise err from e
                if on_retry is not None:
                    on_retry(err, pause)
                time.sleep(pause)
                retry += 1
                if give_up is not None and give_up():
                    raise err from e

    def submit(self, task: str, parent_hash: bytes, height: int, indices: Sequence[int], weights_hash: bytes,
               state: Mapping[str, torch.Tensor], miner: bytes, claimed_new_weights_hash: bytes = b"",
               claimed_correct: tuple[int, int] | None = None, timeout: float = 300,
               give_up: Callable[[], bool] | None = None,
               on_retry: Callable[[Exception, float], None] | None = None) -> pb.SubmitProofResponse:
        blob = encode_state(state)
        header = pb.ProofHeader(task=task, parent_hash=parent_hash, height=height, indices=list(indices),
                                weights_hash=weights_hash, miner=miner, weights_size=len(blob),
                                claimed_new_weights_hash=claimed_new_weights_hash)
        if claimed_correct is not None:
            header.claimed_correct_before, header.claimed_correct_after = claimed_correct
        return self.submit_raw(header, blob, timeout, give_up, on_retry)

    def submit_segment(self, task: str, parent_link: bytes, height: int, segment: Sequence[Sequence[int]],
                       indices: Sequence[int], miner: bytes, redraw: int = 0,
                       claimed_correct: tuple[int, int] | None = None, timeout: float = 300,
                       give_up: Callable[[], bool] | None = None,
                       on_retry: Callable[[Exception, float], None] | None = None) -> pb.SubmitProofResponse:
        """A chain-bound proof: the segment since the parent's W', P and the redraw index j. No weights:
        the verifier replays W from its own copy of the parent's W'."""
        header = pb.ProofHeader(task=task, parent_hash=parent_link, height=height, indices=list(indices), miner=miner,
                                segment=encode_segment(segment), redraw=redraw)
        if claimed_correct is not None:
            header.claimed_correct_before, header.claimed_correct_after = claimed_correct
        return self.submit_raw(header, b"", timeout, give_up, on_retry)
