"""Drift: each block leaves the tip a little worse, inside the paper's sabotage tolerance.

The attacker trains the parent's W' on single-class batches (legitimate training-set samples, badly chosen)
until it has lost a few answers, then finds a DGG step that wins back fewer than it lost. Under the paper
rules the block passes (W is within the tolerance, the step improves); repeated, the chain's model sinks.
Under chain-bound rules the same training is a valid segment, so only the monotone tip stops it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from pol_core.chainbound import SegmentProof
from pol_core.segment import Segment
from pol_core.verify import Proof

from .scenario import Scenario, State, count, find_step, train


@dataclass
class DriftAttack:
    paper: Proof
    chain_bound: SegmentProof
    degraded: State  # W: the parent's W' after the class-biased steps
    degraded_correct: int
    paper_after: int  # correctAfter of the paper block (< parent's)
    cb_after: int


def degrade(sc: Scenario, gen: torch.Generator, lose_at_least: int, lose_at_most: int,
            max_steps: int = 60) -> tuple[Segment, State, int]:
    """Class-biased training steps from the parent's W' until it has lost between the two bounds."""
    task = sc.chain_bound
    labels = task.train_y
    state, steps = sc.parent_state, []
    correct = sc.parent_correct
    for n in range(max_steps):
        cls = int(torch.randint(10, (1,), generator=gen))
        pool = (labels == cls).nonzero().flatten()
        step = tuple(sorted(int(i) for i in pool[torch.randperm(len(pool), generator=gen)[: 4 * task.config.batch_size]]))
        nxt = train(task, state, [step])
        c = count(task, nxt)
        if c < sc.parent_correct - lose_at_most:
            continue  # overshot the tolerance: drop this step, try another class
        state, correct = nxt, c
        steps.append(step)
        if c <= sc.parent_correct - lose_at_least:
            return tuple(steps), state, correct
    raise RuntimeError("could not degrade the model inside the tolerance")


def drift(sc: Scenario, gen: torch.Generator) -> DriftAttack:
    tol = sc.paper.config.sabotage_tolerance
    segment, w, w_correct = degrade(sc, gen, lose_at_least=2, lose_at_most=tol)

    def regresses(before: int, after: int) -> bool:
        return before < after < sc.parent_correct  # improves (Algorithm 2), still below the parent

    p_paper, _, paper_after = find_step(sc.paper, w, sc.paper_requirements(), gen, regresses)
    p_cb, _, cb_after = find_step(sc.chain_bound, w, sc.cb_requirements(), gen, regresses)
    return DriftAttack(sc.paper_proof(w, p_paper), sc.cb_proof(segment, p_cb), w, w_correct, paper_after, cb_after)
