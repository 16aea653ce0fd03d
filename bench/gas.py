"""Gas per attested block (whole transaction) and per view, measured on a real anvil, under both rule sets.

    .venv/bin/python bench/gas.py            # prints a markdown table; exit 1 if a block costs over 50,000
"""
from __future__ import annotations

import statistics
import sys
from dataclasses import replace

from eth_account import Account

from pol.genesis import Genesis
from pol_chain import AnvilProcess, ChainClient, deploy_chain
from pol_chain.anvil import ANVIL_DEV_KEYS
from pol_core.header import Header
from pol_core.keccak import keccak256
from pol_core.segment import compute_segment_root
from pol_core.tasks import load_task
from pol_core.types import ZERO_HASH, Address, CorrectCount, Hash32, Height, RedrawIndex, SampleIndex
from pol_core.verify import compute_genesis_correct

KEY = ANVIL_DEV_KEYS[0]
GOAL = 50_000
TARGET, REDRAW_AFTER = 10, 60
MINERS = {"zero-heavy miner 0x00..aa": b"\x00" * 19 + b"\xaa", "all-nonzero miner 0xb2..b2": b"\xb2" * 20}


def header_on(client: ChainClient, task_hash: Hash32, i: int, miner: bytes, chain_bound: bool) -> Header:
    tip = client.get_tip()
    correct = client.get_tip_correct()
    root = compute_segment_root([[1024 + i, 1025 + i, 1026 + i, 1027 + i]]) if chain_bound else ZERO_HASH
    return Header(tip.link, Height(tip.height + 1), task_hash, keccak256(b"w" + i.to_bytes(4, "big")),
                  keccak256(b"w'" + i.to_bytes(4, "big")), tuple(SampleIndex(j) for j in (977, 1021, 1300, 1436)),
                  CorrectCount(correct), CorrectCount(correct + 1), tip.difficulty, Address(miner), segment_root=root)


def measure(url: str, rules: str, blocks: int) -> list[tuple[str, int, int, int]]:
    task = load_task("digits-cnn", rules=rules)
    me = Account.from_key(KEY).address
    genesis = Genesis.for_task(task, compute_genesis_correct(task), me, me, difficulty=8, target_block_time=TARGET,
                               half_life=4 * TARGET, redraw_after=REDRAW_AFTER)
    dep = deploy_chain(url, KEY, task.name, genesis)
    c = dep.client(KEY)
    chain_bound = rules == "chain-bound"
    gas: dict[str, list[int]] = {}
    for label, miner in MINERS.items():
        for i in range(blocks):
            h = header_on(c, task.spec_hash, i, miner, chain_bound)
            # Alternate fast and slow stretches, so the difficulty rule moves k both ways.
            ts = c.get_tip().time + (1 if (i // 5) % 2 == 0 else 40)
            kind = "submitBlock"
            if chain_bound and i % 5 == 4:
                # A redraw: the index opens REDRAW_AFTER after the tip; an empty block moves chain time there.
                ts = c.get_tip().time + REDRAW_AFTER
                c.rpc("evm_mine", [ts])
                h, kind = replace(h, redraw=RedrawIndex(1)), "submitBlock with a redraw (j = 1)"
            else:
                c.rpc("evm_setNextBlockTimestamp", [ts])
            gas.setdefault(f"{kind}, {label}", []).append(c.submit_block(h).gas_used)
    rows = [(f"{rules}: {name}", min(g), int(statistics.median(g)), max(g)) for name, g in gas.items()]
    fns, tip = c.contract.functions, c.get_tip()
    for name, fn in [("latestModelHash()", fns.latestModelHash()), ("tip()", fns.tip()),
                     ("difficulty()", fns.difficulty()), ("tipLink()", fns.tipLink()),
                     ("nextRequirements() k=8", fns.nextRequirements()),
                     ("requirements(seed) k=8", fns.requirements(tip.link)),
                     ("computeRequirements k=64, |W|=11.2M", fns.computeRequirements(tip.link, 64, 11_173_962))]:
        if chain_bound:  # the views cost the same under both rule sets
            g = fn.estimate_gas()
            rows.append((f"view {name} (eth_estimateGas, incl. 21k base)", g, g, g))
    return rows


def main() -> int:
    with AnvilProcess() as anvil:
        rows = measure(anvil.url, "paper", 10) + measure(anvil.url, "chain-bound", 10)
    print("| call | min gas | median gas | max gas |\n|---|---:|---:|---:|")
    for name, lo, med, hi in rows:
        print(f"| {name} | {lo} | {med} | {hi} |")
    worst = {r: max(hi for name, lo, med, hi in rows if name.startswith(r + ":")) for r in ("paper", "chain-bound")}
    for rules, w in worst.items():
        print(f"\nworst attested block, {rules}: {w} gas (goal: at most {GOAL:,})")
    return 0 if max(worst.values()) <= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
