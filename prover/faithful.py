"""Faithful mode: exactly the paper's Algorithm 1. Every attempt is a real SGD step that is kept."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from pol_core.requirements import compute_orientation
from pol_core.step import compute_robust_count, is_robustly_improved, process_step
from pol_core.tasks import Task
from pol_core.types import Requirement, SampleIndex


@dataclass
class Found:
    """A proof: P and the state of W before the step that met R."""

    indices: tuple[SampleIndex, ...]
    state: dict[str, torch.Tensor]  # W, on CPU
    attempts: int
    correct_before: int
    correct_after: int


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


def is_robust_proof(task: Task, model: nn.Module, before_state: dict, device) -> tuple[bool, int, int]:
    """The accuracy rule with the task's logit margin, on the prover's device."""
    x, y = task.test_x.to(device), task.test_y.to(device)
    after = compute_robust_count(model, x, y, task.config.eval_batch, task.config.logit_margin)
    after_state = copy_state(model)
    model.load_state_dict(before_state)
    before = compute_robust_count(model, x, y, task.config.eval_batch, task.config.logit_margin)
    model.load_state_dict(after_state)
    return is_robustly_improved(before, after), before.correct, after.correct


def mine_faithful(
    task: Task,
    model: nn.Module,
    reqs: list[Requirement],
    gen: torch.Generator,
    max_attempts: int,
    device: str | torch.device = "cpu",
    should_stop: Callable[[], bool] = lambda: False,
    on_attempt: Callable[[int], None] = lambda n: None,
) -> Found | None:
    """Run Algorithm 1 on `model` in place; return the proof, or None after `max_attempts`."""
    cfg = task.config
    sign = compute_orientation(reqs)
    located = compute_required_index_tensor(model, reqs)
    for attempt in range(1, max_attempts + 1):
        if should_stop():
            return None
        indices = draw_indices(gen, task.train_size, cfg.batch_size)
        x, y = task.batch(indices, device)  # (S, C, H, W), (S,)
        before_state = copy_state(model)
        w_before = read_required(located)
        process_step(model, x, y, cfg)
        oriented = (read_required(located).double() - w_before.double()) * sign  # (k,)
        on_attempt(attempt)
        if bool((oriented > cfg.delta_margin).all()):
            ok, cb, ca = is_robust_proof(task, model, before_state, device)
            if ok:
                state = {k: v.to("cpu") for k, v in before_state.items()}
                return Found(indices, state, attempt, cb, ca)
    return None



