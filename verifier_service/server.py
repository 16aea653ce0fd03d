"""The gRPC face of the verifier: thin grpc.aio servicers; errors become status codes through pol.status.

Every call is a coroutine on one event loop, so a watcher or a slow upload costs a few kilobytes, not
a thread: watchers, uploads and reads cannot starve one another, and health is always answered. Only
work that blocks runs on threads: verification on a pool sized to the admission cap (so it never
queues behind a full pool), and file or database reads on a small pool of their own. One task follows
the node's tip and feeds every watcher, whatever their number.
"""
from __future__ import annotations

import asyncio
import errno
import functools
import gc
import inspect
import logging
import math
import signal
import sqlite3
import sys
import threading
from concurrent import futures
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Coroutine, Mapping, TypeVar

import grpc
from google.protobuf.message import DecodeError
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

from .admission import Admission, CostQueue, RefusalPacer, Ticket, WaitingRoom, is_charged
from .config import VerifierConfig
from .node import AnyProof, VerifierNode

log = logging.getLogger("pol.verifier")

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
MAX_HEIGHT = (1 << 63) - 1  # what the journal (SQLite INTEGER) can hold; no chain gets near it
SERVICE = "pol.v1.Verifier"


def is_disk_full(e: BaseException) -> bool:
    if isinstance(e, OSError):
        return e.errno in (errno.ENOSPC, errno.EDQUOT)
    return isinstance(e, sqlite3.OperationalError) and "full" in str(e)


def _refusal(e: Exception) -> tuple[AnyReason, str]:
    """The reason and message for any exception raised while serving a call."""
    if isinstance(e, (ConsensusError, Refused)):
        return e.reason, str(e)
    if is_disk_full(e):  # the operator's problem, not the client's; nothing partial was kept
        log.error("disk full", exc_info=e)
        return ServiceReason.DISK_FULL, "the verifier's disk is full; retry later"
    log.error("internal error", exc_info=e)  # a bug: the service answers INTERNAL and keeps serving
    return ServiceReason.INTERNAL, type(e).__name__


async def abort(context: grpc.aio.ServicerContext, reason: AnyReason, message: str) -> None:
    text = f"{reason.value}: {message}"
    await context.abort(status.status_for(reason), text, trailing_metadata=status.error_metadata(reason, text))


def rejects(fn: F) -> F:
    """Map whatever a handler raises to a status through pol.status, for coroutines and for
    async generators (whose errors surface while the stream is iterated)."""
    if inspect.isasyncgenfunction(fn):
        @functools.wraps(fn)
        async def streaming(self: Any, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            try:
                async for item in fn(self, request, context):
                    yield item
                return
            except (grpc.RpcError, asyncio.CancelledError):
                raise
            except Exception as e:  # noqa: BLE001 - the service must survive any input
                refusal = _refusal(e)
            await abort(context, *refusal)  # outside the handler: the status error does not chain e

        return streaming  # type: ignore[return-value]

    @functools.wraps(fn)
    async def unary(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await fn(self, request, context)
        except (grpc.RpcError, asyncio.CancelledError):
            raise
        except Exception as e:  # noqa: BLE001 - the service must survive any input
            refusal = _refusal(e)
        await abort(context, *refusal)  # outside the handler: the status error does not chain e

    return unary  # type: ignore[return-value]


@dataclass(frozen=True)
class Undecodable:
    """Stands in for a request whose bytes did not parse, so the handler can answer INVALID_ARGUMENT
    (gRPC itself would answer INTERNAL)."""

    error: str


def _tolerant(parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except DecodeError as e:
            return Undecodable(str(e) or "not a protobuf message")

    return deserialize


def decoded(request: Any) -> Any:
    if isinstance(request, Undecodable):
        raise Refused(ServiceReason.UNDECODABLE, f"the request is not a valid message: {request.error}")
    return request


def check_header(node: VerifierNode, h: pb.ProofHeader) -> None:
    """The header's own checks: cheap, and done before the upload is admitted. The proof must be of the
    deployment's rule set: (P, W) under the paper rules, (segment, P, j) and no W under chain-bound rules."""
    if h.task != node.task_name:
        raise UnknownTask(f"task {h.task!r} is not served here (this verifier runs {node.task_name!r})")
    if len(h.miner) != 20:
        raise Refused(ServiceReason.INVALID_MINER, f"miner must be a 20-byte address, got {len(h.miner)} bytes")
    if node.rules is RuleSet.CHAIN_BOUND:
        # Weights mean a miner running the paper rules: under chain-bound rules W is not a claim.
        if h.weights_hash or h.weights_size:
            raise WrongRules("this deployment uses the chain-bound rules: W is replayed from the segment; "
                             "send no weights")
        if len(h.parent_hash) != 32:
            raise InvalidHash("parent_hash must be 32 bytes")
        return
    # A segment or a redraw index means a miner running the chain-bound rules against a paper chain.
    if h.segment or h.redraw:
        raise WrongRules("this deployment uses the paper rules: send W, not a segment or a redraw index")
    if len(h.parent_hash) != 32 or len(h.weights_hash) != 32:
        raise InvalidHash("parent_hash and weights_hash must be 32 bytes")
    cap = node.max_weights_bytes()
    if h.weights_size > cap:
        raise Refused(ServiceReason.TOO_LARGE, f"weights_size {h.weights_size} exceeds the cap of {cap} bytes")


def compute_verification_cost(node: VerifierNode, h: pb.ProofHeader) -> int:
    """What verifying a proof costs, in paper verdicts. A chain-bound proof first replays its segment:
    about 0.7 of a verdict per step and 1/107 per sample, fitted to docs/BENCHMARKS.md ("Chain-bound
    against paper rules": 4 steps of 4 samples cost 3.95 verdicts, 32 steps of 256 cost 99.9)."""
    if node.rules is not RuleSet.CHAIN_BOUND or not h.segment:
        return 1
    try:
        segment = decode_segment(bytes(h.segment))
    except ConsensusError:
        return 1  # refused on decoding, before any replay
    return 1 + math.ceil(0.7 * len(segment) + sum(len(step) for step in segment) / 107)


def build_proof(node: VerifierNode, h: pb.ProofHeader, blob: bytes) -> AnyProof:
    """The domain proof of the deployment's rule set, from a header that passed check_header."""
    if node.rules is RuleSet.CHAIN_BOUND:
        return build_segment_proof(h)
    try:
        state = node.decode_weights(blob)
    except MalformedWeights as e:
        raise Refused(ServiceReason.MALFORMED_WEIGHTS, str(e)) from e
    return Proof(
        parent_hash=Hash32(bytes(h.parent_hash)),
        height=Height(h.height),
        indices=tuple(SampleIndex(i) for i in h.indices),
        weights_hash=Hash32(bytes(h.weights_hash)),
        state=state,
        miner=Address(bytes(h.miner)),
    )


def build_segment_proof(h: pb.ProofHeader) -> SegmentProof:
    """The header is the whole chain-bound proof: W is replayed by the verifier, never received."""
    return SegmentProof(
        parent=Hash32(bytes(h.parent_hash)),
        height=Height(h.height),
        segment=decode_segment(bytes(h.segment)),
        indices=tuple(SampleIndex(i) for i in h.indices),
        redraw=RedrawIndex(h.redraw),
        miner=Address(bytes(h.miner)),
    )


def client_id(context: grpc.aio.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "pol-client-id" and isinstance(value, str):
            return value[:64]
    return None


def tip_message(node: VerifierNode) -> pb.Tip:
    t = node.tip_view()
    return pb.Tip(
        block_hash=t.block_hash, height=t.height, difficulty=t.difficulty, model_hash=t.model_hash,
        correct=t.correct, task=t.task, task_spec_hash=t.task_spec_hash, num_params=t.num_params,
        degraded=t.degraded, pending_attestations=t.pending_attestations, contract_address=t.contract_address,
        chain_id=t.chain_id, link=t.link, rules=t.rules.value, time=t.time, redraw_after=t.redraw_after,
    )


class TipBroadcast:
    """One follower of the node's tip for all watchers: it waits on the node (on one thread), builds
    the message once, and wakes every watcher; it also drives the health status."""

    FANOUT_BATCH = 32  # watchers woken per pass of the event loop

    def __init__(self, node: VerifierNode, health_servicer: Any, poll_s: float = 0.5):
        self.node = node
        self.health = health_servicer
        self.poll_s = poll_s
        self.latest: pb.Tip | None = None
        self.error: Exception | None = None  # the last attempt to read the tip failed
        self.version = 0
        self._waiters: list[asyncio.Future[None]] = []  # watchers waiting for the next version
        self._pool = futures.ThreadPoolExecutor(1, thread_name_prefix="tip")  # waits on the node's tip
        self._read = futures.ThreadPoolExecutor(1, thread_name_prefix="tip-read")
        self._key: tuple[bytes, bytes, bool, int] | None = None
        self._serving: bool | None = None
        self.closed = False

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.closed:
            try:
                msg = await self.publish()
            except Exception as e:  # noqa: BLE001 - handed to the watchers, whose calls map it to a status
                self.error, self.version = e, self.version + 1
                await self._wake()
                await asyncio.sleep(self.poll_s)
                continue
            await self._set_health(not msg.degraded)
            await loop.run_in_executor(self._pool, self.node.wait_tip_change, msg.block_hash, self.poll_s,
                                       bytes(msg.link))

    async def publish_until(self, block_hash: bytes | None, timeout: float = 2.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while (await self.publish()).block_hash != block_hash and block_hash is not None:
            if asyncio.get_running_loop().time() > deadline:
                return
            await asyncio.sleep(0.01)

    async def publish(self) -> pb.Tip:
        """Read the node's tip now; wake the watchers when it differs from the last one published."""
        msg = await asyncio.get_running_loop().run_in_executor(self._read, tip_message, self.node)
        # The link too: a chain-bound block attested again after a rollback keeps its hash, not its link.
        key = (bytes(msg.block_hash), bytes(msg.link), msg.degraded, msg.pending_attestations)
        if self.latest is None or key != self._key or self.error is not None:
            self.latest, self._key, self.error, self.version = msg, key, None, self.version + 1
            await self._wake()
        return msg

    async def _wake(self) -> None:
        """Wake the watchers a batch per pass of the loop: a GetTip or a health check that arrives
        during the fan-out then waits for one batch of watchers, not for all of them."""
        waiters, self._waiters = self._waiters, []
        for i, w in enumerate(waiters):
            if not w.done():
                w.set_result(None)
            if i % self.FANOUT_BATCH == self.FANOUT_BATCH - 1:
                await asyncio.sleep(0)

    async def _set_health(self, serving: bool) -> None:
        if serving == self._serving:
            return
        self._serving = serving
        s = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", SERVICE):
            await self.health.set(name, s)

    async def next_after(self, version: int) -> tuple[int, pb.Tip | None]:
        while self.version == version and not self.closed:
            woken = asyncio.get_running_loop().create_future()
            self._waiters.append(woken)
            await woken
        if self.error is not None:
            raise self.error
        return self.version, self.latest

    async def close(self) -> None:
        self.closed = True
        await self._wake()
        self._pool.shutdown(wait=False)
        self._read.shutdown(wait=False)


class VerifierServicer(pb_grpc.VerifierServicer):
    def __init__(self, node: VerifierNode, tips: TipBroadcast, cfg: VerifierConfig, chunk_size: int = CHUNK_SIZE):
        self.node = node
        self.tips = tips
        self.cfg = cfg
        self.chunk_size = chunk_size
        self.admission = Admission(cfg.max_inflight_per_client)
        # One thread per admitted upload at most: a verification never waits for a thread.
        self.verify_pool = futures.ThreadPoolExecutor(cfg.max_uploads, thread_name_prefix="verify")
        self.read_pool = futures.ThreadPoolExecutor(4, thread_name_prefix="read")
        self.verifying = asyncio.Semaphore(cfg.max_concurrent_verifications)
        self.room = WaitingRoom(cfg.max_uploads, cfg.max_waiting_uploads, cfg.max_inflight_per_connection,
                                cfg.max_uploads_per_s)
        self.pacer = RefusalPacer(cfg.refused_burst, cfg.refused_per_s, cfg.max_inflight_per_connection)
        self.queue = CostQueue(cfg.max_queued_verifications)  # uploaded proofs waiting for, or in, verification
        self.watchers = 0

    async def _blocking(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.read_pool, fn, *args)

    async def _read_upload(self, it: AsyncIterator[Any], peer: str, cid: str | None
                           ) -> tuple[pb.ProofHeader, Ticket, bytes, int]:
        """The header, a ticket for it, the weight bytes and the verification's cost; every read
        bounded by the idle deadline, the whole upload by the total one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.cfg.upload_total_s

        async def next_message() -> Any:
            timeout = min(self.cfg.upload_idle_s, deadline - loop.time())
            try:
                async with asyncio.timeout(max(timeout, 0.0)):  # no task per message, unlike wait_for
                    msg = await it.__anext__()
                return decoded(msg)
            except TimeoutError:
                what = "idle" if timeout >= self.cfg.upload_idle_s else "past its total deadline"
                raise Refused(ServiceReason.UPLOAD_TIMEOUT,
                              f"the upload went {what} ({self.cfg.upload_idle_s:g} s idle, "
                              f"{self.cfg.upload_total_s:g} s total)") from None

        try:
            first = await next_message()
        except StopAsyncIteration:
            first = None
        if first is None or not first.HasField("header"):
            raise Refused(ServiceReason.MISSING_HEADER, "the first message must be a ProofHeader")
        h = first.header
        check_header(self.node, h)
        cost = compute_verification_cost(self.node, h)
        # Admission comes before any expensive step: reading W, hashing it, waiting for a slot.
        ticket = self.admission.admit(peer, cid)
        try:
            cap = self.node.max_weights_bytes()
            chunks, total = [], 0
            while True:
                try:
                    req = await next_message()
                except StopAsyncIteration:
                    break
                if not req.HasField("weights_chunk"):
                    raise Refused(ServiceReason.UNEXPECTED_HEADER, "only weights chunks may follow the header")
                if self.node.rules is RuleSet.CHAIN_BOUND:
                    raise WrongRules("this deployment uses the chain-bound rules: W is replayed from the "
                                     "segment; send no weights")
                total += len(req.weights_chunk)
                if total > cap:
                    raise Refused(ServiceReason.TOO_LARGE, f"weights exceed the cap of {cap} bytes")
                chunks.append(req.weights_chunk)
            if total != h.weights_size:
                raise Refused(ServiceReason.SIZE_MISMATCH,
                              f"received {total} weight bytes, header announced {h.weights_size}")
        except BaseException:
            self.admission.release(ticket)
            raise
        return h, ticket, b"".join(chunks), cost

    def _verify(self, h: pb.ProofHeader, blob: bytes, ticket: Ticket) -> pb.SubmitProofResponse:
        proof = build_proof(self.node, h, blob)
        acc = self.node.submit(proof, f"{ticket.peer}/{ticket.client}")
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

    @rejects
    async def SubmitProof(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> pb.SubmitProofResponse:
        problems = self.node.attester.problems()
        # A block accepted now could not reach the chain: say so instead of a hollow OK.
        if problems:
            raise Refused(ServiceReason.DEGRADED, "; ".join(problems))
        peer, cid = context.peer(), client_id(context)
        # Refusals are paced per client id within the connection, as shares are split: channels in one
        # process share a connection, and a flooding client there must not hold back an honest one.
        paced = f"{peer}/{cid or ''}"
        await self.pacer.wait(paced)  # a client refused too often waits before anything else
        try:
            return await self._submit(request_iterator, peer, cid, paced)
        except BaseException as e:
            if is_charged(e):
                self.pacer.charge(paced)
            raise

    async def _submit(self, request_iterator: Any, peer: str, cid: str | None, paced: str) -> pb.SubmitProofResponse:
        # Wait for a place before a message is read: a waiting upload costs the loop nothing.
        await self.room.enter(peer, self.cfg.queue_wait_s)
        try:
            h, ticket, blob, cost = await self._read_upload(request_iterator.__aiter__(), peer, cid)
        except BaseException:
            self.room.leave(peer)
            raise
        try:
            # Uploaded proofs wait their turn for the verification queue (in arrival order), and then for
            # a slot, on the loop, not on threads: a few verifications run Python at once, so the loop
            # (reads, health, watchers) is not starved of the interpreter.
            await self.queue.join(cost, self.cfg.queue_wait_s)
        except BaseException:
            self.admission.release(ticket)
            self.room.leave(peer)
            raise
        try:
            await self.verifying.acquire()
        except BaseException:
            self.queue.leave(cost)
            self.admission.release(ticket)
            self.room.leave(peer)
            raise
        abandoned = False  # the client went away while its proof was verified

        def release() -> None:
            self.queue.leave(cost)
            self.verifying.release()
            self.admission.release(ticket)
            self.room.leave(peer)

        def done(f: asyncio.Future[pb.SubmitProofResponse]) -> None:
            release()  # only when the verification ends, even if the client gave up first: the thread runs on
            e = None if f.cancelled() else f.exception()
            if abandoned and e is not None and is_charged(e):
                self.pacer.charge(paced)  # hanging up does not dodge the pace of a refused proof

        try:
            fut = asyncio.get_running_loop().run_in_executor(self.verify_pool, self._verify, h, blob, ticket)
        except BaseException:  # the pool is shut down: the service is stopping
            release()
            raise
        fut.add_done_callback(done)
        try:
            resp = await asyncio.shield(fut)
        except asyncio.CancelledError:
            abandoned = True
            raise
        # Whoever hears of this block from us reads it in GetTip next: the receipt can be seen a moment
        # before the node moves its tip, so wait (briefly) for the tip to be the block.
        await self.tips.publish_until(bytes(resp.block_hash) if resp.attested else None)
        return resp

    @rejects
    async def GetTip(self, request: Any, context: grpc.aio.ServicerContext) -> pb.Tip:
        decoded(request)
        # The broadcast's message: no database read and no thread hop per call.
        return self.tips.latest or await self.tips.publish()

    @rejects
    async def WatchTip(self, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[pb.Tip]:
        decoded(request)
        if self.watchers >= self.cfg.max_watchers:
            raise Refused(ServiceReason.BUSY, f"{self.watchers} watchers already; use GetTip or retry later")
        self.watchers += 1
        try:
            if self.tips.latest is None:
                await self.tips.publish()
            first, version = self.tips.latest, self.tips.version  # read together: no change slips between
            if first is not None:
                yield first
            while not self.tips.closed:
                version, msg = await self.tips.next_after(version)
                if msg is not None:
                    yield msg
        finally:
            self.watchers -= 1

    @rejects
    async def GetModel(self, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[pb.ModelChunk]:
        request = decoded(request)
        if len(request.model_hash) != 32:
            raise InvalidHash("model_hash must be 32 bytes")
        known = await self._blocking(self._is_canonical_model, bytes(request.model_hash))
        blob = await self._blocking(self.node.get_model_bytes, request.model_hash) if known else None
        if blob is None:
            raise Refused(ServiceReason.UNKNOWN_MODEL, f"no model 0x{request.model_hash.hex()} in this store")
        for i, chunk in enumerate(iter_chunks(blob, self.chunk_size)):
            yield pb.ModelChunk(data=chunk, total_size=len(blob) if i == 0 else 0)

    def _is_canonical_model(self, model_hash: bytes) -> bool:
        """Genesis, or W or W' of a block on the chain (or waiting for its receipt): never a model only
        a rolled-back block named."""
        if model_hash == self.node.task.genesis_hash:
            return True
        tip = self.node.tip
        if model_hash in (tip.header.weights_hash, tip.header.new_weights_hash):
            # The tip the chain named: the row of a block co-signed here is marked attested only at the
            # attester's next pass, and a miner asks for the tip's W' at once. Unless a rollback has
            # since taken that block off the chain.
            entry = self.node.journal.get(tip.block_hash)
            if entry is not None and entry.status not in ("reorged", "orphaned"):
                return True
        return self.node.journal.is_canonical_model(model_hash)

    @rejects
    async def GetBlock(self, request: Any, context: grpc.aio.ServicerContext) -> pb.Block:
        request = decoded(request)
        key = request.WhichOneof("key")
        if key is None:
            raise Refused(ServiceReason.MISSING_KEY, "give block_hash or height")
        if key == "height" and request.height > MAX_HEIGHT:
            raise Refused(ServiceReason.INVALID_HEIGHT, f"height {request.height} is beyond any block's (2^63 - 1)")
        if key == "block_hash":
            entry = await self._blocking(functools.partial(self.node.get_block, block_hash=request.block_hash))
        else:
            entry = await self._blocking(functools.partial(self.node.get_block, height=request.height))
        # A co-signed block too (quorum mode): a peer catching up fetches its segment before it lands.
        if entry is None or entry.status not in ("pending", "attested", "cosigned"):
            raise Refused(ServiceReason.UNKNOWN_BLOCK, "no such block on the chain this verifier follows")
        h = entry.header
        return pb.Block(
            block_hash=entry.block_hash, parent_hash=h.parent, height=h.height, task_spec_hash=h.task_spec_hash,
            weights_hash=h.weights_hash, new_weights_hash=h.new_weights_hash, indices=list(h.indices),
            correct_before=h.correct_before, correct_after=h.correct_after, difficulty=h.difficulty, miner=h.miner,
            tx_hash=entry.tx_hash or "", attested=entry.status == "attested", accepted_at=entry.accepted_at,
            gas_used=entry.gas_used or 0, segment=self.node.get_segment(entry.block_hash) or b"",
            segment_root=h.segment_root, redraw=h.redraw, link=self.node.get_link(entry.block_hash) or b"",
        )

    def close(self) -> None:
        self.verify_pool.shutdown(wait=False, cancel_futures=True)
        self.read_pool.shutdown(wait=False, cancel_futures=True)


class _Capture:
    """Collects the generated code's method handlers so their deserializers can be wrapped."""

    def __init__(self) -> None:
        self.handlers: dict[str, Any] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass

    def add_registered_method_handlers(self, service: str, handlers: Mapping[str, Any]) -> None:
        self.handlers = dict(handlers)


def server_options(cfg: VerifierConfig) -> list[tuple[str, Any]]:
    ms = lambda s: int(s * 1000)  # noqa: E731
    return [
        ("grpc.max_receive_message_length", 8 << 20),
        ("grpc.so_reuseport", 0),  # a second verifier on the same port must fail, not share it
        ("grpc.keepalive_time_ms", ms(cfg.keepalive_s)),  # find dead peers holding streams
        ("grpc.keepalive_timeout_ms", ms(cfg.keepalive_timeout_s)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", ms(min(cfg.keepalive_s, 10.0))),
        ("grpc.max_connection_idle_ms", ms(cfg.max_connection_idle_s)),
        ("grpc.max_connection_age_ms", ms(cfg.max_connection_age_s)),  # watchers reconnect now and then
        ("grpc.max_connection_age_grace_ms", ms(cfg.max_connection_age_grace_s)),
        ("grpc.max_concurrent_streams", cfg.max_streams_per_connection),
    ]


class Server:
    """A grpc.aio server on its own event-loop thread, with grpc.Server's blocking start and stop."""

    def __init__(self, node: VerifierNode, addr: str, cfg: VerifierConfig, chunk_size: int):
        self.node = node
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="grpc-aio", daemon=True)
        self._thread.start()
        self._task: asyncio.Task[None] | None = None
        try:
            self.port = self._run(self._build(addr, cfg, chunk_size))
        except BaseException:
            self._close_loop()
            raise

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    async def _build(self, addr: str, cfg: VerifierConfig, chunk_size: int) -> int:
        self.server = grpc.aio.server(options=server_options(cfg))
        self.health = health.aio.HealthServicer()
        self.tips = TipBroadcast(self.node, self.health)
        self.servicer = VerifierServicer(self.node, self.tips, cfg, chunk_size)
        capture = _Capture()
        pb_grpc.add_VerifierServicer_to_server(self.servicer, capture)
        handlers = {name: h._replace(request_deserializer=_tolerant(h.request_deserializer))
                    for name, h in capture.handlers.items()}
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        from pol.v1 import quorum_pb2_grpc as qpb_grpc

        from .quorum_service import SERVICE as QUORUM, QuorumServicer

        capture = _Capture()
        self.quorum = QuorumServicer(self.servicer)
        qpb_grpc.add_QuorumServicer_to_server(self.quorum, capture)
        handlers = {name: h._replace(request_deserializer=_tolerant(h.request_deserializer))
                    for name, h in capture.handlers.items()}
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(QUORUM, handlers),))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        for name in ("", SERVICE):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        reflection.enable_server_reflection(
            (pb.DESCRIPTOR.services_by_name["Verifier"].full_name, QUORUM, health.SERVICE_NAME, reflection.SERVICE_NAME),
            self.server)
        try:
            port = self.server.add_insecure_port(addr)
        except RuntimeError as e:  # grpc raises where it cannot bind
            raise OSError(f"cannot listen on {addr} (listen): the address is in use or not this machine's") from e
        if port == 0:
            raise OSError(f"cannot listen on {addr} (listen): the address is in use or not this machine's")
        return port

    async def _start(self) -> None:
        await self.server.start()
        self._task = asyncio.get_running_loop().create_task(self.tips.run())

    def start(self) -> None:
        self._run(self._start())

    async def _stop(self, grace: float | None) -> None:
        await self.tips.close()
        await self.server.stop(grace)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, RuntimeError):
                pass
        self.servicer.close()
        self.quorum.close()

    def stop(self, grace: float | None) -> threading.Event:
        """Stop serving (in-flight calls get `grace` seconds); returns a set Event, as grpc.Server does."""
        done = threading.Event()
        if self.loop.is_running():
            self._run(self._stop(grace))
            self._close_loop()
        done.set()
        return done

    def _close_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


def create_server(node: VerifierNode, addr: str, chunk_size: int = CHUNK_SIZE,
                  cfg: VerifierConfig | None = None) -> tuple[Server, int]:
    """Build (not start) the server with health checking and reflection; returns it and its port."""
    server = Server(node, addr, cfg or node.cfg, chunk_size)
    return server, server.port


def serve(node: VerifierNode, addr: str, metrics_port: int | None = None, chunk_size: int = CHUNK_SIZE,
          ready: threading.Event | None = None) -> None:
    """Run until SIGTERM or SIGINT; the journal keeps whatever was accepted."""
    # The loop thread asks for the interpreter after every network event; with verification threads
    # running, a shorter switch interval bounds how long it waits (5 ms by default, per handoff).
    sys.setswitchinterval(0.001)
    server, port = create_server(node, addr, chunk_size=chunk_size)
    node.start()
    server.start()
    if metrics_port is not None:
        mport = node.serve_metrics(metrics_port)
        log.info("metrics", extra={"url": f"http://127.0.0.1:{mport}/metrics"})
    # What start-up built (torch, the task, the modules) lives as long as the process: out of the
    # collector's sight, a full collection under load pauses the loop for tens of ms, not hundreds.
    gc.freeze()
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

