"""Storage per block of a verifier's model store, paper rules against chain-bound rules, computed from the
encodings the store writes (not measured on disk, so the figures do not depend on the file system).

    .venv/bin/python bench/storage.py [--checkpoint-every 16]

Paper rules: every block stores W and W' in full (two safetensors blobs). Chain-bound rules: every block
stores its segment (journal row: the encoding plus three hashes) and every N-th block one W' blob; the
per-block figure is segment + W'/N. The segment is at its genesis bound (the largest a proof may carry)
and at the size of a typical demo block.
"""
from __future__ import annotations

import argparse

import torch

from pol.wire import encode_state
from pol_core.tasks.cifar import CONFIG as CIFAR_CONFIG
from pol_core.tasks.cifar import build_resnet18_cifar
from pol_core.tasks.digits import CONFIG as DIGITS_CONFIG
from pol_core.tasks.digits import build_digits_cnn as build_digits

ROW_OVERHEAD = 3 * 32 + 32  # block hash, parent block, W, W' hashes in the segments table


def segment_bytes(steps: int, batch: int) -> int:
    return steps * 4 * (1 + batch)  # u32be(B) then B indices, per step


def report(name: str, model: torch.nn.Module, max_steps: int, max_batch: int, typical: tuple[int, int], n: int) -> None:
    state = encode_state(model.state_dict())
    w = len(state)
    seg_max = segment_bytes(max_steps, max_batch) + ROW_OVERHEAD
    seg_typ = segment_bytes(*typical) + ROW_OVERHEAD
    print(f"{name}: |state| {w:,} bytes")
    print(f"  paper rules, W and W' per block:           {2 * w:,} bytes")
    print(f"  chain-bound, largest segment + W'/{n}:      {seg_max:,} + {w // n:,} = {seg_max + w // n:,} bytes")
    print(f"  chain-bound, typical segment + W'/{n}:      {seg_typ:,} + {w // n:,} = {seg_typ + w // n:,} bytes")
    print(f"  ratio paper / chain-bound (largest):       {2 * w / (seg_max + w / n):.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint-every", type=int, default=16)
    a = ap.parse_args()
    torch.manual_seed(0)
    # Typical demo block: a few S-sized training steps between rounds (--train-batch 4 --train-every 8).
    report("digits-cnn", build_digits(), DIGITS_CONFIG.max_segment_steps, DIGITS_CONFIG.max_step_batch, (4, 4),
           a.checkpoint_every)
    report("cifar10-resnet18", build_resnet18_cifar(), CIFAR_CONFIG.max_segment_steps, CIFAR_CONFIG.max_step_batch,
           (16, 64), a.checkpoint_every)


if __name__ == "__main__":
    main()
