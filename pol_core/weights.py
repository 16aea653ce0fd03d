"""Canonical serialization of a model state, its weights hash, and the flat parameter view.

Serialization (docs/PROTOCOL.md, "Weights hash"): for every entry of `state_dict()` in order,
  u32be(len(name)) || name(utf-8) || u8(dtype code) || u8(ndim) || u32be(dim)*ndim || data
where data is the tensor's contiguous row-major bytes, little-endian. The hash is keccak256 of the
concatenation. Parameters and buffers (BatchNorm running statistics and counters) are all included.
"""
from __future__ import annotations

import sys
from collections import OrderedDict
from typing import Mapping

import torch
from torch import nn

from .keccak import new_keccak256
from .types import Hash32, InvalidWeights, NonFiniteResult, WeightsHashMismatch

LITTLE_ENDIAN = sys.byteorder == "little"
DTYPE_CODES: dict[torch.dtype, int] = {torch.float32: 1, torch.int64: 2, torch.uint8: 3}

StateDict = Mapping[str, torch.Tensor]


def compute_entry_prefix(name: str, t: torch.Tensor) -> bytes:
    # Only the dtypes a task may hold are defined; anything else has no canonical bytes.
    if t.dtype not in DTYPE_CODES:
        raise InvalidWeights(f"{name}: unsupported dtype {t.dtype}")
    raw = name.encode("utf-8")
    head = len(raw).to_bytes(4, "big") + raw + bytes([DTYPE_CODES[t.dtype], t.dim()])
    return head + b"".join(int(d).to_bytes(4, "big") for d in t.shape)


def compute_tensor_bytes(t: torch.Tensor) -> bytes:
    arr = t.detach().to("cpu").contiguous().numpy()
    if LITTLE_ENDIAN:
        return arr.tobytes()
    return arr.astype(arr.dtype.newbyteorder("<")).tobytes()


def compute_weights_hash(state: StateDict) -> Hash32:
    # Small entries are joined before hashing (per-call overhead dominates for small models);
    # large tensors stream straight into the hash, without one big copy.
    h, pending, size = new_keccak256(), [], 0
    for name, t in state.items():
        pending.append(compute_entry_prefix(name, t))
        data = compute_tensor_bytes(t)
        pending.append(data)
        size += len(data)
        if size >= 1 << 20:
            h.update(b"".join(pending))
            pending, size = [], 0
    h.update(b"".join(pending))
    return Hash32(h.digest())


def get_state(model: nn.Module) -> "OrderedDict[str, torch.Tensor]":
    """A detached CPU copy, in canonical order."""
    return OrderedDict((k, v.detach().to("cpu").clone()) for k, v in model.state_dict().items())


def count_learnable(model: nn.Module) -> int:
    """|W|: the scalars in `named_parameters()`, the index space of the requirements."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def get_flat_params(model: nn.Module) -> torch.Tensor:
    """Parameters concatenated in `named_parameters()` order, each flattened row-major."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).to("cpu")


def process_state_check(reference: StateDict, received: StateDict) -> None:
    """Raise unless `received` has exactly the reference's names, shapes, dtypes and finite values."""
    # Names and order are part of the canonical serialization.
    if list(reference.keys()) != list(received.keys()):
        missing = sorted(set(reference) - set(received))
        extra = sorted(set(received) - set(reference))
        raise InvalidWeights(f"tensor names differ from the task: missing {missing[:3]}, unexpected {extra[:3]}")
    for name, ref in reference.items():
        got = received[name]
        # A tensor of another shape or dtype belongs to a different model.
        if tuple(got.shape) != tuple(ref.shape) or got.dtype != ref.dtype:
            raise InvalidWeights(
                f"{name}: expected {ref.dtype} {tuple(ref.shape)}, got {got.dtype} {tuple(got.shape)}"
            )
    # NaN or infinity would make every later comparison meaningless.
    bad = get_non_finite_entry(received)
    if bad is not None:
        raise InvalidWeights(f"{bad}: contains NaN or infinity")


def get_non_finite_entry(state: StateDict) -> str | None:
    """The first floating entry holding NaN or infinity, or None. Small tensors are checked in one
    concatenated pass; large ones one by one, to avoid copying a whole large model."""
    floats = [t.detach().reshape(-1) for t in state.values() if t.is_floating_point()]
    small = [t for t in floats if t.numel() < 65536]
    finite = (not small or bool(torch.isfinite(torch.cat(small)).all())) and all(
        bool(torch.isfinite(t).all()) for t in floats if t.numel() >= 65536)
    if finite:
        return None
    return next(n for n, t in state.items() if t.is_floating_point() and not bool(torch.isfinite(t).all()))


def process_finite_check(state: StateDict, what: str) -> None:
    """Raise NonFiniteResult if a computed state (a replayed W, a recomputed W') holds NaN or infinity."""
    bad = get_non_finite_entry(state)
    # Overflow is where binary32 arithmetic stops being portable (NaN payloads, argmax over NaN) and
    # a model that overflowed is useless: such a state never enters the chain.
    if bad is not None:
        raise NonFiniteResult(f"{what}: {bad} holds NaN or infinity after the recomputation")


def process_weights_hash_check(state: StateDict, claimed: Hash32) -> None:
    # The proof names W by hash; the bytes received must be those bytes.
    actual = compute_weights_hash(state)
    if actual != claimed:
        raise WeightsHashMismatch(f"weights hash is 0x{actual.hex()}, claimed 0x{claimed.hex()}")


def compute_state_nbytes(state: StateDict) -> int:
    return sum(t.numel() * t.element_size() for t in state.values())
