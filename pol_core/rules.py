"""Checks between a block and its parent: chain position, one task, the accuracy rule, the sabotage guard."""
from __future__ import annotations

from .header import Header
from .types import (
    AccuracyNotImproved,
    CorrectCount,
    Hash32,
    Height,
    HeightNotNext,
    InvalidHeader,
    ParentNotTip,
    SabotageDetected,
)


def is_accuracy_improved(correct_before: CorrectCount, correct_after: CorrectCount) -> bool:
    """Algorithm 2: accuracy(W', E) > accuracy(W, E), on integer counts."""
    return correct_after > correct_before


def is_within_sabotage_guard(
    parent_correct_after: CorrectCount, correct_before: CorrectCount, tolerance: int
) -> bool:
    """W may be at most `tolerance` correct answers worse than the parent's W'."""
    return correct_before + tolerance >= parent_correct_after


def process_accuracy_rules(parent: Header, header: Header, tolerance: int) -> None:
    # The verified step must improve test accuracy, or it is not useful work (Algorithm 2).
    if not is_accuracy_improved(header.correct_before, header.correct_after):
        raise AccuracyNotImproved(
            f"correct after {header.correct_after} must exceed correct before {header.correct_before}"
        )
    # A miner must not sabotage W and then 'improve' it trivially.
    if not is_within_sabotage_guard(parent.correct_after, header.correct_before, tolerance):
        raise SabotageDetected(
            f"W scores {header.correct_before}, more than {tolerance} below the parent's {parent.correct_after}"
        )


def process_chain_position(parent_hash: Hash32, parent_height: Height, claimed_parent: Hash32, claimed_height: Height) -> None:
    """The one position check: a proof must extend the block it is verified against, one higher."""
    # R is derived from the parent hash, so work on any other block proves nothing here.
    if claimed_parent != parent_hash:
        raise ParentNotTip(f"parent 0x{claimed_parent.hex()[:16]} is not the tip 0x{parent_hash.hex()[:16]} "
                           f"(height {parent_height})")
    # Heights grow by one, so a header hash can never repeat along a chain.
    if claimed_height != parent_height + 1:
        raise HeightNotNext(f"height {claimed_height} must be {parent_height + 1}")


def process_same_task(parent: Header, task_spec_hash: Hash32) -> None:
    # Everything in a chain is about one task: a parent of another task is not this chain's block.
    if parent.task_spec_hash != task_spec_hash:
        raise InvalidHeader(f"the parent is a block of task 0x{parent.task_spec_hash.hex()[:16]}, "
                            f"not of 0x{task_spec_hash.hex()[:16]}")
