"""Verification time per ResNet-18 proof against the test-set size and the evaluation backend.

    .venv/bin/python bench/eval_shard.py [--sizes 200,1000,10000] [--backends serial,1,2,ray] [--repeats 3]

For each size, generated data in CIFAR-10's on-disk format (the real task's eval_batch of 500, so
10,000 images make 20 eval batches per state, 40 shards per proof), and for each backend in turn
(started, warmed up, measured, stopped):

- proof: the verifier's own compute_verdict on one proof (k = 1, requirement met; the accuracy rule
  decides acceptance, after both evaluations, so the time is the same either way);
- proof CPU: CPU seconds of that proof, this process plus the workers' (they report their own),
  the figure to trust for overheads when the machine is shared;
- 2 evals: the evaluator alone on W' and W.

Backends: serial (pol_core.evaluation.evaluate_serial, on this thread), N (a LocalPool of N workers),
ray (a local Ray instance with 2 actors). Every backend's outcome (header, or the rule and counts
that rejected it) must equal the serial one; the script stops if it does not. The machine's load
average is printed with every row: figures taken at a load near or above the core count say more
about the neighbours than about the code.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import statistics
import tempfile
import time

import torch

from pol_core.evaluation import evaluate_serial
from pol_core.step import enable_deterministic_mode
from pol_core.tasks import load_task
from pol_core.tasks.cifar import write_cifar_like
from pol_core.types import ConsensusError, Difficulty
from pol_core.verify import compute_verdict
from tests.helpers import proof_from_genesis  # the repository root is on sys.path (editable install)


def cpu_now(evaluator) -> float:
    """CPU seconds of this process and of the evaluator's workers so far: robust to a busy machine."""
    return time.process_time() + getattr(evaluator, "cpu_s", 0.0)


def verify_once(task, proof, parent, parent_hash, evaluator) -> tuple[float, float, tuple]:
    c0, t0 = cpu_now(evaluator), time.perf_counter()
    try:
        v = compute_verdict(task, parent, parent_hash, Difficulty(1), proof, evaluator=evaluator)
        out: tuple = ("accepted", v.block_hash.hex())
    except ConsensusError as e:
        out = (type(e).__name__, str(e))
    return time.perf_counter() - t0, cpu_now(evaluator) - c0, out


def open_backend(name: str):
    if name == "serial":
        return evaluate_serial, lambda: None
    if name == "ray":
        import ray

        from pol_eval.ray_backend import RayEvaluator

        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR)
        ev = RayEvaluator(actors=2)

        def close() -> None:
            ev.close()
            ray.shutdown()

        return ev, close
    from pol_eval.pool import LocalPool

    pool = LocalPool(int(name))
    return pool, pool.close


def bench_size(n: int, backends: list[str], repeats: int) -> dict[str, dict[str, float]]:
    rows: dict[str, dict[str, float]] = {}
    reference: tuple = ()
    with tempfile.TemporaryDirectory() as d:
        write_cifar_like(d, n_train_per_file=8, n_test=n)
        task = load_task("cifar10-resnet18", d)
        proof, parent, parent_hash, states = proof_from_genesis(task)
        for name in backends:
            load0 = os.getloadavg()[0]
            t0 = time.perf_counter()
            ev, close = open_backend(name)
            try:
                if hasattr(ev, "prepare"):
                    ev.prepare(task)
                startup = time.perf_counter() - t0
                _, _, out = verify_once(task, proof, parent, parent_hash, ev)  # warm-up: models built, caches hot
                reference = reference or out
                # Bit-identity is the point: a backend with other counts has no time worth reporting.
                if out != reference:
                    raise SystemExit(f"{name}: outcome {out} differs from {backends[0]}'s {reference}")
                proofs, cpus, evals, eval_cpus = [], [], [], []
                for _ in range(repeats):
                    t, cpu, out = verify_once(task, proof, parent, parent_hash, ev)
                    if out != reference:
                        raise SystemExit(f"{name}: outcome {out} differs from {backends[0]}'s {reference}")
                    proofs.append(t)
                    cpus.append(cpu)
                    c1, t1 = cpu_now(ev), time.perf_counter()
                    ev(task, states)
                    evals.append(time.perf_counter() - t1)
                    eval_cpus.append(cpu_now(ev) - c1)
            finally:
                close()
            rows[name] = {"proof": statistics.median(proofs), "cpu": statistics.median(cpus),
                          "eval": statistics.median(evals), "eval_cpu": statistics.median(eval_cpus), "startup": startup,
                          "load0": load0, "load1": os.getloadavg()[0]}
            r = rows[name]
            print(f"  {n:>6} {name:>6}: proof {r['proof']:8.2f}s  CPU {r['cpu']:8.2f}s  2 evals {r['eval']:8.2f}s"
                  f"  start-up {startup:5.1f}s"
                  f"  load {load0:.2f}->{r['load1']:.2f}  runs {', '.join(f'{x:.2f}' for x in proofs)}", flush=True)
        print(f"  {n:>6} outcome, identical for every backend: {reference[0]} {reference[1][:80]}", flush=True)
    return rows


def report(results: dict[int, dict[str, dict[str, float]]], repeats: int) -> None:
    print(f"\n| test images | backend | proof (s) | proof CPU (s) | 2 evals (s) | vs 1 worker | efficiency | load avg "
          "| median of |")
    print("|---:|---|---:|---:|---:|---:|---:|---|---:|")
    for n, rows in results.items():
        one = rows.get("1")
        for name, r in rows.items():
            workers = {"serial": 1, "ray": 2}.get(name) or int(name)
            ratio = r["proof"] / one["proof"] if one else float("nan")
            eff = one["proof"] / (workers * r["proof"]) if one else float("nan")
            print(f"| {n:,} | {name} | {r['proof']:.2f} | {r['cpu']:.2f} | {r['eval']:.2f} | {ratio:.2f}x | {100 * eff:.0f}% "
                  f"| {r['load0']:.2f}-{r['load1']:.2f} | {repeats} |")
    for n, rows in results.items():
        if "serial" in rows and "1" in rows:
            print(f"{n:,} images: sharding overhead at 1 worker vs serial: "
                  f"{100 * (rows['1']['proof'] / rows['serial']['proof'] - 1):+.1f}% wall, "
                  f"{100 * (rows['1']['cpu'] / rows['serial']['cpu'] - 1):+.1f}% CPU (goal: at most 5%)")
        if "1" in rows and "2" in rows:
            print(f"{n:,} images: 2 workers take {rows['2']['proof'] / rows['1']['proof']:.2f}x the 1-worker time "
                  "(goal at 10,000: at most 0.6x)")
    # Projection from the largest size with a serial figure, in CPU seconds (what an idle core gives).
    sized = [n for n, rows in results.items() if "serial" in rows]
    if not sized:
        return
    n = max(sized)
    s = results[n]["serial"]
    per_image = s["eval_cpu"] / (2 * n)
    fixed = s["cpu"] - s["eval_cpu"]  # update, hashes, checks: on the verifier's own thread
    shard_s = 500 * per_image  # one eval batch of the real task
    print(f"\nprojection, NOT RUN on such machines: serial CPU per image {1000 * per_image:.2f} ms ({n:,} images), "
          f"fixed part of a proof {fixed:.2f} s, idle cores, no scaling loss beyond whole shards")
    print("| cores | 10,000 test images: proof (s) | shards per worker (40 in all) |")
    print("|---:|---:|---:|")
    for cores in (1, 2, 16, 64):
        rounds = math.ceil(40 / cores)  # 20 eval batches of 500 per state, two states
        print(f"| {cores} | {fixed + rounds * shard_s:.1f} | {rounds} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="200,1000", help="comma-separated test-set sizes (e.g. 200,1000,10000)")
    ap.add_argument("--backends", default="serial,1,2,ray", help="comma-separated: serial, a worker count, ray")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    enable_deterministic_mode()
    torch.set_num_threads(1)  # the verifier's setting
    backends = args.backends.split(",")
    print(f"cpu cores {os.cpu_count()}, load average at start {os.getloadavg()}", flush=True)
    results = {int(n): bench_size(int(n), backends, args.repeats) for n in args.sizes.split(",")}
    report(results, args.repeats)


if __name__ == "__main__":
    main()
