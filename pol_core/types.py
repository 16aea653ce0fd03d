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


def is_hash32(value: object) -> bool:
    return isinstance(value, (bytes, bytearray)) and len(value) == 32


def to_hash32(value: bytes | str) -> Hash32:
    """Accept 32 raw bytes or a 0x-prefixed hex string."""
    raw = bytes.fromhex(value[2:] if value.startswith("0x") else value) if isinstance(value, str) else bytes(value)
    # A hash of any other length cannot be a keccak256 digest.
    if len(raw) != 32:
        raise InvalidHash(f"expected 32 bytes, got {len(raw)}")
    return Hash32(raw)


def to_address(value: bytes | str) -> Address:
    raw = bytes.fromhex(value[2:] if value.startswith("0x") else value) if isinstance(value, str) else bytes(value)
    # An EVM address is exactly 20 bytes.
    if len(raw) != 20:
        raise InvalidHeader(f"expected a 20-byte address, got {len(raw)} bytes")
    return Address(raw)
