"""One mining round in either mode, behind one interface the miner loop drives."""
from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from pol_core.requirements import compute_orientation
from pol_core.step import compute_batch_exponent, process_step
from pol_core.tasks import Task
from pol_core.types import Requirement, SampleIndex

from .fast import BatchedSearch
from .faithful import (
    Found,
    SegmentLog,
    compute_required_index_tensor,
    copy_state,
    draw_indices,
    is_robust_proof,
    mine_faithful,
    read_required,
)
from .guided import GuidedConfig, GuidedSearcher

# The training step between fast rounds takes at most this many times S of the round's C*S samples
# (256 for S = 4, at lr * 8), and at most a quarter of them. Progress per round grows with sqrt(B) and its cost with B. Measured with
# bench/mine.py (docs/BENCHMARKS.md): 64 S keeps attempts/s within a few percent of the old fast
# mode (its own SGD step on all C*S samples) and useful work at 0.89-1.00 of plain training; 16 S
# trains too little per round, and 256 S costs a fifth of the attempts for no more accuracy.
DEFAULT_TRAIN_BATCH_FACTOR = 64


class Searcher(Protocol):
    attempts: int

    def round(self) -> Found | None: ...


class FaithfulSearcher:
    """Algorithm 1, `per_round` attempts at a time so the loop can notice a new tip."""

    def __init__(self, task: Task, model: nn.Module, reqs: list[Requirement], gen: torch.Generator,
                 device: torch.device, per_round: int = 32, log: SegmentLog | None = None,
                 floor: int | None = None, redraw: int = 0):
        self.task, self.model, self.reqs, self.gen, self.device = task, model, reqs, gen, device
        self.per_round = per_round
        self.attempts = 0
        self.log, self.floor, self.redraw = log, floor, redraw

    def round(self) -> Found | None:
        found = mine_faithful(self.task, self.model, self.reqs, self.gen, self.per_round, self.device,
                              log=self.log, floor=self.floor, redraw=self.redraw)
        self.attempts += found.attempts if found else self.per_round
        return found


def compute_default_train_batch(s: int, candidates: int, limit: int | None = None) -> int:
    """The largest 4^j * S within a quarter of the round's C*S samples (so the step costs at most
    about a quarter of the search), within DEFAULT_TRAIN_BATCH_FACTOR * S and within `limit` (chain-bound:
    the task's largest segment step); at least S."""
    b = s
    cap = min(candidates * s // 4, DEFAULT_TRAIN_BATCH_FACTOR * s, limit if limit is not None else candidates * s)
    while 4 * b <= cap:
        b *= 4
    return b


def draw_round(gen: torch.Generator, train_size: int, candidates: int, s: int) -> list[tuple[SampleIndex, ...]]:
    """C candidates of S distinct indices. When the train set is large enough, all C*S indices of a
    round are distinct (one permutation), so any prefix of them is a batch without repeats."""
    if candidates * s <= train_size:
        perm = torch.randperm(train_size, generator=gen)[: candidates * s].view(candidates, s)
        return [tuple(SampleIndex(int(i)) for i in row) for row in perm]
    return [draw_indices(gen, train_size, s) for _ in range(candidates)]


class FastSearcher:
    """C candidates per round from the same W; candidates that pass are re-run as plain steps.
    After every `train_every`-th round the model trains with one pol_core step on `train_batch` of
    the round's samples. With `log` (chain-bound rules) those training steps are the segment: sorted,
    recorded, and no longer taken once the segment is full."""

    def __init__(self, task: Task, model: nn.Module, reqs: list[Requirement], gen: torch.Generator,
                 device: torch.device, candidates: int = 256, autocast_dtype: torch.dtype | None = None,
                 train_batch: int | None = None, train_every: int = 1, log: SegmentLog | None = None,
                 floor: int | None = None, redraw: int = 0):
        self.task, self.model, self.reqs, self.gen, self.device = task, model, reqs, gen, device
        self.c = candidates
        s = task.config.batch_size
        limit = log.max_step_batch if log is not None else None
        self.train_batch = compute_default_train_batch(s, candidates, limit) if train_batch is None else train_batch
        compute_batch_exponent(task.config, self.train_batch)  # InvalidBatchSize unless 4^j * S
        if self.train_batch > candidates * s:
            raise ValueError(f"train batch {self.train_batch} exceeds a round's {candidates} x {s} samples")
        if limit is not None and self.train_batch > limit:
            raise ValueError(f"train batch {self.train_batch} exceeds the task's largest segment step ({limit})")
        self.log, self.floor, self.redraw = log, floor, redraw
        if train_every < 1:
            raise ValueError(f"train_every must be at least 1, got {train_every}")
        self.train_every = train_every
        self.rounds = 0
        self.search = BatchedSearch(task, model, reqs, candidates, autocast_dtype)
        self.located = compute_required_index_tensor(model, reqs)
        self.sign = compute_orientation(reqs)
        self.attempts = 0
        self.rechecked = 0

    def round(self) -> Found | None:
        cfg = self.task.config
        self.rounds += 1
        idx = draw_round(self.gen, self.task.train_size, self.c, cfg.batch_size)
        if self.log is not None:
            idx = [tuple(sorted(cand)) for cand in idx]  # chain-bound P is strictly ascending
        x, y = self.task.batch([i for cand in idx for i in cand], self.device)  # (C*S, ...), (C*S,)
        oriented = self.search.oriented_deltas(x, y)  # (C, k); the model is unchanged
        self.attempts += self.c
        # Search arithmetic may be reduced precision: pass candidates on a looser bound, then
        # re-run each as the plain fp32 step the verifier will run, with the full margin.
        passing = torch.nonzero((oriented > cfg.delta_margin * 0.5).all(dim=1)).flatten().tolist()
        if passing:
            before = copy_state(self.model)
            for c in passing:
                self.rechecked += 1
                w0 = read_required(self.located)
                process_step(self.model, *self.task.batch(idx[c], self.device), cfg)
                actual = (read_required(self.located).double() - w0.double()) * self.sign
                if bool((actual > cfg.delta_margin).all()):
                    ok, cb, ca = is_robust_proof(self.task, self.model, before, self.device, self.floor)
                    if ok:
                        segment = self.log.segment() if self.log is not None else ()
                        return Found(idx[c], {k: v.to("cpu") for k, v in before.items()}, self.attempts, cb, ca,
                                     segment, self.redraw)
                self.model.load_state_dict(before)
        # Useful work: one protocol step on the first train_batch samples of the round.
        if self.rounds % self.train_every == 0:
            self.train_step([i for cand in idx for i in cand][: self.train_batch], x, y)
        return None

    def train_step(self, indices: list[SampleIndex], x: torch.Tensor, y: torch.Tensor) -> None:
        """Paper rules: a step on the round's first samples as drawn. Chain-bound: the same samples in
        ascending order, recorded as a segment step (none once the segment is full)."""
        cfg = self.task.config
        if self.log is None:
            process_step(self.model, x[: self.train_batch], y[: self.train_batch], cfg)
            return
        if self.log.is_full():
            return
        step = tuple(sorted(indices))
        process_step(self.model, *self.task.batch(step, self.device), cfg)
        self.log.record(step)


def make_searcher(mode: str, task: Task, model: nn.Module, reqs: list[Requirement], gen: torch.Generator,
                  device: torch.device, candidates: int = 256, autocast_dtype: torch.dtype | None = None,
                  train_batch: int | None = None, train_every: int = 1, log: SegmentLog | None = None,
                  floor: int | None = None, redraw: int = 0) -> Searcher:
    if mode == "faithful":
        return FaithfulSearcher(task, model, reqs, gen, device, log=log, floor=floor, redraw=redraw)
    if mode == "fast":
        return FastSearcher(task, model, reqs, gen, device, candidates, autocast_dtype, train_batch, train_every,
                            log, floor, redraw)
    if mode == "guided":
        return GuidedSearcher(task, model, reqs, gen, device, GuidedConfig(candidates=candidates), log=log,
                              floor=floor, redraw=redraw)
    raise ValueError(f"unknown mode {mode!r}: fast, faithful or guided")
