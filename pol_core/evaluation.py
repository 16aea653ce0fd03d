"""The evaluation seam of a verdict: who computes accuracy(W, E), and which counts the rules already know.

compute_verdict asks an Evaluator for the correct counts of W' and W. The default runs today's serial
code on the calling thread. verifier_service.evaluation supplies evaluators that shard the test set across processes or a
Ray cluster and return the same integers, bit for bit: each eval batch is computed the same way
wherever it runs, and counts are sums over samples.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

from .step import compute_correct
from .tasks import Task
from .types import CorrectCount, Hash32
from .weights import StateDict


class Evaluator(Protocol):
    def __call__(self, task: Task, states: Sequence[StateDict]) -> list[CorrectCount]:
        """accuracy(state, E) for each state, in order, exactly as compute_correct counts it."""
        ...


def evaluate_serial(task: Task, states: Sequence[StateDict]) -> list[CorrectCount]:
    """The reference evaluator: compute_correct on this thread's scratch model, one state after another."""
    out = []
    for state in states:
        model = task.scratch_model(state)
        out.append(CorrectCount(compute_correct(model, task.test_x, task.test_y, task.config.eval_batch)))
    return out


@dataclass(frozen=True)
class KnownCount:
    """A correct count the rules already vouch for: the parent's canonical W' (by hash) and its correctAfter."""

    weights_hash: Hash32
    correct: CorrectCount


def get_known_correct(known: KnownCount | None, weights_hash: Hash32) -> CorrectCount | None:
    """The vouched-for count of the weights named `weights_hash`, or None where it must be evaluated."""
    # Only the very weights the count was computed for: equal hashes mean equal bytes, so equal counts.
    if known is not None and known.weights_hash == weights_hash:
        return known.correct
    return None
