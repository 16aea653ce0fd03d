"""The cost of pinned dispatch: verification time pinned against today's verifier settings.

    .venv/bin/python bench/pinning.py [--rounds 3] [--repeats 15] [--cifar-test 200] [--skip-cifar]

Pinning is per process, so each measurement is a fresh process (`--worker`), pinned and unpinned
alternating round by round so that both see the same load on this shared machine. "Unpinned" is the
verifier as it runs today: deterministic mode and one thread, every library at its own dispatch.
Both sides run bench/verify.py's phases (the verifier's own sequence) and floor (one update and two
evaluations of E) on the same state.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile


def worker(args: argparse.Namespace) -> None:
    if args.mode == "pinned":
        from pol_core.portable import pin_cpu_dispatch

        pin_cpu_dispatch()
    import torch

    from pol_core.keccak import keccak256
    from pol_core.step import enable_deterministic_mode
    from pol_core.tasks import load_task

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from verify import floor, verify_phases  # bench/verify.py: the verifier's sequence and its floor

    enable_deterministic_mode()
    torch.set_num_threads(1)  # unpinned: the verifier's setting; pinned: already 1
    task = load_task(args.task, args.data_dir)
    state = {k: v.clone() for k, v in task.genesis_state.items()}
    indices, parent = (3, 1, 4, 15), keccak256(b"bench")
    verify_phases(task, state, indices, parent, 8)  # warm-up: scratch model, first-call allocations
    runs = [verify_phases(task, state, indices, parent, 8) for _ in range(args.repeats)]
    floors = [floor(task, state, indices) for _ in range(args.repeats)]
    print(json.dumps({"phases": runs, "floor": floors}))


def measure(task: str, mode: str, repeats: int, data_dir: str | None) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--task", task, "--mode", mode,
           "--repeats", str(repeats)] + (["--data-dir", data_dir] if data_dir else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench(task: str, rounds: int, repeats: int, data_dir: str | None, n_test: int) -> None:
    got: dict[str, dict[str, list]] = {m: {"phases": [], "floor": []} for m in ("unpinned", "pinned")}
    for _ in range(rounds):
        for mode in ("unpinned", "pinned"):
            r = measure(task, mode, repeats, data_dir)
            got[mode]["phases"] += r["phases"]
            got[mode]["floor"] += r["floor"]
    n = rounds * repeats
    print(f"\n{task}: test set {n_test}, {rounds} rounds x {repeats} repeats per mode, median of {n} (seconds)")
    print("| phase | unpinned (today) | pinned | pinned / unpinned |\n|---|---:|---:|---:|")
    for k in got["pinned"]["phases"][0]:
        u = statistics.median(r[k] for r in got["unpinned"]["phases"])
        p = statistics.median(r[k] for r in got["pinned"]["phases"])
        print(f"| {k} | {u:.4f} | {p:.4f} | {p / u:.2f}x |")
    u, p = statistics.median(got["unpinned"]["floor"]), statistics.median(got["pinned"]["floor"])
    print(f"| floor: 1 update + 2 evaluations | {u:.4f} | {p:.4f} | {p / u:.2f}x |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=15, help="per process for digits-cnn (cifar: a fifth, at least 2)")
    ap.add_argument("--cifar-test", type=int, default=200)
    ap.add_argument("--skip-cifar", action="store_true")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--task", default="digits-cnn", help=argparse.SUPPRESS)
    ap.add_argument("--mode", choices=("pinned", "unpinned"), help=argparse.SUPPRESS)
    ap.add_argument("--data-dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return 0
    bench("digits-cnn", args.rounds, args.repeats, None, 360)
    if not args.skip_cifar:
        from pol_core.tasks.cifar import write_cifar_like

        with tempfile.TemporaryDirectory() as d:
            write_cifar_like(d, n_train_per_file=8, n_test=args.cifar_test)
            bench("cifar10-resnet18", args.rounds, max(2, args.repeats // 5), d, args.cifar_test)
    return 0


if __name__ == "__main__":
    sys.exit(main())
