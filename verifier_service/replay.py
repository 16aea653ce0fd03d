"""The chain-bound model store: a segment per block, W' on disk every N-th height, the rest by replay.

Under chain-bound rules W = replay(parent's W', segment) and W' = one step of W on P, so a block's models
follow from its parent's W', its segment and its header. The store keeps full states only for genesis
and every `checkpoint_every`-th height (and a few recent states in memory: the tip's W' is what the next
proof and every miner need); any other W or W' is rebuilt by replaying forward from the nearest
checkpoint below it, and checked against the hash its header records.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Mapping

import torch

from pol.wire import decode_segment, encode_segment, encode_state
from pol_core.segment import Segment, process_segment_replay
from pol_core.step import process_step
from pol_core.tasks import Task
from pol_core.weights import compute_weights_hash, get_state

from .journal import Journal, ModelStore, SegmentEntry

State = dict[str, torch.Tensor]


class ReplayError(Exception):
    """A model the store should be able to rebuild but cannot (a missing segment, or a replay whose hash
    differs from the header's: a store that would hand out a wrong model)."""


class ReplayStore:
    def __init__(self, task: Task, journal: Journal, models: ModelStore, genesis_block: bytes,
                 checkpoint_every: int = 16, cache_size: int = 4):
        # N = 0 would never checkpoint, and every rebuild would replay from genesis.
        if checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be at least 1, got {checkpoint_every}")
        self.task = task
        self.journal = journal
        self.models = models
        self.genesis_block = genesis_block
        self.checkpoint_every = checkpoint_every
        self.order = list(task.genesis_state)
        self._cache: OrderedDict[bytes, State] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self.models.put(task.genesis_state, task.genesis_hash)

    # ── writes ──

    def record(self, block_hash: bytes, parent_block: bytes, height: int, segment: Segment,
               state: Mapping[str, torch.Tensor], w: bytes, new_state: Mapping[str, torch.Tensor], w_new: bytes) -> None:
        """An accepted block: its segment always, its W' in full only at a checkpoint height."""
        self.journal.record_segment(block_hash, parent_block, encode_segment(segment), w, w_new)
        if height % self.checkpoint_every == 0:
            self.models.put(new_state, w_new)
        self._remember(w, dict(state))
        self._remember(w_new, dict(new_state))

    def _remember(self, h: bytes, state: State) -> None:
        with self._lock:
            self._cache[h] = state
            self._cache.move_to_end(h)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    # ── reads ──

    def get_state(self, weights_hash: bytes) -> State | None:
        """W or W' of any recorded block (None for a hash no block has)."""
        with self._lock:
            hit = self._cache.get(weights_hash)
        if hit is not None:
            return hit
        on_disk = self.models.get_state(weights_hash, self.order)
        if on_disk is not None:
            return on_disk
        found = self.journal.find_segment_by_model(weights_hash)
        if found is None:
            return None
        entry, is_new = found
        w, w_new = self._rebuild(entry)
        state = w_new if is_new else w
        self._remember(weights_hash, state)
        return state

    def get_bytes(self, weights_hash: bytes) -> bytes | None:
        state = self.get_state(weights_hash)
        return None if state is None else encode_state(state)

    def get_segment(self, block_hash: bytes) -> bytes | None:
        entry = self.journal.get_segment(block_hash)
        return None if entry is None else entry.segment

    def _rebuild(self, target: SegmentEntry) -> tuple[State, State]:
        """(W, W') of `target`, replayed forward from the nearest stored W' below it."""
        path = [target]
        while True:
            parent = path[-1].parent_block
            start = self._stored_new_state(parent)
            if start is not None:
                break
            entry = self.journal.get_segment(parent)
            if entry is None:
                raise ReplayError(f"no segment for block 0x{parent.hex()}: cannot rebuild 0x{target.block_hash.hex()}")
            path.append(entry)
        model = self.task.scratch_model(start)
        w: State = {}
        for entry in reversed(path):
            process_segment_replay(self.task, model, decode_segment(entry.segment))
            w = get_state(model)
            block = self.journal.get(entry.block_hash)
            if block is None:
                raise ReplayError(f"block 0x{entry.block_hash.hex()} has a segment but no header")
            process_step(model, *self.task.batch(block.header.indices), self.task.config)
            # A replay that disagrees with the header would serve a model no verifier attested.
            if compute_weights_hash(w) != entry.weights_hash or compute_weights_hash(model.state_dict()) != entry.new_weights_hash:
                raise ReplayError(f"replay of block 0x{entry.block_hash.hex()} does not reproduce its hashes")
        return w, get_state(model)

    def _stored_new_state(self, block_hash: bytes) -> State | None:
        """W' of `block_hash` if it is kept in full (genesis, a checkpoint, or in memory)."""
        if block_hash == self.genesis_block:
            return self.task.genesis_state
        entry = self.journal.get_segment(block_hash)
        if entry is None:
            return None
        with self._lock:
            hit = self._cache.get(entry.new_weights_hash)
        return hit if hit is not None else self.models.get_state(entry.new_weights_hash, self.order)
