"""Verification time of one ResNet-18 proof against the test-set size and the evaluation backend.

    python bench/eval_shard.py --sizes 10000 --backends 1,2,serial,ray --repeats 3 --out eval_shard.json
    python3 bench/eval_shard.py --sizes 10000,1000 --backends 16,8,4,2,1 --repeats 1 \
        --max-seconds 170 --allow-torch-version --out sharded.json          # a 16-core machine

For each size: generated data in CIFAR-10's on-disk format with the real task's eval_batch of 500
(10,000 images are 20 eval batches per state: 40 shards per proof; 1,000 images: 4 shards), and one
proof from genesis (k = 1, requirement met; genesis count 0 instead of a serial evaluation; the
accuracy rule decides acceptance after both evaluations, so the time is the same either way). For each backend, the verifier's own
compute_verdict on that proof:

- wall: the proof's wall time; cpu: CPU seconds of this process plus what the workers report;
- backends: `serial` (pol_core.evaluation.evaluate_serial on this thread: today's code), N (a
  verifier_service.evaluation LocalPool of N workers), `ray` (a local Ray instance, --ray-actors).

The issue's goals, printed and in the JSON: 2 workers / 1 worker (wall, paired per round; at most
0.6x at 10,000 images) and 1 worker / serial (sharding overhead; at most 5%). Every backend must
give the same outcome (accepted block hash, or the rule and counts that refused it) as the first
one; the script stops otherwise. Each round runs every backend once, in turn, so a drifting load
hits them alike; figures are medians of R rounds, ratios medians of per-round ratios.

Arithmetic: this process and every worker pin the CPU dispatch (pol_core.portable) before their
first tensor operation, as the verifier does. `--allow-torch-version` (another torch than the
consensus one, e.g. a borrowed machine) skips only the release check: timings, not consensus.
`--max-seconds` bounds the whole run: a measurement predicted to end past it (from the per-shard
CPU cost measured so far) is skipped and listed as such. The JSON is rewritten after every
measurement, so a run stopped from outside still leaves its figures. Imports: pol_core, the
evaluation package, torch, numpy (no web3, gRPC or generated code), so it runs on a bare machine.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # a checkout without an install

EVAL_BATCH = 500  # cifar10-resnet18's eval batch: shards are whole eval batches


def pin(allow_torch_version: bool) -> str:
    """The verifier's arithmetic in this process, before any tensor operation (as the workers do)."""
    from verifier_service.evaluation.worker import setup_process

    return setup_process(allow_torch_version)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def workers_of(name: str, ray_actors: int) -> int:
    return {"serial": 1, "ray": ray_actors}.get(name) or int(name)


class Backend:
    """One evaluator kept open for the whole size, and how to close it."""

    def __init__(self, name: str, ray_actors: int, allow_torch_version: bool):
        from pol_core.evaluation import evaluate_serial

        self.name = name
        self.close: Callable[[], None] = lambda: None
        self.evaluator: Any = evaluate_serial
        if name == "ray":
            import ray

            from verifier_service.evaluation.ray_backend import RayEvaluator

            ray.init(num_cpus=ray_actors, include_dashboard=False, logging_level=logging.ERROR)
            ev = RayEvaluator(actors=ray_actors)

            def close() -> None:
                ev.close()
                ray.shutdown()

            self.evaluator, self.close = ev, close
        elif name != "serial":
            from verifier_service.evaluation.pool import LocalPool

            pool = LocalPool(int(name), allow_torch_version=allow_torch_version)
            self.evaluator, self.close = pool, pool.close

    def cpu_now(self) -> float:
        """CPU seconds of this process and of the evaluator's workers so far."""
        return time.process_time() + float(getattr(self.evaluator, "cpu_s", 0.0))


def verify_once(task: Any, proof: Any, parent: Any, parent_hash: Any, b: Backend) -> dict[str, Any]:
    from pol_core.types import ConsensusError, Difficulty
    from pol_core.verify import compute_verdict

    load = os.getloadavg()[0]
    c0, t0 = b.cpu_now(), time.perf_counter()
    try:
        v = compute_verdict(task, parent, parent_hash, Difficulty(1), proof, evaluator=b.evaluator)
        outcome = ["accepted", v.block_hash.hex(), v.header.correct_before, v.header.correct_after]
    except ConsensusError as e:
        outcome = [type(e).__name__, str(e)]
    return {"wall": time.perf_counter() - t0, "cpu": b.cpu_now() - c0, "load": load, "outcome": outcome}


class Run:
    """Everything measured so far, the time budget, and the JSON file kept up to date."""

    def __init__(self, args: argparse.Namespace, dispatch: str):
        import torch

        self.args = args
        self.t0 = time.monotonic()
        self.summary: dict[str, Any] = {
            "command": " ".join(sys.argv),
            "machine": {"cpus": os.cpu_count(), "cpu": cpu_model(), "python": platform.python_version(),
                        "torch": torch.__version__, "dispatch": dispatch},
            "eval_batch": EVAL_BATCH, "repeats": args.repeats, "max_seconds": args.max_seconds,
            "sizes": {}, "skipped": [], "complete": False,
        }
        self.image_cpu: float | None = None  # CPU seconds per test image per state (an upper bound)

    def left(self) -> float:
        return self.args.max_seconds - (time.monotonic() - self.t0)

    def predict(self, n: int, name: str, seen: list[dict[str, Any]]) -> float | None:
        """Expected wall seconds of one proof: as measured, else from the per-shard CPU cost."""
        if seen:
            return statistics.median(r["wall"] for r in seen)
        if self.image_cpu is None:
            return None
        shards = 2 * math.ceil(n / EVAL_BATCH)
        shard_s = self.image_cpu * min(n, EVAL_BATCH)
        return math.ceil(shards / workers_of(name, self.args.ray_actors)) * shard_s * 1.1 + 2.0

    def learn(self, n: int, name: str, r: dict[str, Any]) -> None:
        # The evaluation dominates a ResNet proof: charge all of its CPU to its images (an upper bound).
        per_image = r["cpu"] / (2 * n)
        self.image_cpu = per_image if self.image_cpu is None else min(self.image_cpu, per_image)

    def save(self) -> None:
        self.summary["elapsed_s"] = round(time.monotonic() - self.t0, 1)
        if self.args.out:
            Path(self.args.out).write_text(json.dumps(self.summary, indent=1))


def paired(rows: dict[str, list[dict[str, Any]]], a: str, b: str, key: str) -> float | None:
    """Median over rounds of a's figure over b's in the same round (rounds both have)."""
    pairs = [x[key] / y[key] for x, y in zip(rows.get(a, []), rows.get(b, []))]
    return statistics.median(pairs) if pairs else None


def bench_size(run: Run, n: int, backends: list[str]) -> None:
    from pol_core.tasks import load_task
    from pol_core.tasks.cifar import write_cifar_like
    from tests.proofs import proof_from_genesis

    a = run.args
    entry: dict[str, Any] = {"shards_per_proof": 2 * math.ceil(n / EVAL_BATCH), "rounds": {b: [] for b in backends}}
    run.summary["sizes"][str(n)] = entry
    rows: dict[str, list[dict[str, Any]]] = entry["rounds"]
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        write_cifar_like(d, n_train_per_file=8, n_test=n)
        task = load_task("cifar10-resnet18", d, rules="paper")
        # The genesis count is not evaluated (serially, minutes at 10,000 images): 0 passes the
        # sabotage guard, and the verdict does both evaluations whatever it concludes.
        proof, parent, parent_hash, _ = proof_from_genesis(task, genesis_correct=0)
        entry["setup_s"] = round(time.perf_counter() - t0, 1)
        opened: dict[str, Backend] = {}
        reference: list[Any] | None = None
        try:
            for r in range(a.repeats):
                for name in backends:
                    predicted = run.predict(n, name, rows[name])
                    # Past the budget the run would be cut off from outside, and lose what it measured.
                    if predicted is not None and predicted > run.left():
                        run.summary["skipped"].append({"size": n, "backend": name, "round": r + 1,
                                                       "predicted_s": round(predicted, 1),
                                                       "left_s": round(run.left(), 1)})
                        print(f"  {n:>6} {name:>6} round {r + 1}: skipped, predicted {predicted:.0f}s, "
                              f"{run.left():.0f}s left", flush=True)
                        continue
                    if name not in opened:
                        t1 = time.perf_counter()
                        opened[name] = Backend(name, a.ray_actors, a.allow_torch_version)
                        prepare = getattr(opened[name].evaluator, "prepare", None)
                        if prepare is not None:
                            prepare(task)
                        entry.setdefault("start_s", {})[name] = round(time.perf_counter() - t1, 1)
                    res = verify_once(task, proof, parent, parent_hash, opened[name])
                    reference = reference or res["outcome"]
                    # Bit-identity is the point: a backend with other counts has no time worth reporting.
                    if res["outcome"] != reference:
                        run.summary["error"] = f"{n} images, {name}: outcome {res['outcome']} != {reference}"
                        run.save()
                        raise SystemExit(run.summary["error"])
                    rows[name].append(res)
                    run.learn(n, name, res)
                    print(f"  {n:>6} {name:>6} round {r + 1}: {res['wall']:.2f}s wall, {res['cpu']:.2f}s cpu, "
                          f"load {res['load']:.2f}", flush=True)
                    entry["outcome"] = reference
                    run.save()
        finally:
            for b in opened.values():
                b.close()
    summarise(run, n, entry)
    run.save()


def summarise(run: Run, n: int, entry: dict[str, Any]) -> None:
    rows = entry["rounds"]
    med = statistics.median
    table: dict[str, dict[str, Any]] = {}
    for name, rs in rows.items():
        if not rs:
            continue
        w = workers_of(name, run.args.ray_actors)
        wall, cpu = med(r["wall"] for r in rs), med(r["cpu"] for r in rs)
        vs1 = paired(rows, name, "1", "wall")
        table[name] = {"workers": w, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "rounds": len(rs),
                       "load": [round(min(r["load"] for r in rs), 2), round(max(r["load"] for r in rs), 2)],
                       "wall_vs_1_worker": vs1 and round(vs1, 3),
                       "efficiency_vs_1_worker": vs1 and round(1 / (w * vs1), 3),
                       # From this backend's own CPU and wall alone: meaningful without a 1-worker run.
                       "cpu_over_workers_x_wall": round(cpu / (w * wall), 3)}
    entry["table"] = table
    two, over_w, over_c = paired(rows, "2", "1", "wall"), paired(rows, "1", "serial", "wall"), paired(rows, "1", "serial", "cpu")
    entry["goals"] = {"two_over_one_wall": two and round(two, 3), "two_over_one_goal_at_10000": 0.6,
                      "one_over_serial_wall": over_w and round(over_w, 3),
                      "one_over_serial_cpu": over_c and round(over_c, 3), "overhead_goal": 1.05}
    print(f"\n{n:,} test images ({entry['shards_per_proof']} shards per proof), outcome for every backend: "
          f"{entry.get('outcome')}")
    print("| backend | workers | proof wall (s) | proof CPU (s) | wall vs 1 worker | efficiency | rounds | load |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for name, t in table.items():
        vs1s = f"{t['wall_vs_1_worker']:.2f}x" if t["wall_vs_1_worker"] else "-"
        eff = f"{100 * t['efficiency_vs_1_worker']:.0f}%" if t["efficiency_vs_1_worker"] else "-"
        print(f"| {name} | {t['workers']} | {t['wall_s']:.2f} | {t['cpu_s']:.2f} | {vs1s} | {eff} | {t['rounds']} | "
              f"{t['load'][0]:.2f}-{t['load'][1]:.2f} |")
    if two:
        print(f"2 workers / 1 worker: {two:.3f}x wall (goal at 10,000 images: at most 0.6x)")
    if over_w and over_c:
        print(f"1 worker / serial: {over_w:.3f}x wall, {over_c:.3f}x CPU (goal: at most 1.05x)")


def project(run: Run) -> None:
    """Expected proof time at 10,000 images from the cheapest per-image CPU seen (NOT a measurement)."""
    if run.image_cpu is None:
        return
    shard_s = run.image_cpu * EVAL_BATCH
    rows = [{"cores": c, "shards_per_worker": math.ceil(40 / c), "proof_s": round(math.ceil(40 / c) * shard_s, 1)}
            for c in (1, 2, 16, 64)]
    run.summary["projection_10000"] = {"image_cpu_ms": round(1000 * run.image_cpu, 2), "shard_cpu_s": round(shard_s, 2),
                                       "rows": rows, "note": "per-image CPU (proof CPU / 2n, an upper bound), "
                                       "idle cores, whole-shard scheduling; not run"}
    print(f"\nprojection for 10,000 images (NOT a measurement): {1000 * run.image_cpu:.1f} CPU ms per image, "
          f"{shard_s:.1f} s per shard of {EVAL_BATCH}; " + ", ".join(f"{r['cores']} cores {r['proof_s']}s" for r in rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="200,1000", help="comma-separated test-set sizes, run in this order")
    ap.add_argument("--backends", default="1,2,serial,ray",
                    help="comma-separated, run in this order each round: serial, a worker count, ray")
    ap.add_argument("--repeats", type=int, default=3, help="rounds; figures are medians over them")
    ap.add_argument("--ray-actors", type=int, default=2)
    ap.add_argument("--max-seconds", type=float, default=float("inf"), help="skip what would end past this")
    ap.add_argument("--allow-torch-version", action="store_true",
                    help="pin with another torch release than pol_core.portable's (timings only)")
    ap.add_argument("--out", help="JSON summary, rewritten after every measurement")
    a = ap.parse_args()
    dispatch = pin(a.allow_torch_version)  # first: before any tensor operation
    run = Run(a, dispatch)
    print(f"{os.cpu_count()} cpus ({cpu_model()}), load {os.getloadavg()}, dispatch: {dispatch}", flush=True)
    backends = a.backends.split(",")
    for n in (int(s) for s in a.sizes.split(",")):
        bench_size(run, n, backends)
    project(run)
    run.summary["complete"] = True
    run.save()


if __name__ == "__main__":
    main()
