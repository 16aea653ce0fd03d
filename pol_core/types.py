"""Typed aliases and the named exceptions every consensus check raises."""
from __future__ import annotations

from typing import NewType

Hash32 = NewType("Hash32", bytes)  # 32 bytes, a keccak256 digest
Address = NewType("Address", bytes)  # 20 bytes, an EVM address
ParamIndex = NewType("ParamIndex", int)  # index of one scalar in the flattened learnable parameters
Requirement = NewType("Requirement", int)  # r in [0, 2|W|): weight r // 2, odd = decrease, even = increase
SampleIndex = NewType("SampleIndex", int)  # index into a task's training set
Difficulty = NewType("Difficulty", int)  # k, the number of requirements
Height = NewType("Height", int)
CorrectCount = NewType("CorrectCount", int)  # correct predictions on the whole test set
RedrawIndex = NewType("RedrawIndex", int)  # j: 0 normally; j >= 1 redraws R once the tip is old enough
Timestamp = NewType("Timestamp", int)  # chain time: seconds since the epoch, as block.timestamp

ZERO_HASH = Hash32(b"\x00" * 32)
ZERO_ADDRESS = Address(b"\x00" * 20)


class ConsensusError(Exception):
    """Root of every rule violation; the verifier maps each subclass to a rejection reason."""

    reason: str = "INVALID"


class InvalidDifficulty(ConsensusError):
    reason = "INVALID_DIFFICULTY"


class InvalidHash(ConsensusError):
    reason = "INVALID_HASH"


class InvalidIndices(ConsensusError):
    reason = "INVALID_INDICES"


class InvalidWeights(ConsensusError):
    reason = "INVALID_WEIGHTS"


class WeightsHashMismatch(ConsensusError):
    reason = "WEIGHTS_HASH_MISMATCH"


class RequirementsNotMet(ConsensusError):
    reason = "REQUIREMENTS_NOT_MET"


class AccuracyNotImproved(ConsensusError):
    reason = "ACCURACY_NOT_IMPROVED"


class SabotageDetected(ConsensusError):
    reason = "SABOTAGE_GUARD"


class InvalidHeader(ConsensusError):
    reason = "INVALID_HEADER"


class UnknownTask(ConsensusError):
    reason = "UNKNOWN_TASK"


class DatasetError(ConsensusError):
    reason = "DATASET_ERROR"


class WrongRules(ConsensusError):
    """A verdict of one rule set was asked of a task pinned to the other."""

    reason = "WRONG_RULES"


class InvalidSegment(ConsensusError):
    reason = "INVALID_SEGMENT"


class ParentStateMismatch(ConsensusError):
    """The state offered as the parent's W' does not hash to the parent header's newWeightsHash."""

    reason = "PARENT_STATE_MISMATCH"


class TipRegressed(ConsensusError):
    reason = "TIP_REGRESSED"


class RedrawTooEarly(ConsensusError):
    reason = "REDRAW_TOO_EARLY"


class RedrawNotAllowed(ConsensusError):
    reason = "REDRAW_NOT_ALLOWED"
