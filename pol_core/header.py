"""The block header, its ABI encoding and its hash: the same bytes PoLChain.sol hashes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_utils.address import to_checksum_address

from .keccak import keccak256
from .types import (
    ZERO_ADDRESS,
    ZERO_HASH,
    Address,
    CorrectCount,
    Difficulty,
    Hash32,
    Height,
    InvalidHeader,
    RedrawIndex,
    SampleIndex,
)

# Mirrors `struct Header` in contracts/src/PoLChain.sol, field for field, in its order: first the fields the
# contract supplies itself (parent link, task, k), then those the attester sends.
HEADER_ABI_TYPE = "(bytes32,bytes32,uint8,uint64,bytes32,bytes32,bytes32,uint32[],uint32,uint32,uint32,address)"
UINT32_MAX = (1 << 32) - 1
UINT64_MAX = (1 << 64) - 1


@dataclass(frozen=True)
class Header:
    """One header for both rule sets. The dataclass keeps the paper-era field order (the two chain-bound
    fields last, defaulting to the paper's values); `as_abi_tuple` gives the contract's order."""

    parent: Hash32  # the parent's link (paper rules: the parent's block hash)
    height: Height
    task_spec_hash: Hash32
    weights_hash: Hash32  # W, the weights before the verified step (chain-bound: replayed, never claimed)
    new_weights_hash: Hash32  # W', the verifier's canonical recomputation
    indices: tuple[SampleIndex, ...]  # P (chain-bound: strictly ascending)
    correct_before: CorrectCount
    correct_after: CorrectCount
    difficulty: Difficulty  # k
    miner: Address
    segment_root: Hash32 = ZERO_HASH  # chain-bound: keccak256 of the segment's encoding; paper: zero
    redraw: RedrawIndex = RedrawIndex(0)  # j: which draw of R this block meets (0 unless redrawn)

    def as_abi_tuple(self) -> tuple[Any, ...]:
        return (
            bytes(self.parent),
            bytes(self.task_spec_hash),
            int(self.difficulty),
            int(self.height),
            bytes(self.weights_hash),
            bytes(self.new_weights_hash),
            bytes(self.segment_root),
            [int(i) for i in self.indices],
            int(self.correct_before),
            int(self.correct_after),
            int(self.redraw),
            to_checksum_address(bytes(self.miner)),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "parent": "0x" + self.parent.hex(),
            "taskSpecHash": "0x" + self.task_spec_hash.hex(),
            "difficulty": int(self.difficulty),
            "height": int(self.height),
            "weightsHash": "0x" + self.weights_hash.hex(),
            "newWeightsHash": "0x" + self.new_weights_hash.hex(),
            "segmentRoot": "0x" + self.segment_root.hex(),
            "indices": [int(i) for i in self.indices],
            "correctBefore": int(self.correct_before),
            "correctAfter": int(self.correct_after),
            "redraw": int(self.redraw),
            "miner": "0x" + self.miner.hex(),
        }


def validate_header(h: Header) -> None:
    # Each field must fit its Solidity type, or the contract would hash different bytes.
    for name in ("parent", "task_spec_hash", "weights_hash", "new_weights_hash", "segment_root"):
        if len(getattr(h, name)) != 32:
            raise InvalidHeader(f"{name} must be 32 bytes")
    if len(h.miner) != 20:
        raise InvalidHeader("miner must be 20 bytes")
    if not 0 <= h.height <= UINT64_MAX:
        raise InvalidHeader(f"height {h.height} does not fit uint64")
    if not all(0 <= i <= UINT32_MAX for i in h.indices):
        raise InvalidHeader("every index must fit uint32")
    if not (0 <= h.correct_before <= UINT32_MAX and 0 <= h.correct_after <= UINT32_MAX):
        raise InvalidHeader("correct counts must fit uint32")
    if not 0 <= h.difficulty <= 255:
        raise InvalidHeader("difficulty must fit uint8")
    if not 0 <= h.redraw <= UINT32_MAX:
        raise InvalidHeader("redraw index must fit uint32")


def word(value: int) -> bytes:
    return value.to_bytes(32, "big")


HEAD_WORDS = 12  # the tuple's head: eleven static fields and the offset of `indices`


def compute_header_encoding(h: Header) -> bytes:
    """abi.encode(header), written out directly (the layout is fixed; tests compare it with eth_abi):
    the offset word 0x20, twelve head words, then the indices array (length, then one word each)."""
    validate_header(h)
    return b"".join((
        word(0x20),
        h.parent,
        h.task_spec_hash,
        word(h.difficulty),
        word(h.height),
        h.weights_hash,
        h.new_weights_hash,
        h.segment_root,
        word(32 * HEAD_WORDS),
        word(h.correct_before),
        word(h.correct_after),
        word(h.redraw),
        bytes(12) + bytes(h.miner),
        word(len(h.indices)),
        *(word(int(i)) for i in h.indices),
    ))


def compute_header_hash(h: Header) -> Hash32:
    return keccak256(compute_header_encoding(h))


def decode_header(data: bytes) -> Header:
    (t,) = abi_decode([HEADER_ABI_TYPE], data)
    return header_from_abi_tuple(t)


def header_from_abi_tuple(t: Any) -> Header:
    miner = t[11]
    miner_bytes = bytes.fromhex(miner[2:]) if isinstance(miner, str) else bytes(miner)
    return Header(
        parent=Hash32(bytes(t[0])),
        task_spec_hash=Hash32(bytes(t[1])),
        difficulty=Difficulty(int(t[2])),
        height=Height(int(t[3])),
        weights_hash=Hash32(bytes(t[4])),
        new_weights_hash=Hash32(bytes(t[5])),
        segment_root=Hash32(bytes(t[6])),
        indices=tuple(SampleIndex(int(i)) for i in t[7]),
        correct_before=CorrectCount(int(t[8])),
        correct_after=CorrectCount(int(t[9])),
        redraw=RedrawIndex(int(t[10])),
        miner=Address(miner_bytes),
    )


def compute_genesis_header(
    task_spec_hash: Hash32, genesis_weights_hash: Hash32, genesis_correct: CorrectCount, k: Difficulty
) -> Header:
    """Height 0 under both rule sets: W = W' = the task's initial weights, no segment, no indices, no miner."""
    return Header(
        parent=ZERO_HASH,
        height=Height(0),
        task_spec_hash=task_spec_hash,
        weights_hash=genesis_weights_hash,
        new_weights_hash=genesis_weights_hash,
        indices=(),
        correct_before=genesis_correct,
        correct_after=genesis_correct,
        difficulty=k,
        miner=ZERO_ADDRESS,
    )
