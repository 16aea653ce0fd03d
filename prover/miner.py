"""The mining loop: follow the tip, sync the model, search, submit; drop stale work at once."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from pol_core.requirements import compute_requirements
from pol_core.tasks import Task
from pol_core.weights import compute_weights_hash

from .client import Rejected, VerifierClient
from .search import make_searcher

log = logging.getLogger("pol.prover")


@dataclass
class MinerStats:
    attempts: int = 0
    blocks_won: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    tip_height: int = 0
    difficulty: int = 0
    started: float = field(default_factory=time.monotonic)
    rate: float = 0.0  # attempts per second, smoothed

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
    train_lr_scale: float | None = None  # fast mode: between-round step lr in task lr; None = sqrt(C)


class Miner:
    def __init__(self, task: Task, cfg: MinerConfig, on_status: Callable[[MinerStats], None] | None = None):
        self.task = task
        self.cfg = cfg
        self.device = torch.device(cfg.device)
        self.client = VerifierClient(cfg.target, client_id=f"miner-{cfg.miner.hex()}")
        self.stats = MinerStats()
        self.on_status = on_status or (lambda s: None)
        self.stop_event = threading.Event()
        self._tip = None
        self._tip_lock = threading.Lock()
        self._tip_seen = threading.Event()
        self.model = task.new_model().to(self.device)
        self.model_hash = task.genesis_hash
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.submitting = False

    # ── tip following ──

    def _watch(self) -> None:
        while not self.stop_event.is_set():
            stream = self.client.watch_tip()
            self._stream = stream
            try:
                for tip in stream:
                    with self._tip_lock:
                        self._tip = tip
                    self._tip_seen.set()
                    if self.stop_event.is_set():
                        break
            except Exception as e:  # noqa: BLE001 - reconnect on any stream failure
                if not self.stop_event.is_set():
                    log.warning("tip stream ended: %s; reconnecting", e)
                    time.sleep(0.5)

    def current_tip(self):
        with self._tip_lock:
            return self._tip

    def _sync_model(self, tip) -> None:
        if bytes(tip.model_hash) == self.model_hash:
            return
        state = self.client.get_model(bytes(tip.model_hash), list(self.task.genesis_state))
        # The verifier serves content-addressed models; check the bytes are the ones named.
        if compute_weights_hash(state) != bytes(tip.model_hash):
            raise RuntimeError("verifier served a model whose hash does not match")
        self.model.load_state_dict(state)
        self.model_hash = bytes(tip.model_hash)

    # ── main loop ──

    def stop(self) -> None:
        self.stop_event.set()
        stream = getattr(self, "_stream", None)
        if stream is not None:
            stream.cancel()

    def run(self) -> MinerStats:
        watcher = threading.Thread(target=self._watch, name="tip-watch", daemon=True)
        watcher.start()
        self._tip_seen.wait(30)
        try:
            while not self.stop_event.is_set():
                if self.cfg.max_blocks is not None and self.stats.blocks_won >= self.cfg.max_blocks:
                    break
                tip = self.current_tip()
                if tip is None or tip.pending_attestations > 0:
                    time.sleep(0.05)
                    continue
                self._mine_on(tip)
        finally:
            self.stop()
            self.client.close()
        return self.stats

    def _mine_on(self, tip) -> None:
        self._sync_model(tip)
        self.stats.tip_height, self.stats.difficulty = tip.height, tip.difficulty
        reqs = compute_requirements(bytes(tip.block_hash), tip.difficulty, self.task.num_params)
        dtype = torch.bfloat16 if self.cfg.reduced_precision and self.device.type == "cuda" else None
        searcher = make_searcher(self.cfg.mode, self.task, self.model, reqs, self.gen, self.device,
                                 self.cfg.candidates, dtype, self.cfg.train_lr_scale)
        last = time.monotonic()
        last_attempts = 0
        while not self.stop_event.is_set():
            now_tip = self.current_tip()
            if bytes(now_tip.block_hash) != bytes(tip.block_hash):
                return  # a new tip: drop this work at once
            found = searcher.round()
            self.stats.attempts += searcher.attempts - last_attempts
            last_attempts = searcher.attempts
            now = time.monotonic()
            if now - last >= 1.0:
                inst = self.stats.attempts / max(now - self.stats.started, 1e-9)
                self.stats.rate = inst
                self.on_status(self.stats)
                last = now
            if found is not None:
                self._submit(tip, found)
                return

    def _submit(self, tip, found) -> None:
        self.submitting = True
        try:
            resp = self.client.submit(
                self.task.name, bytes(tip.block_hash), tip.height + 1, found.indices,
                compute_weights_hash(found.state), found.state, self.cfg.miner,
                claimed_correct=(found.correct_before, found.correct_after))
        except Rejected as e:
            self.stats.rejected[e.reason] = self.stats.rejected.get(e.reason, 0) + 1
            log.info("proof rejected: %s", e)
            return
        finally:
            self.submitting = False
        self.stats.blocks_won += 1
        log.info("block %d won: 0x%s tx %s", resp.height, resp.block_hash.hex()[:16], resp.tx_hash)
        # Wait until the tip moves to our block, so the next round starts from the canonical W'.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not self.stop_event.is_set():
            t = self.current_tip()
            if t is not None and t.height >= resp.height and t.pending_attestations == 0:
                break
            time.sleep(0.02)
