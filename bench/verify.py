"""Time per verification phase, against the floor of one update plus two evaluations of E.

    .venv/bin/python bench/verify.py [--repeats 5] [--cifar-test 200]

Runs the verifier's own sequence (pol_core.verify.compute_verdict, phase by phase, with the
verifier's settings: deterministic mode, one thread) for digits-cnn, and for cifar10-resnet18 on
generated data in CIFAR-10's on-disk format (real model size, |W| = 11.2M). The floor is measured
in the same run, with the same functions, on the same state.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from pol_core.header import Header, compute_header_hash
from pol_core.keccak import keccak256
from pol_core.requirements import compute_requirements, is_requirements_met
from pol_core.step import compute_correct, enable_deterministic_mode, process_step
from pol_core.tasks import Task, load_task
from pol_core.tasks.cifar import write_cifar_like
from pol_core.verify import process_indices_check
from pol_core.types import ZERO_ADDRESS, CorrectCount, Difficulty, Hash32, Height, SampleIndex
from pol_core.weights import StateDict, compute_weights_hash, get_flat_params, get_state, process_state_check


def verify_phases(task: Task, state: StateDict, indices: tuple[int, ...], parent: Hash32, k: Difficulty) -> dict[str, float]:
    """compute_verdict's phases, timed, without stopping at a failed check."""
    t = {}
    t0 = time.perf_counter()
    process_indices_check(indices, task.config.batch_size, task.train_size)
    process_state_check(task.genesis_state, state)
    wh = compute_weights_hash(state)
    t1 = time.perf_counter()
    t["shape+hash(W)"] = t1 - t0
    model = task.scratch_model(state)
    before = get_flat_params(model)
    process_step(model, *task.batch(indices), task.config)
    reqs = compute_requirements(parent, k, task.num_params)
    is_requirements_met(before, get_flat_params(model), reqs)
    t2 = time.perf_counter()
    t["update+R"] = t2 - t1
    new_state = get_state(model)
    new_hash = compute_weights_hash(new_state)
    t3 = time.perf_counter()
    t["hash(W')"] = t3 - t2
    ca = compute_correct(model, task.test_x, task.test_y, task.config.eval_batch)
    model.load_state_dict(state)
    cb = compute_correct(model, task.test_x, task.test_y, task.config.eval_batch)
    t4 = time.perf_counter()
    t["2 evaluations"] = t4 - t3
    compute_header_hash(Header(parent, Height(1), task.spec_hash, wh, new_hash, tuple(SampleIndex(i) for i in indices),
                               CorrectCount(cb), CorrectCount(ca), k, ZERO_ADDRESS))
    t["header"] = time.perf_counter() - t4
    t["total"] = time.perf_counter() - t0
    return t


def floor(task: Task, state: StateDict, indices: tuple[int, ...]) -> float:
    """One update and two evaluations, the verification cost the paper calls constant, as the
    least code that does them from received weights: load W, step, evaluate W', reload W, evaluate W."""
    t0 = time.perf_counter()
    model = task.scratch_model(state)
    process_step(model, *task.batch(indices), task.config)
    compute_correct(model, task.test_x, task.test_y, task.config.eval_batch)
    model.load_state_dict(state)
    compute_correct(model, task.test_x, task.test_y, task.config.eval_batch)
    return time.perf_counter() - t0


def bench(task: Task, repeats: int) -> None:
    state = {k: v.clone() for k, v in task.genesis_state.items()}
    indices = (3, 1, 4, 15)
    parent = keccak256(b"bench")
    verify_phases(task, state, indices, parent, Difficulty(8))  # warm-up
    floor(task, state, indices)
    runs, floors = [], []
    for _ in range(repeats):
        runs.append(verify_phases(task, state, indices, parent, Difficulty(8)))
        floors.append(floor(task, state, indices))
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    f = statistics.median(floors)
    print(f"\n{task.name}: |W| = {task.num_params:,}, test set {task.test_x.shape[0]}, median of {repeats}")
    print("| phase | seconds |\n|---|---:|")
    for k, v in med.items():
        print(f"| {k} | {v:.4f} |")
    print(f"| floor: 1 update + 2 evaluations | {f:.4f} |")
    paired = statistics.median(r["total"] / fl for r, fl in zip(runs, floors))
    print(f"overhead above the floor: {100 * (paired - 1):.1f}% (median of the {repeats} paired ratios; "
          f"ratio of medians {100 * (med['total'] / f - 1):.1f}%; goal: at most 10%)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=31, help="digits-cnn repeats (cifar: a fifth of it, at least 3)")
    ap.add_argument("--cifar-test", type=int, default=200, help="test-set size of the generated CIFAR data")
    ap.add_argument("--skip-cifar", action="store_true")
    args = ap.parse_args()
    enable_deterministic_mode()  # the verifier's settings, one thread included
    bench(load_task("digits-cnn", rules="paper"), args.repeats)
    if not args.skip_cifar:
        with tempfile.TemporaryDirectory() as d:
            write_cifar_like(d, n_train_per_file=8, n_test=args.cifar_test)
            bench(load_task("cifar10-resnet18", d, rules="paper"), max(3, args.repeats // 5))


if __name__ == "__main__":
    main()
