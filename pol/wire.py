"""The weights and segment codecs and chunking: how a proof and a model state travel and are stored.

A state is a safetensors blob. safetensors stores tensors sorted by name; the canonical order is
the task's state_dict order (it is part of the weights hash), so decoding puts it back. A chain-bound
segment travels in its consensus encoding (pol_core.segment), the bytes its root hashes.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Iterator, Mapping

if TYPE_CHECKING:  # torch loads with safetensors.torch, on first use: the wire layer imports cheaply
    import torch

    from pol_core.segment import Segment

CHUNK_SIZE = 1 << 20  # bytes per gRPC message of a streamed blob; far below the 4 MiB default cap


class MalformedWeights(ValueError):
    """The bytes are not a safetensors blob of tensors."""


def encode_state(state: Mapping[str, torch.Tensor]) -> bytes:
    from safetensors.torch import save

    return save({k: v.detach().cpu().contiguous() for k, v in state.items()})


def decode_state(blob: bytes, order: Iterable[str]) -> dict[str, torch.Tensor]:
    """The tensors of `blob`, names listed in `order` first and in that order, then any others
    (so a state with extra or missing names reaches the state check, which names them)."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        raw = load(blob)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise MalformedWeights(f"weights are not a valid safetensors blob: {e}") from e
    order = list(order)
    return {k: raw[k] for k in order if k in raw} | {k: v for k, v in raw.items() if k not in order}


def iter_chunks(blob: bytes, size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """`blob` in pieces of at most `size` bytes; an empty blob is one empty piece, so a stream
    always carries at least one message."""
    for i in range(0, max(len(blob), 1), size):
        yield blob[i : i + size]


def encode_segment(segment: Iterable[Iterable[int]]) -> bytes:
    """The segment's consensus encoding: what ProofHeader.segment and Block.segment carry."""
    from pol_core.segment import compute_segment_encoding

    return compute_segment_encoding([list(step) for step in segment])


def decode_segment(data: bytes) -> Segment:
    """The steps of an encoded segment; pol_core.types.InvalidSegment for truncated bytes."""
    from pol_core.segment import decode_segment as decode

    return decode(data)
