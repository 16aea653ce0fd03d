"""Guided mode: choose the mini-batch from per-sample gradient estimates instead of drawing it.

A step's gradient is close to the mean of its samples' gradients, so a miner that knows every
training sample's gradient at the k required coordinates can pick S samples that all push the
required way. One round:

  set-up    per-sample gradients g[n, j] at the k required coordinates, from activations and
            output gradients captured at the target modules only (fast.py's layer-local formulas,
            one sample per group); the predicted oriented change of sample n is
            d[n, j] = -lr * g[n, j] * sign[j], and an S-subset's is the mean over its samples
  pool      the samples that push the most coordinates the right way, plus each coordinate's
            best few samples, so that a coordinate few samples move keeps its movers
  search    beam search over S-subsets of the pool by predicted minimum oriented margin, each
            coordinate measured in units of its spread over the samples
  check     the best candidates in one batched exact pass (fast.py: each candidate normalised
            with its own BatchNorm statistics), then the survivors as plain pol_core steps with
            the full margin and the robust accuracy check
  fallback  random candidates fill the exact pass when the predictor has too few (a dead or
            unreachable coordinate leaves it none)
  training  one pol_core step (process_step) per round on B = 4^j * S training indices at
            lr * 2^j; every step since the searcher started is in `self.segment` (given a miner's
            SegmentLog, the log's steps: those kept on the same tip before this searcher, e.g. under
            an earlier redraw, stay first), so that a proof's W is always the W the segment starts
            from advanced by exactly `self.segment`. Each step is a valid
            chain-bound segment step (strictly ascending, B within the task's max_step_batch), and
            under chain-bound rules the searcher stops adding steps at the task's max_segment_steps
            (it then keeps searching from the W it has reached)

Two set-up variants:
  fused     the training step is the set-up: hooks on the target modules record each sample's
            contribution to the B-batch gradient (BatchNorm coupling within B included), at the
            W the step starts from; the search and check run from that W. No extra pass. (With a
            full segment the same pass runs and the step is undone.)
  separate  a pass at W over `setup_size` samples with BatchNorm statistics of the pass frozen
            (so each sample's gradient is its own), backpropagating only to the target modules;
            the training step follows when the check finds nothing.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from pol_core.requirements import compute_orientation
from pol_core.rulesets import RuleSet
from pol_core.segment import SegmentBounds, SegmentStep
from pol_core.step import (
    RobustCount,
    compute_batch_exponent,
    compute_robust_count,
    compute_step_lr,
    is_robustly_improved,
    process_step,
)
from pol_core.tasks import Task
from pol_core.types import Requirement, SampleIndex

from .fast import BatchedSearch, Capture, Target, compute_target_grad, locate_targets
from .faithful import Found, SegmentLog, compute_required_index_tensor, copy_state, read_required


@dataclass(frozen=True)
class GuidedConfig:
    candidates: int = 64  # exact-checked S-subsets per round, in one batched pass
    pool_size: int = 128  # samples kept by alignment; 0 disables the predictor (random only)
    per_coordinate: int = 4  # each coordinate's best samples, added to the pool (fewer when k > pool / 4)
    beam: int = 512  # partial subsets kept per level of the search
    setup: str = "fused"  # "fused" or "separate"
    train_j: int | None = None  # training batch 4^j * S; None: the largest segment step the task allows
    setup_size: int | None = None  # separate set-up: samples per round (None: the whole train set)
    setup_chunk: int = 2048  # separate set-up: samples per pass; BatchNorm statistics are per pass


@dataclass
class RoundTimes:
    """Seconds spent per phase, summed over rounds (bench/mine.py reports them)."""

    setup: float = 0.0
    search: float = 0.0
    check: float = 0.0
    train: float = 0.0


class SampleCapture:
    """Forward hooks on the target modules: their inputs, and the gradient at their outputs.

    probe=False registers a tensor hook on each output, so the forward is untouched (the fused
    set-up's training step stays bit-identical to a plain one). probe=True adds a zero leaf to
    each output instead, so autograd.grad can stop there without computing any weight gradient.
    Either way the gradient is the one at the module's own output, before any in-place op after it
    (ResNet's ReLU(inplace=True) and residual `+=`). Inputs are kept by reference: a module whose
    input is later changed in place is not supported (none in the task architectures).
    """

    def __init__(self, modules: set[nn.Module], probe: bool):
        self.probe = probe
        self.inputs: dict[nn.Module, torch.Tensor] = {}
        self.grads: dict[nn.Module, torch.Tensor] = {}
        self.probes: dict[nn.Module, torch.Tensor] = {}
        self.handles = [m.register_forward_hook(self._hook) for m in modules]

    def _hook(self, mod, inp, out):
        self.inputs[mod] = inp[0].detach()
        if self.probe:
            p = torch.zeros_like(out, requires_grad=True)
            self.probes[mod] = p
            return out + p
        out.register_hook(lambda g, mod=mod: self.grads.__setitem__(mod, g.detach()))
        return None

    def close(self) -> None:
        for h in self.handles:
            h.remove()


class FrozenBatchNorm:
    """BatchNorm2d with the pass's statistics detached: every sample's loss depends on its own
    input only, so one backward of the summed loss gives each sample's own gradient."""

    def __init__(self, model: nn.Module):
        self.bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]

    def __enter__(self):
        for bn in self.bns:
            bn.forward = self._make_forward(bn)  # type: ignore[method-assign]
        return self

    @staticmethod
    def _make_forward(bn: nn.BatchNorm2d):
        def forward(x: torch.Tensor) -> torch.Tensor:
            mean = x.detach().mean(dim=(0, 2, 3))  # (ch,)
            var = x.detach().var(dim=(0, 2, 3), unbiased=False)
            return F.batch_norm(x, mean, var, bn.weight, bn.bias, training=False, eps=bn.eps)

        return forward

    def __exit__(self, *exc):
        for bn in self.bns:
            del bn.forward


def compute_sample_grads(targets: list[Target], cap: SampleCapture, scale: float) -> torch.Tensor:
    """(N, k): each sample's gradient at each target, from one captured forward and backward.

    `scale` undoes the loss's reduction (B for a mean over B samples, 1 for a sum)."""
    cols = []
    for t in targets:
        m = t.module
        g = cap.grads[m] * scale
        n = g.shape[0]
        if isinstance(m, nn.BatchNorm2d):
            x = cap.inputs[m]  # (N, ch, H, W); the statistics are those the forward used
            if t.kind == "bias":
                cols.append(g[:, t.offset].sum((1, 2)))
                continue
            xc = x[:, t.offset]
            xhat = (xc - xc.mean()) * torch.rsqrt(xc.var(unbiased=False) + m.eps)  # (N, H, W)
            cols.append((g[:, t.offset] * xhat).sum((1, 2)))
        else:
            view = Capture(set())  # no hooks: the captured input and the rescaled output gradient
            view.inputs, view.grads = {m: cap.inputs[m]}, {m: g}
            # Conv and linear targets read only the capture; BatchNorm ones are handled above.
            cols.append(compute_target_grad(t, view, {}, cast(Any, None), n))  # one group per sample
    return torch.stack(cols, dim=1)  # (N, k)


def compute_pool(z: torch.Tensor, pool_size: int, per_coordinate: int) -> torch.Tensor:
    """Indices (into z's rows) of the samples worth combining; empty when some coordinate has no
    sample moving it the right way, since then no subset's mean can be predicted to pass.

    z: (N, k), per-sample predicted oriented change less the margin, in per-coordinate units."""
    if pool_size <= 0 or not bool((z > 0).any(dim=0).all()):
        return torch.empty(0, dtype=torch.long)
    alignment = z.clamp(max=1.0).sum(dim=1)  # (N,): a sample good at one coordinate does not dominate
    helpful = (z > 0).any(dim=1)
    alignment = torch.where(helpful, alignment, torch.full_like(alignment, -math.inf))
    top = alignment.topk(min(pool_size, int(helpful.sum()))).indices
    t = min(per_coordinate, max(1, pool_size // z.shape[1]), z.shape[0])  # at most 2 * pool_size in all
    best = z.topk(t, dim=0)  # (t, k) each coordinate's best samples
    return torch.unique(torch.cat([top, best.indices[best.values > 0]]))


def compute_best_subsets(z: torch.Tensor, s: int, beam: int, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Beam search for S-subsets of z's rows maximising min_j sum_{n in P} z[n, j].

    Returns up to `limit` subsets (limit, S) sorted by score, best first, and their scores."""
    m = z.shape[0]
    sets = torch.arange(m)[:, None]  # (W, level)
    sums = z.clone()  # (W, k)
    for level in range(1, s):
        score = (sums[:, None, :] + z[None, :, :]).amin(dim=2)  # (W, M): the set extended by each sample
        member = torch.zeros(score.shape, dtype=torch.bool).scatter_(1, sets, True)  # (W, M)
        if level == 1:
            member |= torch.arange(m)[None, :] <= sets  # pairs once each: all of them are scored
        score[member] = -math.inf
        valid = int((score > -math.inf).sum())  # extensions by a sample not yet in the set
        keep = min(beam if level < s - 1 else limit, valid)
        if keep == 0:
            return torch.empty(0, s, dtype=torch.long), torch.empty(0)
        # Several partial subsets reach the same set; take extra and drop repeats.
        flat = score.flatten().topk(min(4 * keep, valid))
        rows, cols = flat.indices // m, flat.indices % m
        cand = torch.cat([sets[rows], cols[:, None]], dim=1).sort(dim=1).values  # (4W, level+1)
        sets = _unique_rows(cand, m)[:keep]
        sums = z[sets].sum(dim=1)
    order = sums.min(dim=1).values.sort(descending=True)
    return sets[order.indices][:limit], order.values[:limit]


def _unique_rows(rows: torch.Tensor, base: int) -> torch.Tensor:
    """Distinct rows of values in [0, base), in the order of their first occurrence."""
    if base ** rows.shape[1] < 2**62:  # one int64 key per row: a 1-D unique is far faster
        key = (rows * base ** torch.arange(rows.shape[1])).sum(dim=1)
        _, inverse = torch.unique(key, return_inverse=True)
    else:
        _, inverse = torch.unique(rows, dim=0, return_inverse=True)
    pos = torch.arange(rows.shape[0])
    first = torch.full((int(inverse.max()) + 1,), rows.shape[0], dtype=torch.long)
    first = first.scatter_reduce(0, inverse, pos, "amin")
    return rows[first.sort().values]


class GuidedSearcher:
    """Per-sample estimates choose P; batched exact pass, then plain steps; training each round."""

    def __init__(self, task: Task, model: nn.Module, reqs: list[Requirement], gen: torch.Generator,
                 device: torch.device, cfg: GuidedConfig = GuidedConfig(), log: SegmentLog | None = None,
                 floor: int | None = None, redraw: int = 0):
        if cfg.setup not in ("fused", "separate"):
            raise ValueError(f"unknown set-up {cfg.setup!r}: fused or separate")
        self.task, self.model, self.reqs, self.gen, self.device, self.cfg = task, model, reqs, gen, device, cfg
        s, bounds = task.config.batch_size, SegmentBounds.for_task(task)
        largest = min(bounds.train_size, bounds.max_step_batch)  # a step the verifier would replay
        j = cfg.train_j if cfg.train_j is not None else int(math.floor(math.log(largest / s, 4)))
        if j < 0 or s * 4**j > largest:
            raise ValueError(f"training batch 4^{j} * {s} is not a segment step of {task.name}: at most "
                             f"{bounds.max_step_batch} samples, of {bounds.train_size} training samples")
        self.train_batch = s * 4**j
        self.train_lr = compute_step_lr(task.config, self.train_batch)  # lr * 2^j, as process_step takes it
        # Chain-bound blocks carry at most max_steps segment steps; paper blocks carry none.
        self.max_steps = bounds.max_steps if task.config.rules == RuleSet.CHAIN_BOUND.value else None
        if log is not None:
            self.max_steps = log.max_steps
        self.test_x, self.test_y = task.test_x.to(device), task.test_y.to(device)
        self.targets = locate_targets(model, reqs)
        self.sign = compute_orientation(reqs).float()  # (k,)
        self.located = compute_required_index_tensor(model, reqs)
        self.exact = BatchedSearch(task, model, reqs, cfg.candidates)
        # Each training step's indices (ascending), in order. A miner's log is shared, not copied: its
        # earlier steps are already in the model, and a proof's segment must carry them too.
        self.segment: list[SegmentStep] = log.steps if log is not None else []
        self.log = log
        self.floor = floor  # chain-bound: the tip's count, which the count after must keep (robustly)
        self.redraw = redraw  # the redraw index j of R, carried by the proof
        self.attempts = 0  # exact checks, batched or plain
        self.guided_attempts = 0  # of which chosen by the predictor
        self.rounds = 0
        self.fallback_rounds = 0  # rounds whose pool was empty: random candidates only
        self.times = RoundTimes()

    # ── set-up ──

    def _draw(self, size: int) -> torch.Tensor:
        return torch.randperm(self.task.train_size, generator=self.gen)[:size].sort().values  # (size,)

    def _capture_modules(self) -> set[nn.Module]:
        return {t.module for t in self.targets}

    def setup_separate(self, idx: torch.Tensor) -> torch.Tensor:
        """(N, k) per-sample gradients at W with frozen pass statistics; W is not changed."""
        out = []
        self.model.train()
        for lo in range(0, idx.numel(), self.cfg.setup_chunk):
            x, y = self.task.batch(idx[lo : lo + self.cfg.setup_chunk].tolist(), self.device)
            cap = SampleCapture(self._capture_modules(), probe=True)
            try:
                with FrozenBatchNorm(self.model):
                    loss = F.cross_entropy(self.model(x), y, reduction="sum")  # each sample's own loss
                mods = list(cap.probes)
                cap.grads = dict(zip(mods, torch.autograd.grad(loss, [cap.probes[m] for m in mods])))
                out.append(compute_sample_grads(self.targets, cap, 1.0))
            finally:
                cap.close()
        return torch.cat(out)  # (N, k)

    def segment_steps(self) -> list[tuple[int, SegmentStep]]:
        """The segment since the searcher started, each step with its j (B = 4^j * S, lr * 2^j).
        The proof's segment is `tuple(self.segment)`; its W is the start advanced by it."""
        return [(compute_batch_exponent(self.task.config, len(step)), step) for step in self.segment]

    def has_segment_room(self) -> bool:
        return self.max_steps is None or len(self.segment) < self.max_steps

    def train_step(self, idx: torch.Tensor, capture: bool, keep: bool = True) -> torch.Tensor:
        """One segment step: pol_core's process_step on B ascending indices (lr * 2^j). With
        `capture`, also each sample's contribution to the step's gradient at the targets, at the W it
        starts from: (B, k), or (0, k) without capture. keep=False undoes the step (a full segment)
        and records nothing."""
        x, y = self.task.batch(idx.tolist(), self.device)  # (B, ...), (B,)
        undo = None if keep else copy_state(self.model)
        cap = SampleCapture(self._capture_modules(), probe=False) if capture else None
        try:
            process_step(self.model, x, y, self.task.config)
        finally:
            if cap is not None:
                cap.close()
        if undo is not None:
            self.model.load_state_dict(undo)
        else:
            self.segment.append(tuple(SampleIndex(int(i)) for i in idx))
        if cap is None:
            return torch.empty(0, len(self.targets))
        return compute_sample_grads(self.targets, cap, float(idx.numel()))  # (B, k)

    # ── choice ──

    def choose(self, grads: torch.Tensor, idx: torch.Tensor, limit: int | None = None) -> list[tuple[SampleIndex, ...]]:
        """Up to `limit` (default: candidates) S-subsets of idx, best predicted first; none when the
        pool is empty."""
        s, cfg = self.task.config.batch_size, self.cfg
        d = -self.task.config.lr * grads.float().cpu() * self.sign  # (N, k) predicted oriented change
        unit = d.pow(2).mean(dim=0).sqrt().clamp(min=1e-30)  # (k,) spread of each coordinate
        z = (d - self.task.config.delta_margin) / unit
        pool = compute_pool(z, cfg.pool_size, cfg.per_coordinate)
        if pool.numel() < s:
            return []
        # No cut at a predicted score of 0: the exact pass is cheap, and at high k a subset predicted
        # slightly short on one coordinate passes far more often than a random one.
        sets, _ = compute_best_subsets(z[pool], s, cfg.beam, limit or cfg.candidates)
        chosen = idx.cpu()[pool[sets]].sort(dim=1).values  # (C', S) training indices, ascending
        return [tuple(SampleIndex(int(i)) for i in row) for row in chosen]

    # ── exact check ──

    def check(self, cands: list[tuple[SampleIndex, ...]], before: dict) -> Found | None:
        """Batched exact pass from W = `before`, then plain steps with the full margin."""
        cfg = self.task.config
        self.model.load_state_dict(before)
        flat = [i for c in cands for i in c]
        oriented = self.exact.oriented_deltas(*self.task.batch(flat, self.device))  # (C, k), W unchanged
        self.attempts += len(cands)
        # The batched pass sums in another order than the plain step: pass on a looser bound, then
        # re-run each survivor as the fp32 step the verifier runs.
        passing = torch.nonzero((oriented > cfg.delta_margin * 0.5).all(dim=1)).flatten().tolist()
        order = sorted(passing, key=lambda c: -float(oriented[c].min()))
        before_count = None  # the same W for every candidate: count its test answers once
        for c in order:
            self.model.load_state_dict(before)
            if before_count is None:
                before_count = self._robust_count()
            w0 = read_required(self.located)
            process_step(self.model, *self.task.batch(cands[c], self.device), cfg)  # the S-step the verifier runs
            actual = (read_required(self.located).double() - w0.double()) * self.sign.double()
            if bool((actual > cfg.delta_margin).all()):
                after_count = self._robust_count()
                # Chain-bound: the tip never loses accuracy, so W' must also keep the tip's count.
                if is_robustly_improved(before_count, after_count) and (self.floor is None
                                                                        or after_count.worst >= self.floor):
                    state = {k: v.to("cpu") for k, v in before.items()}
                    return Found(cands[c], state, self.attempts, before_count.correct, after_count.correct)
        return None

    def _robust_count(self) -> RobustCount:
        cfg = self.task.config
        return compute_robust_count(self.model, self.test_x, self.test_y, cfg.eval_batch, cfg.logit_margin)

    def _fill(self, cands: list[tuple[SampleIndex, ...]]) -> list[tuple[SampleIndex, ...]]:
        """Random S-subsets after the predicted ones, up to the batched pass's size."""
        s, seen = self.task.config.batch_size, set(cands)
        out = list(cands)
        while len(out) < self.cfg.candidates:
            c = tuple(SampleIndex(int(i)) for i in self._draw(s))
            if c not in seen:
                seen.add(c)
                out.append(c)
        return out

    # ── one round ──

    def round(self) -> Found | None:
        self.rounds += 1
        before = copy_state(self.model)
        room = self.has_segment_room()
        trained = None
        t0 = time.perf_counter()
        if self.cfg.setup == "fused":
            idx = self._draw(self.train_batch)
            grads = self.train_step(idx, capture=True, keep=room)  # with room, the model has trained now
            trained = copy_state(self.model) if room else None
        else:
            idx = self._draw(self.cfg.setup_size or self.task.train_size)
            grads = self.setup_separate(idx)
        t1 = time.perf_counter()
        predicted = self.choose(grads, idx)
        self.guided_attempts += len(predicted)
        if not predicted:
            self.fallback_rounds += 1
        t2 = time.perf_counter()
        found = self.check(self._fill(predicted), before)
        t3 = time.perf_counter()
        self.times.setup += t1 - t0
        self.times.search += t2 - t1
        self.times.check += t3 - t2
        if found is not None:
            if trained is not None:
                self.segment.pop()  # the proof's W is the state before this round's step
            if self.log is not None:  # chain-bound: the proof names W by its segment, under R's redraw index
                return replace(found, segment=tuple(self.segment), redraw=self.redraw)
            return found
        self.model.load_state_dict(trained if trained is not None else before)
        if self.cfg.setup == "separate" and room:
            self.train_step(self._draw(self.train_batch), capture=False)
        self.times.train += time.perf_counter() - t3
        return None
