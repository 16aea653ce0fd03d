"""Chain-bound training segments: the steps a miner took since the parent, their canonical encoding and
root, their bounds, and their replay from the parent's canonical W'.

A segment is a tuple of steps; a step is a strictly ascending tuple of B = 4^j * S training-set indices,
trained as one plain SGD step (the task's update) at learning rate lr * 2^j.

Encoding (docs/PROTOCOL.md, "Segments"): for each step in order, u32be(B) || u32be(i_0) || ... ||
u32be(i_{B-1}); the empty segment encodes as no bytes. segmentRoot = keccak256(encoding), so the empty
segment's root is keccak256(b"") and never the zero word (zero means "no segment": paper rules).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch
from torch import nn

from .keccak import keccak256
from .step import is_step_batch_size, process_step
from .types import ConsensusError, Hash32, InvalidSegment, SampleIndex

if TYPE_CHECKING:
    from .tasks.spec import Task

SegmentStep = tuple[SampleIndex, ...]
Segment = tuple[SegmentStep, ...]
EMPTY_SEGMENT: Segment = ()
UINT32_MAX = (1 << 32) - 1


@dataclass(frozen=True)
class SegmentBounds:
    """Everything a segment is checked against; fixed by the task (hence by its spec hash)."""

    batch_size: int  # S
    max_steps: int
    max_step_batch: int  # 4^j * S
    train_size: int

    @staticmethod
    def for_task(task: "Task") -> "SegmentBounds":
        c = task.config
        return SegmentBounds(c.batch_size, c.max_segment_steps, c.max_step_batch, int(get_segment_data(task)[1].shape[0]))


def compute_segment_encoding(segment: Sequence[Sequence[int]]) -> bytes:
    out = bytearray()
    for step in segment:
        out += len(step).to_bytes(4, "big")
        for i in step:
            out += int(i).to_bytes(4, "big")
    return bytes(out)


def compute_segment_root(segment: Sequence[Sequence[int]]) -> Hash32:
    return keccak256(compute_segment_encoding(segment))


def decode_segment(data: bytes) -> Segment:
    """The inverse of compute_segment_encoding; refuses truncated or trailing bytes."""
    steps: list[SegmentStep] = []
    pos = 0
    while pos < len(data):
        # Every step starts with its 4-byte length.
        if pos + 4 > len(data):
            raise InvalidSegment(f"truncated step length at byte {pos}")
        b = int.from_bytes(data[pos : pos + 4], "big")
        pos += 4
        # The step's indices must all be present.
        if pos + 4 * b > len(data):
            raise InvalidSegment(f"step {len(steps)} declares {b} indices but the encoding ends first")
        steps.append(tuple(SampleIndex(int.from_bytes(data[p : p + 4], "big")) for p in range(pos, pos + 4 * b, 4)))
        pos += 4 * b
    return tuple(steps)


def process_ascending_check(indices: Sequence[int], what: str,
                            error: type[ConsensusError] = InvalidSegment) -> None:
    # Canonical order: a permutation of the same batch is not a second, free variant of the block.
    for pos in range(1, len(indices)):
        if int(indices[pos]) <= int(indices[pos - 1]):
            raise error(f"{what} is not strictly ascending at position {pos} ({indices[pos - 1]} then {indices[pos]})")


def process_segment_check(segment: Sequence[Sequence[int]], bounds: SegmentBounds) -> None:
    """Raise InvalidSegment unless every bound holds; costs no forward pass."""
    # Replay cost is bounded at genesis: a verifier never trains more than max_steps steps per proof.
    if len(segment) > bounds.max_steps:
        raise InvalidSegment(f"segment has {len(segment)} steps; at most {bounds.max_steps}")
    for n, step in enumerate(segment):
        b = len(step)
        # Each step is one batch of 4^j * S samples, the only sizes with a defined learning rate.
        if not is_step_batch_size(b, bounds.batch_size):
            raise InvalidSegment(f"step {n} has {b} samples, not 4^j * S (S = {bounds.batch_size})")
        # ... and no larger than the genesis bound.
        if b > bounds.max_step_batch:
            raise InvalidSegment(f"step {n} has {b} samples; at most {bounds.max_step_batch}")
        # Segment steps train on the training set only: never the public test set E.
        bad = next((int(i) for i in step if not 0 <= int(i) < bounds.train_size), None)
        if bad is not None:
            raise InvalidSegment(f"step {n}: index {bad} is outside the training set [0, {bounds.train_size})")
        process_ascending_check(step, f"step {n}")


def get_segment_data(task: "Task") -> tuple[torch.Tensor, torch.Tensor]:
    """The samples segment steps index: the training set (never E)."""
    return task.train_x, task.train_y


def process_segment_replay(task: "Task", model: nn.Module, segment: Segment) -> None:
    """Advance `model` (loaded with the parent's W') through every step, in place: W = replay(W', segment).
    Each step is the protocol's one update rule (process_step: B = 4^j * S at lr * 2^j).
    The caller checks the segment first (process_segment_check)."""
    x_all, y_all = get_segment_data(task)
    for step in segment:
        idx = torch.tensor([int(i) for i in step], dtype=torch.long)
        process_step(model, x_all[idx], y_all[idx], task.config)  # x: (B, C, H, W), y: (B,)
