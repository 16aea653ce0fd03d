"""Verification time per block, chain-bound against paper rules, in one run on one state.

    .venv/bin/python bench/verify_rules.py [--repeats 5] [--cifar-test 200] [--skip-cifar]

Each verdict runs to its end (k = 0, so R is always met; an accuracy refusal at the end is timed too):
paper = compute_verdict on (P, W); chain-bound = compute_chain_bound_verdict on (segment, P, j = 0) from the
parent's W', for an empty segment, the demo's typical segment, and the genesis bound (the largest replay a
proof may ask for). Verifier settings: deterministic mode, one thread. cifar10-resnet18 runs on generated
data in CIFAR-10's format with a small test set (this machine has 2 shared cores); say so when quoting.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Callable

import torch

from pol_core.chainbound import SegmentProof, TipContext, compute_chain_bound_verdict
from pol_core.header import Header, compute_header_hash
from pol_core.keccak import keccak256
from pol_core.segment import compute_segment_root
from pol_core.step import enable_deterministic_mode
from pol_core.tasks import Task, load_task
from pol_core.tasks.cifar import write_cifar_like
from pol_core.types import (
    Address,
    ConsensusError,
    CorrectCount,
    Difficulty,
    Hash32,
    Height,
    RedrawIndex,
    SampleIndex,
    Timestamp,
)
from pol_core.verify import Proof, compute_verdict
from pol_core.weights import compute_weights_hash

MINER = Address(b"\x01" * 20)


def timed(fn: Callable[[], object], repeats: int) -> float:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        try:
            fn()
        except ConsensusError:
            pass  # the accuracy rules come last: the work was done
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def sorted_batch(gen: torch.Generator, n: int, size: int) -> tuple[SampleIndex, ...]:
    return tuple(SampleIndex(int(i)) for i in torch.randperm(n, generator=gen)[:size].sort().values)


def bench(paper: Task, cb: Task, repeats: int, typical: tuple[int, int]) -> None:
    gen = torch.Generator().manual_seed(0)
    state = cb.genesis_state
    p = sorted_batch(gen, cb.train_size, cb.config.batch_size)
    k = Difficulty(0)
    parent = Header(keccak256(b"g"), Height(7), paper.spec_hash, keccak256(b"w"), compute_weights_hash(state), p,
                    CorrectCount(0), CorrectCount(0), k, MINER)
    link = compute_header_hash(parent)
    proof = Proof(link, Height(8), p, compute_weights_hash(state), state, MINER)
    t_paper = timed(lambda: compute_verdict(paper, parent, link, k, proof), repeats)
    cb_parent = Header(keccak256(b"g"), Height(7), cb.spec_hash, keccak256(b"w"), compute_weights_hash(state),
                       p, CorrectCount(0), CorrectCount(0), k, MINER, segment_root=compute_segment_root(()))
    tip = TipContext(cb_parent, keccak256(b"link"), k, Timestamp(0), Timestamp(1), 60)
    print(f"{paper.name} (test set {int(paper.test_y.shape[0])}): median of {repeats}")
    print(f"  paper verdict (W sent)                         {t_paper * 1000:9.1f} ms")
    c = cb.config
    for label, steps, batch in (("empty segment", 0, c.batch_size), (f"typical ({typical[0]} x {typical[1]})", *typical),
                                (f"genesis bound ({c.max_segment_steps} x {c.max_step_batch})", c.max_segment_steps,
                                 c.max_step_batch)):
        segment = tuple(sorted_batch(gen, cb.train_size, batch) for _ in range(steps))
        sp = SegmentProof(tip.link, Height(8), segment, p, RedrawIndex(0), MINER)
        t = timed(lambda: compute_chain_bound_verdict(cb, tip, state, sp), repeats)
        print(f"  chain-bound, {label:<34}{t * 1000:9.1f} ms   ({t / t_paper:4.2f}x paper)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cifar-test", type=int, default=200)
    ap.add_argument("--skip-cifar", action="store_true")
    a = ap.parse_args()
    enable_deterministic_mode()
    digits = load_task("digits-cnn", rules="paper")
    bench(digits, digits.with_rules("chain-bound"), a.repeats, (4, 4))
    if not a.skip_cifar:
        with tempfile.TemporaryDirectory() as d:
            write_cifar_like(d, n_train_per_file=400, n_test=a.cifar_test)
            cifar = load_task("cifar10-resnet18", d, rules="paper")
            bench(cifar, cifar.with_rules("chain-bound"), a.repeats, (4, 16))


if __name__ == "__main__":
    main()
