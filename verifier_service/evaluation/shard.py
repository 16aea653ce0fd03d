"""What one worker computes: robust counts of a model on a range of eval batches, and the plan of shards.

A shard starts on a multiple of the task's eval_batch, and compute_robust_count cuts it into eval
batches from its start, so every worker runs exactly the batches (same inputs, same shapes) the serial
loop runs over the whole test set. Counts are per-sample sums, so the shards' counts add up to the
serial counts exactly.
"""
from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass
from typing import Callable, Mapping

import torch
from torch import nn

from pol_core.step import RobustCount, compute_logits, compute_robust_count

CANARY_IMAGES = 16


@dataclass(frozen=True)
class ShardKey:
    slot: int  # which of the proof's states
    start: int
    stop: int


def compute_shards(n: int, eval_batch: int, batches_per_shard: int = 1) -> list[tuple[int, int]]:
    """[start, stop) ranges covering n samples, each starting on an eval_batch boundary."""
    # A shard that starts elsewhere would run other batch shapes than the serial code.
    if eval_batch < 1 or batches_per_shard < 1:
        raise ValueError(f"eval_batch and batches_per_shard must be positive, got {eval_batch}, {batches_per_shard}")
    step = eval_batch * batches_per_shard
    return [(a, min(a + step, n)) for a in range(0, n, step)]


def sum_counts(counts: list[RobustCount]) -> RobustCount:
    return RobustCount(
        correct=sum(c.correct for c in counts),
        fragile_correct=sum(c.fragile_correct for c in counts),
        fragile_wrong=sum(c.fragile_wrong for c in counts),
    )


def builder_path(build: Callable[[], nn.Module]) -> str:
    """'module:qualname' of a task's model constructor, so a worker can build the same architecture."""
    path = f"{build.__module__}:{build.__qualname__}"
    # A lambda or a local function cannot be found again by name in another process.
    if "<" in path:
        raise ValueError(f"model constructor {path} is not importable; shard workers need a module-level function")
    return path


def load_builder(path: str) -> Callable[[], nn.Module]:
    module, _, qualname = path.partition(":")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj  # type: ignore[return-value]


@torch.no_grad()
def compute_canary(model: nn.Module, x: torch.Tensor, eval_batch: int) -> str:
    """sha256 of the logits of the first few test images: workers whose kernels differ disagree here."""
    logits = compute_logits(model, x[: min(CANARY_IMAGES, eval_batch)], eval_batch)
    return hashlib.sha256(logits.contiguous().numpy().tobytes()).hexdigest()


def describe_settings() -> dict[str, object]:
    """The settings this process computes with; a worker must match the verifier's."""
    from pol_core.portable import DispatchNotPinned, get_dispatch_report

    try:
        dispatch = get_dispatch_report().describe()
    except DispatchNotPinned as e:  # no MKL to ask: a worker could never pin, so it never matches
        dispatch = f"unknown: {e}"
    return {
        "torch": torch.__version__,
        "capability": torch.backends.cpu.get_cpu_capability(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "threads": torch.get_num_threads(),
        "dispatch": dispatch,  # pol_core.portable's switches: ATen level, MKL branch, oneDNN, NNPACK, threads
    }


def check_settings(worker: Mapping[str, object], here: Mapping[str, object]) -> str | None:
    """Why a worker's settings are unacceptable, or None."""
    # More than one thread may split reductions differently between runs and machines.
    if worker.get("threads") != 1:
        return f"runs {worker.get('threads')} threads, not 1"
    # Nondeterministic kernels give no guarantee of repeatable bits.
    if worker.get("deterministic") is not True:
        return "does not run in deterministic mode"
    # Another torch, another CPU kernel level or another dispatch switch computes other bits (a
    # verifier that is not pinned, for one, disagrees with its pinned workers here).
    for k in ("torch", "capability", "dispatch"):
        if worker.get(k) != here.get(k):
            return f"has {k} {worker.get(k)!r}, this process {here.get(k)!r}"
    return None


class ShardRunner:
    """One worker's evaluation state: the test set, one model per slot, and which weights each holds."""

    def __init__(self, build: Callable[[], nn.Module], test_x: torch.Tensor, test_y: torch.Tensor,
                 eval_batch: int, logit_margin: float):
        self.build = build
        self.test_x = test_x  # (N, C, H, W) float32, normalised exactly as the task does
        self.test_y = test_y  # (N,) int64
        self.eval_batch = eval_batch
        self.logit_margin = logit_margin
        self.models: dict[int, nn.Module] = {}
        self.generation: dict[int, int] = {}

    def load(self, slot: int, generation: int, state: Mapping[str, torch.Tensor]) -> None:
        """Copy `state` into this worker's own model for `slot` (the source buffer may be reused after)."""
        model = self.models.get(slot)
        if model is None:
            model = self.models[slot] = self.build()
        model.load_state_dict(state, strict=True)
        self.generation[slot] = generation

    def has(self, slot: int, generation: int) -> bool:
        return self.generation.get(slot) == generation

    def count(self, slot: int, start: int, stop: int) -> RobustCount:
        # A range off the batch grid, or outside the test set, would not be one of the serial batches.
        n = self.test_x.shape[0]
        if start % self.eval_batch or not 0 <= start < stop <= n or (stop - start) % self.eval_batch and stop != n:
            raise ValueError(f"shard [{start}, {stop}) is not on the eval_batch={self.eval_batch} grid of the test set")
        return compute_robust_count(self.models[slot], self.test_x[start:stop], self.test_y[start:stop],
                                    self.eval_batch, self.logit_margin)

    def canary(self, slot: int) -> str:
        return compute_canary(self.models[slot], self.test_x, self.eval_batch)
