"""The buffer knob: BatchNorm running statistics set the eval-mode counts but not the train-mode step.

The attacker takes a batch P whose honest step meets R but does not improve accuracy (a block Algorithm 2
refuses), then scales W's running variances until the counts say it does: R is still met, because the
train-mode step never reads the running statistics. num_batches_tracked is a further 64 free bits. Under the
paper rules the block passes. Under chain-bound rules the buffers are the replay's, so the honest counts stand.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from pol_core.chainbound import SegmentProof
from pol_core.segment import EMPTY_SEGMENT
from pol_core.tasks import Task
from pol_core.types import Requirement
from pol_core.verify import Proof

from .scenario import Scenario, State, count, find_step, meets

SCALES = [1.0 + d for d in (0.02, -0.02, 0.05, -0.05, 0.1, -0.1, 0.2, -0.2, 0.35, -0.35, 0.5, -0.5, 1.0, 2.0, 4.0)]


@dataclass
class KnobAttack:
    paper: Proof
    chain_bound: SegmentProof
    paper_state: State  # W with knobbed buffers (paper R)
    cb_state: State  # the knobbed W the attacker would need (chain-bound R)
    honest: tuple[int, int]  # (before, after) of the chain-bound P without the knob


def knob_buffers(state: State, layer: str, scale: float, shift: torch.Tensor | None = None) -> State:
    out = {n: t.clone() for n, t in state.items()}
    out[f"{layer}.running_var"] *= scale
    if shift is not None:
        out[f"{layer}.running_mean"] += shift
    out[f"{layer}.num_batches_tracked"] += 123_456_789  # free bytes: no effect on any count
    return out


def knob_settings(parent: State, gen: torch.Generator, shifts: int = 24):
    """Variance scales per BatchNorm layer, then small random shifts of the running means."""
    layers = sorted({n.rsplit(".", 1)[0] for n in parent if n.endswith("running_var")})
    for layer in layers:
        for scale in SCALES:
            yield layer, scale, None
    for _ in range(shifts):
        for layer in layers:
            width = parent[f"{layer}.running_mean"].shape[0]
            yield layer, 1.0, 0.05 * torch.randn(width, generator=gen)


def turn_knob(task: Task, parent: State, p: tuple[int, ...], reqs: list[Requirement],
              accept: Callable[[int, int], bool], gen: torch.Generator) -> State:
    for layer, scale, shift in knob_settings(parent, gen):
        w = knob_buffers(parent, layer, scale, shift)
        after = meets(task, w, p, reqs)
        # The train-mode step never reads the running statistics, so R stays met.
        if after is None:
            raise AssertionError("the running statistics changed the train-mode step")
        if accept(count(task, w), count(task, after)):
            return w
    raise RuntimeError("no knob setting made the block pass")


def buffer_knob(sc: Scenario, gen: torch.Generator) -> KnobAttack:
    tol = sc.paper.config.sabotage_tolerance

    def unchanged(before: int, after: int) -> bool:
        return after == before  # Algorithm 2 refuses the honest step: no gain

    p_paper, _, _ = find_step(sc.paper, sc.parent_state, sc.paper_requirements(), gen, unchanged)
    paper_w = turn_knob(sc.paper, sc.parent_state, p_paper, sc.paper_requirements(),
                        lambda b, a: a > b and b + tol >= sc.parent_correct, gen)
    p_cb, b_cb, a_cb = find_step(sc.chain_bound, sc.parent_state, sc.cb_requirements(), gen, unchanged)
    cb_w = turn_knob(sc.chain_bound, sc.parent_state, p_cb, sc.cb_requirements(),
                     lambda b, a: a > b and a >= sc.parent_correct, gen)
    # The chain-bound proof cannot carry buffers: the segment is empty and W is the parent's W'.
    return KnobAttack(sc.paper_proof(paper_w, p_paper), sc.cb_proof(EMPTY_SEGMENT, p_cb), paper_w, cb_w, (b_cb, a_cb))
