"""The in-process backend: today's serial evaluation behind the same interface as the pools."""
from __future__ import annotations

from typing import Sequence

from pol_core.evaluation import evaluate_serial
from pol_core.step import RobustCount, compute_robust_count
from pol_core.tasks import Task
from pol_core.types import CorrectCount
from pol_core.weights import StateDict


class InProcessEvaluator:
    """Evaluates on the calling thread (`eval_workers = 0`): no processes, no shared memory."""

    def __call__(self, task: Task, states: Sequence[StateDict]) -> list[CorrectCount]:
        return evaluate_serial(task, states)

    def robust_counts(self, task: Task, states: Sequence[StateDict]) -> list[RobustCount]:
        return [compute_robust_count(task.scratch_model(s), task.test_x, task.test_y, task.config.eval_batch,
                                     task.config.logit_margin) for s in states]

    def prepare(self, task: Task, timeout_s: float | None = None) -> None:
        pass

    def close(self) -> None:
        pass
