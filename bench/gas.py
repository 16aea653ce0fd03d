"""Gas per attested block (whole transaction) and per view, measured on a real anvil.

    .venv/bin/python bench/gas.py            # prints a markdown table
"""
from __future__ import annotations

import statistics
import sys

from eth_account import Account

from pol.genesis import Genesis
from pol_chain import AnvilProcess, ChainClient, deploy_chain
from pol_chain.anvil import ANVIL_DEV_KEYS
from pol_core.header import Header
from pol_core.keccak import keccak256
from pol_core.tasks import load_task
from pol_core.types import Address, CorrectCount, Hash32, Height, SampleIndex
from pol_core.verify import compute_genesis_correct

KEY = ANVIL_DEV_KEYS[0]


def header_on(client: ChainClient, task_hash: Hash32, i: int, miner: bytes,
              indices: tuple[int, ...] = (1436, 1021, 977, 1300)) -> Header:
    tip = client.get_tip()
    correct = client.get_tip_correct()
    return Header(tip.hash, Height(tip.height + 1), task_hash, tip.model_hash, keccak256(b"w'" + i.to_bytes(4, "big")),
                  tuple(SampleIndex(i) for i in indices), CorrectCount(correct), CorrectCount(correct + 1),
                  tip.difficulty, Address(miner))


def main() -> int:
    task = load_task("digits-cnn")
    me = Account.from_key(KEY).address
    rows = []
    with AnvilProcess() as anvil:
        interval = 5
        genesis = Genesis.for_task(task, compute_genesis_correct(task), me, me, difficulty=8,
                                   retarget_interval=interval, target_block_time=10)
        dep = deploy_chain(anvil.url, KEY, task.name, genesis)
        c = dep.client(KEY)
        th = task.spec_hash
        normal: list[tuple[str, int]] = []
        retarget: list[tuple[str, int]] = []
        miners = {"zero-heavy miner 0x00..aa": b"\x00" * 19 + b"\xaa", "all-nonzero miner 0xb2..b2": b"\xb2" * 20}
        for label, miner in miners.items():
            for i in range(3 * interval):
                h = header_on(c, th, i, miner)
                ts = c.get_timestamp() + (1 if (i // interval) % 2 == 0 else 40)  # alternate fast and slow epochs
                c.rpc("evm_setNextBlockTimestamp", [ts])
                gas = c.submit_block(h).gas_used
                (retarget if h.height % interval == 0 else normal).append((label, gas))
        for label in miners:
            n = [g for lb, g in normal if lb == label]
            r = [g for lb, g in retarget if lb == label]
            rows.append((f"submitBlock, {label}", min(n), statistics.median(n), max(n)))
            rows.append((f"submitBlock at a retarget height, {label}", min(r), statistics.median(r), max(r)))
        fns = c.contract.functions
        tip = c.get_tip()
        for name, fn in [("latestModelHash()", fns.latestModelHash()), ("tip()", fns.tip()),
                         ("difficulty()", fns.difficulty()), ("tipHash()", fns.tipHash()),
                         ("nextRequirements() k=8", fns.nextRequirements()),
                         ("requirements(seed) k=8", fns.requirements(tip.hash)),
                         ("computeRequirements k=64, |W|=11.2M", fns.computeRequirements(tip.hash, 64, 11_173_962))]:
            g = fn.estimate_gas()
            rows.append((f"view {name} (eth_estimateGas, incl. 21k base)", g, g, g))
    print("| call | min gas | median gas | max gas |\n|---|---:|---:|---:|")
    for name, lo, med, hi in rows:
        print(f"| {name} | {lo} | {int(med)} | {hi} |")
    worst = max(hi for name, lo, med, hi in rows if name.startswith("submitBlock"))
    print(f"\nworst attested block: {worst} gas (goal: at most 50,000)")
    return 0 if worst <= 50_000 else 1


if __name__ == "__main__":
    sys.exit(main())
