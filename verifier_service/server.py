"""The gRPC face of the verifier: thin servicers, one place that maps errors to status codes."""
from __future__ import annotations

import functools
import logging
import signal
import threading
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from safetensors import SafetensorError

from pol.v1 import verifier_pb2 as pb
from pol.v1 import verifier_pb2_grpc as pb_grpc
from pol_core.types import Address, Hash32, Height, SampleIndex
from pol_core.verify import Proof

from .journal import decode_state
from .node import Rejection, VerifierNode

log = logging.getLogger("pol.verifier")

STATUS = {
    "INVALID_ARGUMENT": grpc.StatusCode.INVALID_ARGUMENT,
    "FAILED_PRECONDITION": grpc.StatusCode.FAILED_PRECONDITION,
    "ALREADY_EXISTS": grpc.StatusCode.ALREADY_EXISTS,
    "RESOURCE_EXHAUSTED": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "UNAVAILABLE": grpc.StatusCode.UNAVAILABLE,
    "NOT_FOUND": grpc.StatusCode.NOT_FOUND,
}


def rejects(fn):
    """Turn a Rejection into its status code, and anything unexpected into INTERNAL, never a crash."""

    @functools.wraps(fn)
    def wrapper(self, request, context):
        try:
            return fn(self, request, context)
        except Rejection as r:
            context.set_trailing_metadata((("pol-reason", r.reason),))
            context.abort(STATUS[r.kind], f"{r.reason}: {r}")
        except grpc.RpcError:
            raise
        except Exception as e:  # noqa: BLE001 - the service must survive any input
            log.exception("internal error")
            context.set_trailing_metadata((("pol-reason", "INTERNAL"),))
            context.abort(grpc.StatusCode.INTERNAL, f"INTERNAL: {type(e).__name__}")

    return wrapper


def bad(reason: str, message: str) -> Rejection:
    return Rejection("INVALID_ARGUMENT", reason, message)


def read_proof(node: VerifierNode, requests) -> tuple[Proof, pb.ProofHeader]:
    """Translate the request stream into a domain Proof, enforcing the size cap while reading."""
    first = next(requests, None)
    if first is None or not first.HasField("header"):
        raise bad("MISSING_HEADER", "the first message must be a ProofHeader")
    h = first.header
    if h.task != node.task.name:
        raise bad("UNKNOWN_TASK", f"task {h.task!r} is not served here (this verifier runs {node.task.name!r})")
    if len(h.parent_hash) != 32 or len(h.weights_hash) != 32:
        raise bad("INVALID_HASH", "parent_hash and weights_hash must be 32 bytes")
    if len(h.miner) != 20:
        raise bad("INVALID_MINER", f"miner must be a 20-byte address, got {len(h.miner)} bytes")
    cap = node.max_weights_bytes()
    if h.weights_size > cap:
        raise Rejection("RESOURCE_EXHAUSTED", "TOO_LARGE", f"weights_size {h.weights_size} exceeds the cap of {cap} bytes")
    chunks, total = [], 0
    for req in requests:
        if not req.HasField("weights_chunk"):
            raise bad("UNEXPECTED_HEADER", "only weights chunks may follow the header")
        total += len(req.weights_chunk)
        if total > cap:
            raise Rejection("RESOURCE_EXHAUSTED", "TOO_LARGE", f"weights exceed the cap of {cap} bytes")
        chunks.append(req.weights_chunk)
    if total != h.weights_size:
        raise bad("SIZE_MISMATCH", f"received {total} weight bytes, header announced {h.weights_size}")
    try:
        state = decode_state(b"".join(chunks), node.state_order)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise bad("MALFORMED_WEIGHTS", f"weights are not a valid safetensors blob: {e}") from e
    proof = Proof(
        parent_hash=Hash32(bytes(h.parent_hash)),
        height=Height(h.height),
        indices=tuple(SampleIndex(i) for i in h.indices),
        weights_hash=Hash32(bytes(h.weights_hash)),
        state=state,
        miner=Address(bytes(h.miner)),
    )
    return proof, h


def client_id(context) -> str:
    md = dict(context.invocation_metadata() or ())
    return md.get("pol-client-id") or context.peer().rsplit(":", 1)[0]


class VerifierServicer(pb_grpc.VerifierServicer):
    def __init__(self, node: VerifierNode):
        self.node = node

    @rejects
    def SubmitProof(self, request_iterator, context):
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
        n = self.node
        t = n.tip
        return pb.Tip(
            block_hash=t.block_hash, height=t.header.height, difficulty=t.difficulty, model_hash=t.header.new_weights_hash,
            correct=t.header.correct_after, task=n.task.name, task_spec_hash=n.task.spec_hash, num_params=n.task.num_params,
            degraded=n.is_degraded(), pending_attestations=n.pending_count(), contract_address=n.deployment.address,
            chain_id=n.deployment.chain_id,
        )

    @rejects
    def GetTip(self, request, context):
        return self._tip_message()

    @rejects
    def WatchTip(self, request, context):
        seen = None
        while context.is_active():
            msg = self._tip_message()
            key = (bytes(msg.block_hash), msg.degraded, msg.pending_attestations)
            if key != seen:
                seen = key
                yield msg
            self.node.wait_tip_change(msg.block_hash, timeout=0.5)

    @rejects
    def GetModel(self, request, context):
        if len(request.model_hash) != 32:
            raise bad("INVALID_HASH", "model_hash must be 32 bytes")
        blob = self.node.models.get_bytes(request.model_hash)
        if blob is None:
            raise Rejection("NOT_FOUND", "UNKNOWN_MODEL", f"no model 0x{request.model_hash.hex()} in this store")
        return self._chunks(blob)

    def _chunks(self, blob: bytes):
        size = self.node.cfg.chunk_size
        for i in range(0, max(len(blob), 1), size):
            yield pb.ModelChunk(data=blob[i : i + size], total_size=len(blob) if i == 0 else 0)

    @rejects
    def GetBlock(self, request, context):
        n = self.node
        if request.WhichOneof("key") == "block_hash":
            entry = n.journal.get(request.block_hash)
        elif request.WhichOneof("key") == "height":
            entry = n.journal.get_by_height(request.height)
        else:
            raise bad("MISSING_KEY", "give block_hash or height")
        if entry is None:
            raise Rejection("NOT_FOUND", "UNKNOWN_BLOCK", "no such block in this verifier's journal")
        h = entry.header
        return pb.Block(
            block_hash=entry.block_hash, parent_hash=h.parent, height=h.height, task_spec_hash=h.task_spec_hash,
            weights_hash=h.weights_hash, new_weights_hash=h.new_weights_hash, indices=list(h.indices),
            correct_before=h.correct_before, correct_after=h.correct_after, difficulty=h.difficulty, miner=h.miner,
            tx_hash=entry.tx_hash or "", attested=entry.status == "attested", accepted_at=entry.accepted_at,
            gas_used=entry.gas_used or 0,
        )


def create_server(node: VerifierNode, addr: str, max_workers: int = 16) -> tuple[grpc.Server, int]:
    """Build (not start) the server with health checking and reflection; returns it and its port."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
                         options=[("grpc.max_receive_message_length", 8 << 20)])
    pb_grpc.add_VerifierServicer_to_server(VerifierServicer(node), server)
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


def serve(node: VerifierNode, addr: str, ready: threading.Event | None = None) -> None:
    """Run until SIGTERM or SIGINT; the journal keeps whatever was accepted."""
    server, port = create_server(node, addr)
    node.start()
    server.start()
    if node.cfg.metrics_port is not None:
        mport = node.metrics.serve(node.cfg.metrics_port)
        log.info("metrics", extra={"url": f"http://127.0.0.1:{mport}/metrics"})
    log.info("serving", extra={"addr": addr, "port": port, "task": node.task.name, "contract": node.deployment.address})
    print(f"verifier listening on port {port}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if ready:
        ready.set()
    stop.wait()
    server.stop(grace=2).wait()
    node.stop()
