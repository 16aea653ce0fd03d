"""Checks between a header and its parent: chain position, the accuracy rule, the sabotage guard."""
from __future__ import annotations

from .header import Header
from .types import AccuracyNotImproved, CorrectCount, InvalidHeader, SabotageDetected


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


def process_chain_position(parent_hash: bytes, parent: Header, header: Header) -> None:
    # A block extends exactly one parent, named by hash.
    if header.parent != parent_hash:
        raise InvalidHeader(f"parent 0x{header.parent.hex()} is not 0x{parent_hash.hex()}")
    # Heights grow by one, so a header hash can never repeat along a chain.
    if header.height != parent.height + 1:
        raise InvalidHeader(f"height {header.height} does not follow parent height {parent.height}")
    # Everything in the chain is about one task.
    if header.task_spec_hash != parent.task_spec_hash:
        raise InvalidHeader("task spec hash differs from the parent's")
