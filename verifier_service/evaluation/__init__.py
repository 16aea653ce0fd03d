"""Evaluation backends for verdicts: the test set sharded across local processes or a Ray cluster.

Every backend returns the integers the serial code (pol_core.evaluation.evaluate_serial) returns, bit
for bit: shards start on the task's `eval_batch` boundaries, so each worker runs exactly the batches
the serial loop runs, single-threaded with the verifier's settings, and counts are sums over samples.

This module must stay free of torch imports: `python -m verifier_service.evaluation.worker` imports it before the
worker has pinned its CPU dispatch.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Protocol, Sequence

if TYPE_CHECKING:
    from pol_core.step import RobustCount
    from pol_core.tasks import Task
    from pol_core.types import CorrectCount
    from pol_core.weights import StateDict


class EvaluationError(Exception):
    """The evaluation could not be completed; no count was produced (never a partial one)."""


class ShardFailed(EvaluationError):
    """A shard lost its worker too many times in a row."""


class WorkerMismatch(EvaluationError):
    """A worker computes with other settings or other bits than this process; its counts are refused."""


class Backend(Protocol):
    """An Evaluator (pol_core.evaluation) with robust counts and a life cycle."""

    def __call__(self, task: Task, states: Sequence[StateDict]) -> list[CorrectCount]: ...

    def robust_counts(self, task: Task, states: Sequence[StateDict]) -> list[RobustCount]: ...

    def prepare(self, task: Task, timeout_s: float | None = None) -> None:
        """Start and bind the workers now rather than on the first proof."""

    def close(self) -> None:
        """Stop every worker this backend started."""


def default_workers() -> int:
    """One worker per core this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def make_evaluator(workers: int | None = None, ray_address: str | None = None, ray_actors: int | None = None,
                   task: Task | None = None) -> Backend:
    """The evaluator a verifier or an audit uses.

    ray_address: evaluate on that Ray cluster ("local" starts a Ray instance in this process);
    otherwise `workers` local processes (0: in-process, on the calling thread; None: one per core,
    except for a `task` whose whole test set is one eval batch, where there is nothing to shard and
    worker processes would only cost their start-up and memory).
    """
    if ray_address:
        from .ray_backend import RayEvaluator

        return RayEvaluator(ray_address, actors=ray_actors)
    # A negative count is a configuration mistake, not a request for the default.
    if workers is not None and workers < 0:
        raise ValueError(f"eval workers must be >= 0, got {workers}")
    if workers == 0 or workers is None and task is not None and task.test_x.shape[0] <= task.config.eval_batch:
        from .serial import InProcessEvaluator

        return InProcessEvaluator()
    from .pool import LocalPool

    return LocalPool(workers)


__all__ = ["Backend", "EvaluationError", "ShardFailed", "WorkerMismatch", "default_workers", "make_evaluator"]
