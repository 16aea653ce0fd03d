"""One mining round in either mode, behind one interface the miner loop drives."""
from __future__ import annotations

import math
from typing import Protocol

import torch
from torch import nn

from pol_core.requirements import Requirement, compute_orientation
from pol_core.step import process_update
from pol_core.tasks import Task

from .fast import BatchedSearch
from .faithful import (
    Found,
    compute_required_index_tensor,
    copy_state,
    draw_indices,
    is_robust_proof,
    mine_faithful,
    read_required,
)
from .guided import GuidedConfig, GuidedSearcher


class Searcher(Protocol):
    attempts: int

    def round(self) -> Found | None: ...


class FaithfulSearcher:
    """Algorithm 1, `per_round` attempts at a time so the loop can notice a new tip."""

    def __init__(self, task: Task, model: nn.Module, reqs: list[Requirement], gen: torch.Generator,
                 device: torch.device, per_round: int = 32):
        self.task, self.model, self.reqs, self.gen, self.device = task, model, reqs, gen, device
        self.per_round = per_round
        self.attempts = 0

    def round(self) -> Found | None:
        found = mine_faithful(self.task, self.model, self.reqs, self.gen, self.per_round, self.device)
        self.attempts += found.attempts if found else self.per_round
        return found


class FastSearcher:
    """C candidates per round from the same W; R-passing ones are re-run as plain steps."""

    def __init__(self, task: Task, model: nn.Module, reqs: list[Requirement], gen: torch.Generator,
                 device: torch.device, candidates: int = 256, autocast_dtype: torch.dtype | None = None,
                 train_lr_scale: float | None = None):
        self.task, self.model, self.reqs, self.gen, self.device = task, model, reqs, gen, device
        self.c = candidates
        # One training step per round on C*S samples replaces C small steps; square-root scaling of
        # the learning rate keeps the progress per second close to plain training (docs/BENCHMARKS.md).
        scale = math.sqrt(candidates) if train_lr_scale is None else train_lr_scale
        self.search = BatchedSearch(task, model, reqs, candidates, scale, autocast_dtype)
        self.located = compute_required_index_tensor(model, reqs)
        self.sign = compute_orientation(reqs)
        self.attempts = 0
        self.rechecked = 0

    def round(self) -> Found | None:
        cfg = self.task.config
        idx = [draw_indices(self.gen, self.task.train_size, cfg.batch_size) for _ in range(self.c)]
        flat = [i for cand in idx for i in cand]
        x, y = self.task.batch(flat, self.device)  # (C*S, ...), (C*S,)
        before = copy_state(self.model)
        oriented = self.search.oriented_deltas(x, y, train=True)  # (C, k); the model has trained now
        self.attempts += self.c
        # Search arithmetic may be reduced precision: pass candidates on a looser bound, then
        # re-run each as the plain fp32 step the verifier will run, with the full margin.
        passing = torch.nonzero((oriented > cfg.delta_margin * 0.5).all(dim=1)).flatten().tolist()
        if not passing:
            return None
        trained = copy_state(self.model)
        for c in passing:
            self.rechecked += 1
            self.model.load_state_dict(before)
            w0 = read_required(self.located)
            process_update(self.model, *self.task.batch(idx[c], self.device), cfg.lr)
            actual = (read_required(self.located).double() - w0.double()) * self.sign
            if bool((actual > cfg.delta_margin).all()):
                ok, cb, ca = is_robust_proof(self.task, self.model, before, self.device)
                if ok:
                    return Found(idx[c], {k: v.to("cpu") for k, v in before.items()}, self.attempts, cb, ca)
        self.model.load_state_dict(trained)
        return None


def make_searcher(mode: str, task: Task, model: nn.Module, reqs: list[Requirement], gen: torch.Generator,
                  device: torch.device, candidates: int = 256, autocast_dtype: torch.dtype | None = None,
                  train_lr_scale: float | None = None) -> Searcher:
    if mode == "faithful":
        return FaithfulSearcher(task, model, reqs, gen, device)
    if mode == "fast":
        return FastSearcher(task, model, reqs, gen, device, candidates, autocast_dtype, train_lr_scale)
    if mode == "guided":
        return GuidedSearcher(task, model, reqs, gen, device, GuidedConfig(candidates=candidates))
    raise ValueError(f"unknown mode {mode!r}: fast, faithful or guided")
