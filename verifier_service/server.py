"""The gRPC face of the verifier: thin servicers; errors become status codes through pol.status."""
from __future__ import annotations

import functools
import inspect
import logging
import signal
import threading
from concurrent import futures
from typing import Any, Callable, Iterator, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from pol import status
from pol.reasons import AnyReason, Refused, ServiceReason
from pol.v1 import verifier_pb2 as pb
from pol.v1 import verifier_pb2_grpc as pb_grpc
from pol.wire import CHUNK_SIZE, MalformedWeights, decode_segment, iter_chunks
from pol_core.chainbound import SegmentProof
from pol_core.rulesets import RuleSet
from pol_core.types import (
    Address,
    ConsensusError,
    Hash32,
    Height,
    InvalidHash,
    RedrawIndex,
    SampleIndex,
    UnknownTask,
    WrongRules,
)
from pol_core.verify import Proof

from .node import AnyProof, VerifierNode

log = logging.getLogger("pol.verifier")

F = TypeVar("F", bound=Callable[..., Any])


def _refusal(e: Exception) -> tuple[AnyReason, str]:
    """The reason and message for any exception raised while serving a call."""
    if isinstance(e, (ConsensusError, Refused)):
        return e.reason, str(e)
    log.error("internal error", exc_info=e)  # a bug: the service answers INTERNAL and keeps serving
    return ServiceReason.INTERNAL, type(e).__name__


def rejects(fn: F) -> F:
    """Map whatever a handler raises to a status through pol.status, for plain handlers and for
    streaming ones (a generator's errors surface while it is iterated, after the call returned)."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def streaming(self: Any, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            try:
                yield from fn(self, request, context)
            except grpc.RpcError:
                raise
            except Exception as e:  # noqa: BLE001 - the service must survive any input
                status.abort(context, *_refusal(e))

        return streaming  # type: ignore[return-value]

    @functools.wraps(fn)
    def unary(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return fn(self, request, context)
        except grpc.RpcError:
            raise
        except Exception as e:  # noqa: BLE001 - the service must survive any input
            status.abort(context, *_refusal(e))

    return unary  # type: ignore[return-value]


def read_proof(node: VerifierNode, requests: Iterator[pb.SubmitProofRequest]) -> tuple[AnyProof, pb.ProofHeader]:
    """Translate the request stream into a domain proof of the deployment's rule set: (P, W) under the
    paper rules, (segment, P, j) under chain-bound rules. The size cap is enforced while reading."""
    first = next(requests, None)
    if first is None or not first.HasField("header"):
        raise Refused(ServiceReason.MISSING_HEADER, "the first message must be a ProofHeader")
    h = first.header
    if h.task != node.task_name:
        raise UnknownTask(f"task {h.task!r} is not served here (this verifier runs {node.task_name!r})")
    if len(h.miner) != 20:
        raise Refused(ServiceReason.INVALID_MINER, f"miner must be a 20-byte address, got {len(h.miner)} bytes")
    if node.rules is RuleSet.CHAIN_BOUND:
        return read_segment_proof(h, requests), h
    # A segment or a redraw index means a miner running the chain-bound rules against a paper chain.
    if h.segment or h.redraw:
        raise WrongRules("this deployment uses the paper rules: send W, not a segment or a redraw index")
    if len(h.parent_hash) != 32 or len(h.weights_hash) != 32:
        raise InvalidHash("parent_hash and weights_hash must be 32 bytes")
    cap = node.max_weights_bytes()
    if h.weights_size > cap:
        raise Refused(ServiceReason.TOO_LARGE, f"weights_size {h.weights_size} exceeds the cap of {cap} bytes")
    chunks, total = [], 0
    for req in requests:
        if not req.HasField("weights_chunk"):
            raise Refused(ServiceReason.UNEXPECTED_HEADER, "only weights chunks may follow the header")
        total += len(req.weights_chunk)
        if total > cap:
            raise Refused(ServiceReason.TOO_LARGE, f"weights exceed the cap of {cap} bytes")
        chunks.append(req.weights_chunk)
    if total != h.weights_size:
        raise Refused(ServiceReason.SIZE_MISMATCH, f"received {total} weight bytes, header announced {h.weights_size}")
    try:
        state = node.decode_weights(b"".join(chunks))
    except MalformedWeights as e:
        raise Refused(ServiceReason.MALFORMED_WEIGHTS, str(e)) from e
    proof = Proof(
        parent_hash=Hash32(bytes(h.parent_hash)),
        height=Height(h.height),
        indices=tuple(SampleIndex(i) for i in h.indices),
        weights_hash=Hash32(bytes(h.weights_hash)),
        state=state,
        miner=Address(bytes(h.miner)),
    )
    return proof, h


def read_segment_proof(h: pb.ProofHeader, requests: Iterator[pb.SubmitProofRequest]) -> SegmentProof:
    """The header is the whole chain-bound proof: W is replayed by the verifier, never received."""
    # Weights mean a miner running the paper rules: under chain-bound rules W is not a claim.
    if h.weights_hash or h.weights_size or next(requests, None) is not None:
        raise WrongRules("this deployment uses the chain-bound rules: W is replayed from the segment; send no weights")
    if len(h.parent_hash) != 32:
        raise InvalidHash("parent_hash must be 32 bytes")
    return SegmentProof(
        parent=Hash32(bytes(h.parent_hash)),
        height=Height(h.height),
        segment=decode_segment(bytes(h.segment)),
        indices=tuple(SampleIndex(i) for i in h.indices),
        redraw=RedrawIndex(h.redraw),
        miner=Address(bytes(h.miner)),
    )


def client_id(context: grpc.ServicerContext) -> str:
    md = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
    return md.get("pol-client-id") or context.peer().rsplit(":", 1)[0]


class VerifierServicer(pb_grpc.VerifierServicer):
    def __init__(self, node: VerifierNode, chunk_size: int = CHUNK_SIZE):
        self.node = node
        self.chunk_size = chunk_size

    @rejects
    def SubmitProof(self, request_iterator: Iterator[pb.SubmitProofRequest], context: grpc.ServicerContext
                    ) -> pb.SubmitProofResponse:
        proof, h = read_proof(self.node, request_iterator)
        acc = self.node.submit(proof, client_id(context))
        v = acc.verdict.header
        drift = pb.Drift(
            new_weights_hash_matches=bytes(h.claimed_new_weights_hash) == v.new_weights_hash,
            correct_before_delta=(h.claimed_correct_before - v.correct_before) if h.HasField("claimed_correct_before") else 0,
            correct_after_delta=(h.claimed_correct_after - v.correct_after) if h.HasField("claimed_correct_after") else 0,
        )
        return pb.SubmitProofResponse(
            block_hash=acc.verdict.block_hash, height=v.height, tx_hash=acc.tx_hash or "", attested=acc.tx_hash is not None,
            new_weights_hash=v.new_weights_hash, correct_before=v.correct_before, correct_after=v.correct_after,
            gas_used=acc.gas_used or 0, drift=drift, verify_seconds=acc.verify_seconds,
        )

    def _tip_message(self) -> pb.Tip:
        t = self.node.tip_view()
        return pb.Tip(
            block_hash=t.block_hash, height=t.height, difficulty=t.difficulty, model_hash=t.model_hash,
            correct=t.correct, task=t.task, task_spec_hash=t.task_spec_hash, num_params=t.num_params,
            degraded=t.degraded, pending_attestations=t.pending_attestations, contract_address=t.contract_address,
            chain_id=t.chain_id, link=t.link, rules=t.rules.value, time=t.time, redraw_after=t.redraw_after,
        )

    @rejects
    def GetTip(self, request: pb.GetTipRequest, context: grpc.ServicerContext) -> pb.Tip:
        return self._tip_message()

    @rejects
    def WatchTip(self, request: pb.GetTipRequest, context: grpc.ServicerContext) -> Iterator[pb.Tip]:
        seen = None
        while context.is_active():
            msg = self._tip_message()
            key = (bytes(msg.block_hash), msg.degraded, msg.pending_attestations)
            if key != seen:
                seen = key
                yield msg
            self.node.wait_tip_change(msg.block_hash, timeout=0.5)

    @rejects
    def GetModel(self, request: pb.GetModelRequest, context: grpc.ServicerContext) -> Iterator[pb.ModelChunk]:
        if len(request.model_hash) != 32:
            raise InvalidHash("model_hash must be 32 bytes")
        blob = self.node.get_model_bytes(request.model_hash)
        if blob is None:
            raise Refused(ServiceReason.UNKNOWN_MODEL, f"no model 0x{request.model_hash.hex()} in this store")
        for i, chunk in enumerate(iter_chunks(blob, self.chunk_size)):
            yield pb.ModelChunk(data=chunk, total_size=len(blob) if i == 0 else 0)

    @rejects
    def GetBlock(self, request: pb.GetBlockRequest, context: grpc.ServicerContext) -> pb.Block:
        key = request.WhichOneof("key")
        if key is None:
            raise Refused(ServiceReason.MISSING_KEY, "give block_hash or height")
        entry = (self.node.get_block(block_hash=request.block_hash) if key == "block_hash"
                 else self.node.get_block(height=request.height))
        if entry is None:
            raise Refused(ServiceReason.UNKNOWN_BLOCK, "no such block in this verifier's journal")
        h = entry.header
        return pb.Block(
            block_hash=entry.block_hash, parent_hash=h.parent, height=h.height, task_spec_hash=h.task_spec_hash,
            weights_hash=h.weights_hash, new_weights_hash=h.new_weights_hash, indices=list(h.indices),
            correct_before=h.correct_before, correct_after=h.correct_after, difficulty=h.difficulty, miner=h.miner,
            tx_hash=entry.tx_hash or "", attested=entry.status == "attested", accepted_at=entry.accepted_at,
            gas_used=entry.gas_used or 0, segment=self.node.get_segment(entry.block_hash) or b"",
            segment_root=h.segment_root, redraw=h.redraw, link=self.node.get_link(entry.block_hash) or b"",
        )


def create_server(node: VerifierNode, addr: str, max_workers: int = 16,
                  chunk_size: int = CHUNK_SIZE) -> tuple[grpc.Server, int]:
    """Build (not start) the server with health checking and reflection; returns it and its port."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
                         options=[("grpc.max_receive_message_length", 8 << 20)])
    pb_grpc.add_VerifierServicer_to_server(VerifierServicer(node, chunk_size), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", "pol.v1.Verifier"):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        (pb.DESCRIPTOR.services_by_name["Verifier"].full_name, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    port = server.add_insecure_port(addr)
    if port == 0:
        raise OSError(f"cannot listen on {addr}")
    return server, port


def serve(node: VerifierNode, addr: str, metrics_port: int | None = None, chunk_size: int = CHUNK_SIZE,
          ready: threading.Event | None = None) -> None:
    """Run until SIGTERM or SIGINT; the journal keeps whatever was accepted."""
    server, port = create_server(node, addr, chunk_size=chunk_size)
    node.start()
    server.start()
    if metrics_port is not None:
        mport = node.serve_metrics(metrics_port)
        log.info("metrics", extra={"url": f"http://127.0.0.1:{mport}/metrics"})
    tip = node.tip_view()
    log.info("serving", extra={"addr": addr, "port": port, "task": tip.task, "contract": tip.contract_address})
    print(f"verifier listening on port {port}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if ready:
        ready.set()
    stop.wait()
    server.stop(grace=2).wait()
    node.stop()
