"""Mining throughput (attempts per second) and useful work, all modes measured in one run.

    .venv/bin/python bench/mine.py [--device cpu|cuda] [--seconds 8] [--repeats 3] [--tasks digits-cnn,cifar10-resnet18]
                                   [--train-batch B] [--threads 1 --clock cpu]

Three loops per task, each trying attempts from the same model on random mini-batches:
  reference  the authors' per-attempt work: one SGD step, the required weights read in a Python
             loop, and the whole state dict saved to disk with torch.save on every attempt;
  faithful   our Algorithm 1 (prover/faithful.py): a kept SGD step per attempt, the required
             weights gathered in one indexing op, W kept in memory;
  fast       our batched search (prover/fast.py): C candidates per pass, then pol_core's training
             step on a batch of B = 4^j * S of the round's samples at lr * 2^j (prover/search.py).
k is set high enough that no attempt succeeds, so every loop does only its steady-state work.
Useful work: test accuracy gained after T seconds of fast-mode mining against T seconds of plain
training (batch S, task lr) on the same hardware. `--train-batch` sets B (default: the miner's).
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from pol_core.keccak import keccak256
from pol_core.requirements import compute_requirements
from pol_core.step import compute_correct, process_step
from pol_core.tasks import Task, load_task
from pol_core.tasks.cifar import write_cifar_like
from pol_core.types import Difficulty, Requirement
from prover.faithful import mine_faithful
from prover.search import FastSearcher

K = Difficulty(64)  # never met: ~2^-64 per attempt
# Windows are wall-clock seconds by default; `--clock cpu` measures this process's CPU seconds
# instead, which a shared, overloaded machine disturbs far less (use it with --threads 1).
clock = time.perf_counter


def read_by_walking(params: list[nn.Parameter], reqs: list[Requirement]) -> list[float]:
    """The reference reads each required weight by walking the parameters in Python."""
    out = []
    for r in reqs:
        i = r // 2
        for p in params:
            if i < p.numel():
                out.append(p.reshape(-1)[i].item())
                break
            i -= p.numel()
    return out


def reference_loop(task: Task, model: nn.Module, reqs: list[Requirement], seconds: float, device: torch.device,
                   path: str) -> float:
    """The authors' miner, per attempt: step, Python-loop reads, torch.save of the state dict."""
    opt = torch.optim.SGD(model.parameters(), lr=task.config.lr)
    params = list(model.parameters())
    gen = torch.Generator().manual_seed(0)
    n, t0 = 0, clock()
    while clock() - t0 < seconds:
        idx = torch.randperm(task.train_size, generator=gen)[: task.config.batch_size].tolist()
        x, y = task.batch(idx, device)
        before = read_by_walking(params, reqs)
        model.train()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        after = read_by_walking(params, reqs)
        del before, after  # read, as the reference does, and not used further here
        torch.save(model.state_dict(), path)
        n += 1
    return n / (clock() - t0)


def faithful_loop(task: Task, model: nn.Module, reqs: list[Requirement], seconds: float, device: torch.device) -> float:
    gen = torch.Generator().manual_seed(0)
    n, t0 = 0, clock()
    while clock() - t0 < seconds:
        mine_faithful(task, model, reqs, gen, 8, device)
        n += 8
    return n / (clock() - t0)


def fast_loop(task: Task, model: nn.Module, reqs: list[Requirement], seconds: float, device: torch.device,
              candidates: int, dtype: torch.dtype | None, train_batch: int | None) -> float:
    s = FastSearcher(task, model, reqs, torch.Generator().manual_seed(0), device, candidates, dtype, train_batch)
    s.round()  # warm-up
    s.attempts = 0
    t0 = clock()
    while clock() - t0 < seconds:
        s.round()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return s.attempts / (clock() - t0)


def flops_per_attempt(task: Task, model: nn.Module, device: torch.device) -> int:
    x, y = task.batch(list(range(task.config.batch_size)), device)
    with FlopCounterMode(display=False) as fc:
        process_step(model, x, y, task.config)
    return int(fc.get_total_flops())


def useful_work(task: Task, seconds: float, device: torch.device, candidates: int, seed: int,
                train_batch: int | None) -> tuple[int, int, int]:
    x_test, y_test = task.test_x.to(device), task.test_y.to(device)
    eb = task.config.eval_batch
    base = compute_correct(task.new_model().to(device), x_test, y_test, eb)
    plain = task.new_model().to(device)
    gen = torch.Generator().manual_seed(seed)
    t0 = clock()
    while clock() - t0 < seconds:
        idx = torch.randperm(task.train_size, generator=gen)[: task.config.batch_size].tolist()
        process_step(plain, *task.batch(idx, device), task.config)
    plain_gain = compute_correct(plain, x_test, y_test, eb) - base
    mined = task.new_model().to(device)
    reqs = compute_requirements(keccak256(b"useful"), K, task.num_params)
    s = FastSearcher(task, mined, reqs, torch.Generator().manual_seed(seed), device, candidates, None, train_batch)
    t0 = clock()
    while clock() - t0 < seconds:
        s.round()
    mined_gain = compute_correct(mined, x_test, y_test, eb) - base
    return base, plain_gain, mined_gain


def bench_task(task: Task, device: torch.device, seconds: float, repeats: int, candidates: int,
               dtype: torch.dtype | None, useful_seconds: float, train_batch: int | None = None) -> None:
    reqs = compute_requirements(keccak256(b"bench"), K, task.num_params)
    fresh = lambda: task.new_model().to(device)  # noqa: E731
    rates: dict[str, list[float]] = {"reference": [], "faithful": [], "fast": []}
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "state.pt")
        for _ in range(repeats):  # interleaved, so drift on a shared machine hits all three
            rates["reference"].append(reference_loop(task, fresh(), reqs, seconds, device, path))
            rates["faithful"].append(faithful_loop(task, fresh(), reqs, seconds, device))
            rates["fast"].append(fast_loop(task, fresh(), reqs, seconds, device, candidates, dtype, train_batch))
    med = {k: statistics.median(v) for k, v in rates.items()}
    flops = flops_per_attempt(task, fresh(), device)
    b = FastSearcher(task, fresh(), reqs, torch.Generator(), device, candidates, None, train_batch).train_batch
    print(f"\n{task.name} on {device} ({torch.get_num_threads()} threads), |W| = {task.num_params:,}, "
          f"C = {candidates}, train batch B = {b}, {seconds}s windows ({'CPU' if clock is time.process_time else 'wall'} "
          f"clock), median of {repeats}")
    print("| loop | attempts/s (median) | runs | vs reference | achieved GFLOP/s |\n|---|---:|---|---:|---:|")
    for k, v in med.items():
        runs = ", ".join(f"{r:.1f}" for r in rates[k])
        print(f"| {k} | {v:.1f} | {runs} | {v / med['reference']:.1f}x | {v * flops / 1e9:.1f} |")
    print(f"FLOPs per attempt (forward + backward of S = {task.config.batch_size}): {flops / 1e6:.1f} MFLOP")
    if useful_seconds:
        gains = [useful_work(task, useful_seconds, device, candidates, seed, train_batch) for seed in range(repeats)]
        base = gains[0][0]
        plain = statistics.median(g[1] for g in gains)
        mined = statistics.median(g[2] for g in gains)
        print(f"useful work after {useful_seconds}s: plain training +{plain} correct, fast mining +{mined} correct "
              f"(from {base}); ratio {mined / max(plain, 1):.2f} (goal >= 0.8); runs {[g[1:] for g in gains]}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tasks", default="digits-cnn,cifar10-resnet18")
    ap.add_argument("--candidates", type=int, default=None)
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast for the fast search (CUDA)")
    ap.add_argument("--useful-seconds", type=float, default=15)
    ap.add_argument("--train-batch", type=int, default=None, help="fast mode's training batch B (4^j * S)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="windows in wall-clock seconds, or in this process's CPU seconds")
    args = ap.parse_args()
    global clock
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.bf16 else None
    for name in args.tasks.split(","):
        if name == "digits-cnn":
            bench_task(load_task(name), device, args.seconds, args.repeats, args.candidates or 256, dtype,
                       args.useful_seconds, args.train_batch)
        else:
            with tempfile.TemporaryDirectory() as d:
                write_cifar_like(d, n_train_per_file=64, n_test=100)
                c = args.candidates or (512 if device.type == "cuda" else 16)
                bench_task(load_task(name, d), device, args.seconds, args.repeats, c, dtype, 0, args.train_batch)


if __name__ == "__main__":
    main()
