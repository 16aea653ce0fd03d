"""R grinding: how many distinct next-R values a miner gets per second of work, once its block is valid.

    .venv/bin/python bench/grind.py [--seconds 3] [--repeats 3] [--k 16]

The attacker varies the miner address of a finished header (free bytes: W'_h does not depend on them) and
derives the next block's R from each variant (tests/attacks/grinding.py). Under the paper rules every
variant is a distinct, known R_{h+1}. Under chain-bound rules the link mixes in the prevrandao of the block
that will include h, unknown while grinding: the attacker can only guess it, and a guess is right with
probability 2^-256, so the usable rate is zero; after inclusion exactly one R_{h+1} exists, plus one more
per redrawAfter seconds of chain time. Pure Python, one thread, median of the repeats.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pol_core.rulesets import RuleSet  # noqa: E402
from pol_core.segment import EMPTY_SEGMENT  # noqa: E402
from pol_core.step import enable_deterministic_mode  # noqa: E402
from pol_core.tasks import load_task  # noqa: E402
from tests.attacks import find_step, make_scenario, measure_grinding_rate, trained_parent  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--k", type=int, default=16, help="difficulty of the derived R (cost grows with k)")
    args = ap.parse_args(argv)
    enable_deterministic_mode()
    torch.set_num_threads(1)
    paper = load_task("digits-cnn", rules="paper")
    cb = paper.with_rules("chain-bound")
    gen = torch.Generator().manual_seed(0)
    sc = make_scenario(paper, cb, trained_parent(cb, gen, steps=5), 3)
    p, _, _ = find_step(paper, sc.parent_state, sc.paper_requirements(), gen, lambda b, a: a > b)
    paper_header = sc.paper_verdict(sc.paper_proof(sc.parent_state, p)).header
    p, _, _ = find_step(cb, sc.parent_state, sc.cb_requirements(), gen, lambda b, a: a > b and a >= sc.parent_correct)
    cb_header = sc.cb_verdict(sc.cb_proof(EMPTY_SEGMENT, p)).header
    rows: list[tuple[str, float, float, float]] = []
    for rules, header in ((RuleSet.PAPER, paper_header), (RuleSet.CHAIN_BOUND, cb_header)):
        runs = [measure_grinding_rate(header, args.k, paper.num_params, args.seconds, rules) for _ in range(args.repeats)]
        tries, distinct, usable = (float(statistics.median(r[key] for r in runs))
                                   for key in ("tries_per_s", "distinct_per_s", "usable_per_s"))
        rows.append((rules.value, tries, distinct, usable))
    print(f"digits-cnn, |W| = {paper.num_params}, k = {args.k}, {args.seconds:.0f} s windows, median of {args.repeats}, "
          f"one Python thread")
    print("| rules | miner addresses tried per s | distinct next-R per s | usable next-R per s (known before inclusion) |")
    print("|---|---:|---:|---:|")
    for name, tries, distinct, usable in rows:
        print(f"| {name} | {tries:,.0f} | {distinct:,.0f} | {usable:,.0f} |")
    rate = rows[0][2]
    for k in (8, 16, 24, 32):
        print(f"paper rules, one candidate step: about {2 ** k / rate:,.1f} s of grinding buys a free block at k = {k}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
