"""Typed aliases, the reasons a rule can refuse something, and the named exceptions carrying them."""
from __future__ import annotations

from enum import StrEnum
from typing import ClassVar, NewType

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


class Reason(StrEnum):
    """Why a consensus rule refused its input. The value is what travels on the wire; how a
    service reports each reason (a gRPC status, an exit code) is decided outside pol_core."""

    INVALID_DIFFICULTY = "INVALID_DIFFICULTY"
    INVALID_HASH = "INVALID_HASH"
    INVALID_INDICES = "INVALID_INDICES"
    INVALID_WEIGHTS = "INVALID_WEIGHTS"
    WEIGHTS_HASH_MISMATCH = "WEIGHTS_HASH_MISMATCH"
    REQUIREMENTS_NOT_MET = "REQUIREMENTS_NOT_MET"
    ACCURACY_NOT_IMPROVED = "ACCURACY_NOT_IMPROVED"
    SABOTAGE_GUARD = "SABOTAGE_GUARD"
    INVALID_HEADER = "INVALID_HEADER"
    STALE = "STALE"  # the proof extends a block that is not its parent's (the tip's) hash
    WRONG_HEIGHT = "WRONG_HEIGHT"
    INVALID_BATCH_SIZE = "INVALID_BATCH_SIZE"
    INVALID_TASK_CONFIG = "INVALID_TASK_CONFIG"
    UNKNOWN_TASK = "UNKNOWN_TASK"
    DATASET_ERROR = "DATASET_ERROR"
    WRONG_RULES = "WRONG_RULES"  # a verdict of one rule set asked of a task pinned to the other
    INVALID_SEGMENT = "INVALID_SEGMENT"
    PARENT_STATE_MISMATCH = "PARENT_STATE_MISMATCH"
    TIP_REGRESSED = "TIP_REGRESSED"
    REDRAW_TOO_EARLY = "REDRAW_TOO_EARLY"
    REDRAW_NOT_ALLOWED = "REDRAW_NOT_ALLOWED"


class ConsensusError(Exception):
    """Root of every rule violation; each subclass names its Reason."""

    reason: ClassVar[Reason]


class InvalidDifficulty(ConsensusError):
    reason = Reason.INVALID_DIFFICULTY


class InvalidHash(ConsensusError):
    reason = Reason.INVALID_HASH


class InvalidIndices(ConsensusError):
    reason = Reason.INVALID_INDICES


class InvalidWeights(ConsensusError):
    reason = Reason.INVALID_WEIGHTS


class WeightsHashMismatch(ConsensusError):
    reason = Reason.WEIGHTS_HASH_MISMATCH


class RequirementsNotMet(ConsensusError):
    reason = Reason.REQUIREMENTS_NOT_MET


class AccuracyNotImproved(ConsensusError):
    reason = Reason.ACCURACY_NOT_IMPROVED


class SabotageDetected(ConsensusError):
    reason = Reason.SABOTAGE_GUARD


class InvalidHeader(ConsensusError):
    reason = Reason.INVALID_HEADER


class ParentNotTip(ConsensusError):
    reason = Reason.STALE


class HeightNotNext(ConsensusError):
    reason = Reason.WRONG_HEIGHT


class InvalidBatchSize(ConsensusError):
    reason = Reason.INVALID_BATCH_SIZE


class InvalidTaskConfig(ConsensusError):
    reason = Reason.INVALID_TASK_CONFIG


class UnknownTask(ConsensusError):
    reason = Reason.UNKNOWN_TASK


class DatasetError(ConsensusError):
    reason = Reason.DATASET_ERROR


class WrongRules(ConsensusError):
    """A verdict of one rule set was asked of a task pinned to the other."""

    reason = Reason.WRONG_RULES


class InvalidSegment(ConsensusError):
    reason = Reason.INVALID_SEGMENT


class ParentStateMismatch(ConsensusError):
    """The state offered as the parent's W' does not hash to the parent header's newWeightsHash."""

    reason = Reason.PARENT_STATE_MISMATCH


class TipRegressed(ConsensusError):
    reason = Reason.TIP_REGRESSED


class RedrawTooEarly(ConsensusError):
    reason = Reason.REDRAW_TOO_EARLY


class RedrawNotAllowed(ConsensusError):
    reason = Reason.REDRAW_NOT_ALLOWED
