"""The mining loop: follow the tip, sync the model, search, submit; drop stale work at once.

Under chain-bound rules the miner starts from the tip's canonical W' (the verifier's store serves it,
rebuilt by replay where needed), records every training step it keeps as the segment, draws R from
seed(tip link, j) with j the redraw index open by the wall clock, and submits (segment, P, j) without W."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import grpc
import torch

from pol.client import Rejected, VerifierClient, VerifierUnavailable
from pol.reasons import ServiceReason
from pol.v1 import verifier_pb2 as pb
from pol_core.link import compute_seed
from pol_core.requirements import compute_requirements
from pol_core.tasks import Task
from pol_core.types import Difficulty, Hash32, RedrawIndex
from pol_core.weights import compute_weights_hash

from .faithful import Found, SegmentLog
from .search import make_searcher

log = logging.getLogger("pol.prover")


class ModelMismatch(Exception):
    """The verifier served bytes whose hash is not the model it named."""


class RulesMismatch(Exception):
    """The verifier runs another rule set than the miner's task is pinned to."""


def compute_open_redraw(tip: pb.Tip, now: float) -> int:
    """The highest redraw index open at wall-clock time `now` (0 under paper rules). The verifier checks
    against chain time, which may lag; a proof sent early is refused with REDRAW_TOO_EARLY."""
    if tip.redraw_after <= 0 or now < tip.time:
        return 0
    return int((now - tip.time) // tip.redraw_after)


@dataclass
class MinerStats:
    attempts: int = 0
    blocks_won: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    retries: dict[str, int] = field(default_factory=dict)  # submissions sent again after "not now" (BUSY, ...)
    tip_height: int = 0
    difficulty: int = 0
    started: float = field(default_factory=time.monotonic)
    rate: float = 0.0  # attempts per second since the start

    def expected_seconds(self) -> float:
        return float("inf") if self.rate <= 0 else 2.0 ** self.difficulty / self.rate


@dataclass(frozen=True)
class MinerConfig:
    target: str
    miner: bytes  # 20-byte address
    mode: str = "fast"
    device: str = "cpu"
    candidates: int = 256
    seed: int = 0
    max_blocks: int | None = None
    reduced_precision: bool = False  # bf16 search on CUDA; the winner is re-run in fp32
    train_batch: int | None = None  # fast mode: samples of the training step per round (4^j * S); None = default
    train_every: int = 1  # fast mode: train after every n-th round only (the demo's slow climb)
    connect_timeout: float = 30.0  # give up when no verifier answers for this long
    model_wait_s: float = 300.0  # give up when the verifier has not served the tip's model for this long


class Miner:
    def __init__(self, task: Task, cfg: MinerConfig, on_status: Callable[[MinerStats], None] | None = None):
        self.task = task
        self.cfg = cfg
        self.device = torch.device(cfg.device)
        self.client = VerifierClient(cfg.target, client_id=f"miner-{cfg.miner.hex()}", connect_timeout=cfg.connect_timeout)
        self.stats = MinerStats()
        self.on_status = on_status or (lambda s: None)
        self.stop_event = threading.Event()
        self._tip: pb.Tip | None = None
        self._tip_cv = threading.Condition()
        self._stream: grpc.Call | None = None
        self._failure: Exception | None = None  # why the tip watcher gave up
        self._model_missing_since: tuple[bytes, float] | None = None  # (tip, when GetModel first refused it)
        self.model = task.new_model().to(self.device)
        self.model_hash: bytes = task.genesis_hash
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.submitting = False
        # Chain-bound: the steps kept since the tip's W' was loaded (the next proof's segment).
        self.log = SegmentLog(task) if task.config.rules == "chain-bound" else None

    # ── tip following ──

    def _set_tip(self, tip: pb.Tip) -> None:
        with self._tip_cv:
            self._tip = tip
            self._tip_cv.notify_all()

    def _watch(self) -> None:
        """Follow WatchTip; when the stream breaks, wait (gRPC wait_for_ready, bounded by the
        connect timeout) for the verifier to answer again, then reopen it."""
        while not self.stop_event.is_set():
            stream = self.client.watch_tip()
            self._stream = stream  # type: ignore[assignment]
            try:
                for tip in stream:
                    self._set_tip(tip)
                    if self.stop_event.is_set():
                        return
            except grpc.RpcError as e:
                if self.stop_event.is_set():
                    return
                log.warning("tip stream ended (%s); waiting for the verifier", e.code().name if isinstance(e, grpc.Call) else e)
            try:
                self._set_tip(self.client.get_tip())
            except (VerifierUnavailable, Rejected) as e:
                self._failure = e
                self.stop()
                return

    def current_tip(self) -> pb.Tip | None:
        with self._tip_cv:
            return self._tip

    def _wait_tip(self, ready: Callable[[pb.Tip], bool], timeout: float) -> pb.Tip | None:
        """The tip once `ready(tip)` holds, or None at the timeout or on stop."""
        with self._tip_cv:
            self._tip_cv.wait_for(lambda: self.stop_event.is_set() or (self._tip is not None and ready(self._tip)),
                                  timeout)
            return self._tip if self._tip is not None and ready(self._tip) else None

    def _sync_model(self, tip: pb.Tip) -> None:
        if bytes(tip.model_hash) == self.model_hash:
            return
        if self.log is not None:
            self.log.reset()  # a segment starts at the W' it is replayed from
        state = self.client.get_model(bytes(tip.model_hash), list(self.task.genesis_state))
        # The verifier serves content-addressed models; check the bytes are the ones named.
        if compute_weights_hash(state) != bytes(tip.model_hash):
            raise ModelMismatch(f"the verifier served a model whose hash is not 0x{bytes(tip.model_hash).hex()}")
        self.model.load_state_dict(state)
        self.model_hash = bytes(tip.model_hash)

    # ── main loop ──

    def stop(self) -> None:
        self.stop_event.set()
        with self._tip_cv:
            self._tip_cv.notify_all()
        stream = self._stream
        if stream is not None:
            stream.cancel()

    def run(self) -> MinerStats:
        """Mine until stopped or `max_blocks` are won. VerifierUnavailable when no verifier answers
        within the connect timeout, at the start or after the tip stream broke."""
        try:
            first = self.client.get_tip()  # fails with a clear error on a wrong --verifier
            # A miner of the other rule set would send proofs the verifier can only refuse.
            if first.rules and first.rules != self.task.config.rules:
                raise RulesMismatch(f"the verifier runs {first.rules} rules; this miner's task is pinned to "
                                    f"{self.task.config.rules}")
            self._set_tip(first)
            threading.Thread(target=self._watch, name="tip-watch", daemon=True).start()
            while not self.stop_event.is_set():
                if self.cfg.max_blocks is not None and self.stats.blocks_won >= self.cfg.max_blocks:
                    break
                # Mining on a tip whose successor awaits attestation would be stale work.
                tip = self._wait_tip(lambda t: t.pending_attestations == 0, timeout=1.0)
                if tip is not None:
                    try:
                        self._mine_on(tip)
                    except Rejected as e:
                        if e.reason != ServiceReason.UNKNOWN_MODEL:
                            raise
                        self._wait_for_model(tip, e)
        finally:
            self.stop()
            self.client.close()
        if self._failure is not None:
            raise self._failure
        return self.stats

    def _wait_for_model(self, tip: pb.Tip, refusal: Rejected) -> None:
        """The verifier does not serve the tip's W' yet (a rollback, or a tip a quorum member is still
        catching up on from its peers): ask again shortly, or on the next tip. A model still missing after
        `model_wait_s` on one tip will not come (this verifier never attested it, or lost it): give up."""
        stuck = bytes(tip.block_hash)
        if self._model_missing_since is None or self._model_missing_since[0] != stuck:
            self._model_missing_since = (stuck, time.monotonic())
        self.stats.retries["UNKNOWN_MODEL"] = self.stats.retries.get("UNKNOWN_MODEL", 0) + 1
        if time.monotonic() - self._model_missing_since[1] > self.cfg.model_wait_s:
            raise refusal
        log.warning("the verifier does not serve the tip's model yet: %s", refusal.message)
        self._wait_tip(lambda t: bytes(t.block_hash) != stuck, timeout=2.0)

    def _mine_on(self, tip: pb.Tip) -> None:
        self._sync_model(tip)
        self.stats.tip_height, self.stats.difficulty = tip.height, tip.difficulty
        redraw = compute_open_redraw(tip, time.time()) if self.log is not None else 0
        seed = compute_seed(Hash32(bytes(tip.link) or bytes(tip.block_hash)), RedrawIndex(redraw))
        reqs = compute_requirements(seed, Difficulty(tip.difficulty), self.task.num_params)
        dtype = torch.bfloat16 if self.cfg.reduced_precision and self.device.type == "cuda" else None
        floor = tip.correct if self.log is not None else None  # chain-bound: the tip never loses accuracy
        searcher = make_searcher(self.cfg.mode, self.task, self.model, reqs, self.gen, self.device,
                                 self.cfg.candidates, dtype, self.cfg.train_batch, self.cfg.train_every,
                                 self.log, floor, redraw)
        last = time.monotonic()
        last_attempts = 0
        while not self.stop_event.is_set():
            now_tip = self.current_tip()
            if now_tip is None or bytes(now_tip.block_hash) != bytes(tip.block_hash):
                return  # a new tip: drop this work at once
            if self.log is not None and compute_open_redraw(tip, time.time()) != redraw:
                return  # a redraw opened: mine on the new R (the segment so far is kept)
            found = searcher.round()
            self.stats.attempts += searcher.attempts - last_attempts
            last_attempts = searcher.attempts
            now = time.monotonic()
            if now - last >= 1.0:
                self.stats.rate = self.stats.attempts / max(now - self.stats.started, 1e-9)
                self.on_status(self.stats)
                last = now
            if found is not None:
                self._submit(tip, found)
                return

    def _submit(self, tip: pb.Tip, found: Found) -> None:
        self.submitting = True

        def stale() -> bool:  # a busy verifier is retried only while the proof can still win
            now = self.current_tip()
            return self.stop_event.is_set() or now is None or bytes(now.block_hash) != bytes(tip.block_hash)

        def retrying(e: Exception, pause: float) -> None:
            key = str(e.reason) if isinstance(e, Rejected) else "UNAVAILABLE"
            self.stats.retries[key] = self.stats.retries.get(key, 0) + 1
            log.info("verifier cannot take the proof now (%s); retrying in %.2f s", e, pause)

        try:
            if self.log is not None:
                # The winning step itself is in the model but not in the segment: start over from the tip.
                self.model_hash = b""
                resp = self.client.submit_segment(
                    self.task.name, bytes(tip.link), tip.height + 1, found.segment, found.indices, self.cfg.miner,
                    found.redraw, claimed_correct=(found.correct_before, found.correct_after),
                    give_up=stale, on_retry=retrying)
            else:
                resp = self.client.submit(
                    self.task.name, bytes(tip.block_hash), tip.height + 1, found.indices,
                    compute_weights_hash(found.state), found.state, self.cfg.miner,
                    claimed_correct=(found.correct_before, found.correct_after), give_up=stale, on_retry=retrying)
        except Rejected as e:
            self.stats.rejected[str(e.reason)] = self.stats.rejected.get(str(e.reason), 0) + 1
            log.info("proof rejected: %s", e)
            return
        finally:
            self.submitting = False
        self.stats.blocks_won += 1
        log.info("block %d won: 0x%s %s", resp.height, resp.block_hash.hex()[:16],
                 f"tx {resp.tx_hash}" if resp.attested else "(accepted, not on chain yet)")
        # Wait until the tip moves to our block, so the next round starts from the canonical W'.
        self._wait_tip(lambda t: t.height >= resp.height and t.pending_attestations == 0, timeout=60)
