"""Test-set training: fit the public test set E, the very set the accuracy rule counts on.

Under the paper rules W is free, so a model trained on E goes straight into a block with an inflated count
(and honest models then look like sabotage by comparison). Under chain-bound rules every step of learning is
a segment step on training-set indices; the attacker's best encoding of E's samples is as indices past the
end of the training set (as if the sets were concatenated), and the segment check refuses them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from pol_core.chainbound import SegmentProof
from pol_core.segment import Segment
from pol_core.tasks import Task
from pol_core.verify import Proof

from .scenario import Scenario, State, count, find_step, sorted_batch, train


@dataclass
class FitTestSetAttack:
    paper: Proof
    chain_bound: SegmentProof
    fitted: State  # W: the parent's W' trained on E
    fitted_correct: int
    segment: Segment  # E's samples as indices train_size + i


def concatenated(task: Task) -> tuple[torch.Tensor, torch.Tensor]:
    """Training set then test set: the data a segment could index if E were allowed."""
    return torch.cat([task.train_x, task.test_x]), torch.cat([task.train_y, task.test_y])


def fit_test_set(sc: Scenario, gen: torch.Generator, gain: int = 8, batch: int = 64, max_steps: int = 30) -> FitTestSetAttack:
    """Train on E until the count has gained `gain` (short of a perfect score, so a DGG step can still
    improve it)."""
    task = sc.chain_bound
    n_train, n_test = task.train_size, int(task.test_y.shape[0])
    target = min(sc.parent_correct + gain, n_test - 2)
    steps: list[tuple[int, ...]] = []
    fitted, fitted_correct = sc.parent_state, sc.parent_correct
    while fitted_correct < target:
        # Guards the loop: E is small, so this many steps always fit it.
        if len(steps) >= max_steps:
            raise RuntimeError("test-set training did not raise the count")
        step = tuple(n_train + i for i in sorted_batch(gen, n_test, batch))
        fitted = train(task, fitted, [step], data=concatenated(task))
        fitted_correct = count(task, fitted)
        steps.append(step)
    segment = tuple(steps)

    def improves(before: int, after: int) -> bool:
        return after > before >= sc.parent_correct

    p_paper, _, _ = find_step(sc.paper, fitted, sc.paper_requirements(), gen, improves)
    p_cb, _, _ = find_step(sc.chain_bound, fitted, sc.cb_requirements(), gen, improves)
    return FitTestSetAttack(sc.paper_proof(fitted, p_paper), sc.cb_proof(segment, p_cb), fitted, fitted_correct, segment)
