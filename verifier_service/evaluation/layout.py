"""A fixed byte layout for a task's model state, so weights cross process boundaries as one flat buffer.

Entries follow the task's canonical state order; each starts on a 64-byte boundary. The layout is
derived from the genesis state, so every state of the task (W, W') fits it exactly.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Mapping

import torch

ALIGN = 64
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "int64": torch.int64, "uint8": torch.uint8}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}


def align(n: int, to: int = ALIGN) -> int:
    return (n + to - 1) // to * to


@dataclass(frozen=True)
class Entry:
    name: str
    dtype: str
    shape: tuple[int, ...]
    offset: int

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True)
class StateLayout:
    entries: tuple[Entry, ...]
    nbytes: int

    @classmethod
    def of(cls, state: Mapping[str, torch.Tensor]) -> StateLayout:
        entries, offset = [], 0
        for name, t in state.items():
            # Only the dtypes a task state may hold (the weights hash defines no others).
            if t.dtype not in DTYPE_NAMES:
                raise ValueError(f"{name}: dtype {t.dtype} has no layout")
            entries.append(Entry(name, DTYPE_NAMES[t.dtype], tuple(int(d) for d in t.shape), offset))
            offset = align(offset + t.numel() * t.element_size())
        return cls(tuple(entries), max(offset, ALIGN))

    def to_json(self) -> dict[str, Any]:
        return {"nbytes": self.nbytes, "entries": [[e.name, e.dtype, list(e.shape), e.offset] for e in self.entries]}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> StateLayout:
        return cls(tuple(Entry(n, d, tuple(s), o) for n, d, s, o in doc["entries"]), int(doc["nbytes"]))

    def write(self, state: Mapping[str, torch.Tensor], buf: Any, base: int = 0) -> None:
        """Copy `state` into the writable buffer `buf` at byte offset `base`."""
        # A state of another shape would be read back as different weights.
        if list(state.keys()) != [e.name for e in self.entries]:
            raise ValueError("state entries differ from the task's layout")
        for e in self.entries:
            t = state[e.name]
            if DTYPE_NAMES.get(t.dtype) != e.dtype or tuple(t.shape) != e.shape:
                raise ValueError(f"{e.name}: expected {e.dtype} {e.shape}, got {t.dtype} {tuple(t.shape)}")
            if e.numel:
                dst = torch.frombuffer(buf, dtype=DTYPES[e.dtype], count=e.numel, offset=base + e.offset)
                dst.copy_(t.detach().reshape(-1))

    def read(self, buf: Any, base: int = 0) -> dict[str, torch.Tensor]:
        """Views of the state stored in `buf` at `base`; valid while `buf` is. Copy before keeping."""
        with warnings.catch_warnings():
            # Read-only buffers (Ray's object store) are only ever copied from, never written.
            warnings.filterwarnings("ignore", message="The given buffer is not writable")
            return {
                e.name: (torch.frombuffer(buf, dtype=DTYPES[e.dtype], count=e.numel, offset=base + e.offset)
                         if e.numel else torch.empty(0, dtype=DTYPES[e.dtype])).view(e.shape)
                for e in self.entries
            }
