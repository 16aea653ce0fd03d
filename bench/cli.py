"""Start-up time of the `pol` command: `pol --help` and every subcommand's help (goal: < 0.5 s).

    .venv/bin/python bench/cli.py [--repeats 5]

Each figure is the wall time of a fresh process (`python -m pol_cli.main ... --help`), median of the
repeats. tests/test_cli.py checks the cause deterministically: no torch (and no web3) is imported.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = [[], ["genesis"], ["chain"], ["chain", "up"], ["chain", "deploy"], ["chain", "status"], ["chain", "blocks"],
            ["verifier", "serve"], ["mine"], ["demo"], ["audit"]]
GOAL_S = 0.5


def time_help(argv: list[str], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pol_cli.main", *argv, "--help"], check=True, capture_output=True)
        out.append(time.perf_counter() - t0)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    bare = time.perf_counter() - t0
    print(f"| command | median s | runs |\n|---|---:|---|\n| python -c pass (interpreter alone) | {bare:.3f} | 1 |")
    worst = 0.0
    for argv in COMMANDS:
        runs = time_help(argv, args.repeats)
        med = statistics.median(runs)
        worst = max(worst, med)
        print(f"| pol {' '.join(argv + ['--help'])} | {med:.3f} | {', '.join(f'{r:.2f}' for r in runs)} |")
    print(f"\nslowest median: {worst:.3f} s (goal: under {GOAL_S} s)")
    return 0 if worst < GOAL_S else 1


if __name__ == "__main__":
    sys.exit(main())
