"""Faithful mode: exactly the paper's Algorithm 1. Every attempt is a real SGD step that is kept.

Under chain-bound rules the kept steps are the block's segment (SegmentLog): each attempt's batch is
sorted (the canonical order), and once the segment is full further attempts are tried and undone.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from pol_core.requirements import compute_orientation
from pol_core.segment import EMPTY_SEGMENT, Segment
from pol_core.step import compute_robust_count, is_robustly_improved, process_step
from pol_core.tasks import Task
from pol_core.types import Requirement, SampleIndex


@dataclass
class Found:
    """A proof: P and the state of W before the step that met R; under chain-bound rules also the
    segment that leads from the tip's W' to W, and the redraw index of R."""

    indices: tuple[SampleIndex, ...]
    state: dict[str, torch.Tensor]  # W, on CPU
    attempts: int
    correct_before: int
    correct_after: int
    segment: Segment = EMPTY_SEGMENT
    redraw: int = 0


class SegmentLog:
    """The training steps a chain-bound miner has kept since it loaded the tip's W': the segment of its
    next proof. Bounded by the task (max_segment_steps steps of at most max_step_batch samples)."""

    def __init__(self, task: Task):
        self.max_steps = task.config.max_segment_steps
        self.max_step_batch = task.config.max_step_batch
        self.steps: list[tuple[SampleIndex, ...]] = []

    def is_full(self) -> bool:
        return len(self.steps) >= self.max_steps

    def record(self, indices: tuple[SampleIndex, ...]) -> None:
        # A step the verifier would refuse makes every later proof of this segment worthless.
        if self.is_full() or len(indices) > self.max_step_batch or list(indices) != sorted(set(indices)):
            raise ValueError(f"step of {len(indices)} samples does not fit the segment")
        self.steps.append(indices)

    def segment(self) -> Segment:
        return tuple(self.steps)

    def reset(self) -> None:
        self.steps.clear()


def draw_indices(gen: torch.Generator, train_size: int, s: int) -> tuple[SampleIndex, ...]:
    """S distinct random indices (Algorithm 1, line 3)."""
    return tuple(SampleIndex(int(i)) for i in torch.randperm(train_size, generator=gen)[:s])


def compute_required_index_tensor(model: nn.Module, reqs: list[Requirement]) -> list[tuple[torch.Tensor, int]]:
    """For each requirement, the parameter tensor it lives in and the flat offset inside it."""
    params: list[torch.Tensor] = list(model.parameters())
    starts, acc = [], 0
    for p in params:
        starts.append(acc)
        acc += p.numel()
    out = []
    for r in reqs:
        idx = r // 2
        j = max(i for i, s in enumerate(starts) if s <= idx)
        out.append((params[j], idx - starts[j]))
    return out


def read_required(located: list[tuple[torch.Tensor, int]]) -> torch.Tensor:
    return torch.stack([p.detach().reshape(-1)[o] for p, o in located]).cpu()  # (k,)


def copy_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of W on the model's own device (the core's get_state copies to the CPU)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def is_robust_proof(task: Task, model: nn.Module, before_state: dict, device,
                    floor: int | None = None) -> tuple[bool, int, int]:
    """The accuracy rule with the task's logit margin, on the prover's device; with `floor` (chain-bound:
    the tip's count) the count after must also stay at or above it, with the same margin."""
    x, y = task.test_x.to(device), task.test_y.to(device)
    after = compute_robust_count(model, x, y, task.config.eval_batch, task.config.logit_margin)
    after_state = copy_state(model)
    model.load_state_dict(before_state)
    before = compute_robust_count(model, x, y, task.config.eval_batch, task.config.logit_margin)
    model.load_state_dict(after_state)
    ok = is_robustly_improved(before, after) and (floor is None or after.worst >= floor)
    return ok, before.correct, after.correct


def mine_faithful(
    task: Task,
    model: nn.Module,
    reqs: list[Requirement],
    gen: torch.Generator,
    max_attempts: int,
    device: str | torch.device = "cpu",
    should_stop: Callable[[], bool] = lambda: False,
    on_attempt: Callable[[int], None] = lambda n: None,
    log: SegmentLog | None = None,
    floor: int | None = None,
    redraw: int = 0,
) -> Found | None:
    """Run Algorithm 1 on `model` in place; return the proof, or None after `max_attempts`. With `log`
    (chain-bound rules) every kept step is recorded in it and the proof carries the segment."""
    cfg = task.config
    sign = compute_orientation(reqs)
    located = compute_required_index_tensor(model, reqs)
    for attempt in range(1, max_attempts + 1):
        if should_stop():
            return None
        indices = draw_indices(gen, task.train_size, cfg.batch_size)
        if log is not None:
            indices = tuple(sorted(indices))  # chain-bound P and segment steps are strictly ascending
        x, y = task.batch(indices, device)  # (S, C, H, W), (S,)
        before_state = copy_state(model)
        w_before = read_required(located)
        process_step(model, x, y, cfg)
        oriented = (read_required(located).double() - w_before.double()) * sign  # (k,)
        on_attempt(attempt)
        if bool((oriented > cfg.delta_margin).all()):
            ok, cb, ca = is_robust_proof(task, model, before_state, device, floor)
            if ok:
                state = {k: v.to("cpu") for k, v in before_state.items()}
                return Found(indices, state, attempt, cb, ca, log.segment() if log else EMPTY_SEGMENT, redraw)
        if log is not None:
            # The step is kept, so it is part of the segment; with the segment full it is undone instead.
            if log.is_full():
                model.load_state_dict(before_state)
            else:
                log.record(indices)
    return None
